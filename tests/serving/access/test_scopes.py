"""The scope of every route: a table over the real app's routes (a route added without a scope
fails here), and the guard's reading of a path agrees with where the real router sends it."""

from __future__ import annotations

import re
import urllib.parse
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from litestar import Litestar
from litestar.exceptions import MethodNotAllowedException, NotFoundException
from litestar.utils.path import normalize_path

from serving.access import scopes
from serving.access.scopes import (
    GRANTABLE,
    Scope,
    path_of_target,
    route_scope,
    route_scope_of_target,
)
from serving.app import create_app
from serving.settings import Settings

O, R, I, F, A = Scope.OPEN, Scope.READ, Scope.INFER, Scope.FEEDBACK, Scope.ADMIN  # noqa: E741

#: Every route of the service (method, path template) and its scope. A new route must be added
#: here, with the scope access control gives it (serving/access/scopes.py).
EXPECTED: dict[tuple[str, str], Scope] = {
    ("GET", "/healthz"): O,
    ("GET", "/readyz"): O,
    ("GET", "/v2/health/live"): O,
    ("GET", "/v2/health/ready"): O,
    ("GET", "/"): O,
    ("GET", "/static/{name:str}"): O,
    ("POST", "/v1/predict"): I,
    ("POST", "/v2/models/{name:str}/infer"): I,
    ("POST", "/v2/models/{name:str}/versions/{version:str}/infer"): I,
    ("POST", "/v1/feedback"): F,
    ("GET", "/v1/models"): R,
    ("GET", "/v1/quality"): R,
    ("GET", "/v1/rollout"): R,
    ("POST", "/v1/rollout/promote"): A,
    ("POST", "/v1/rollout/rollback"): A,
    ("GET", "/v2"): R,
    ("GET", "/v2/models/{name:str}"): R,
    ("GET", "/v2/models/{name:str}/versions/{version:str}"): R,
    ("GET", "/v2/models/{name:str}/ready"): R,
    ("GET", "/v2/models/{name:str}/versions/{version:str}/ready"): R,
    ("GET", "/metrics"): R,
    ("GET", "/schema"): R,
    ("GET", "/schema/{path:str}"): R,
    ("GET", "/schema/openapi.json"): R,
    ("GET", "/schema/oauth2-redirect.html"): R,
    ("GET", "/schema/assets/{file_path:path}"): R,
    ("HEAD", "/schema/assets/{file_path:path}"): R,
    ("POST", "/v2/repository/index"): A,
    ("POST", "/v2/repository/models/{name:str}/load"): A,
    ("POST", "/v2/repository/models/{name:str}/unload"): A,
}
SAMPLE = {"name": "mnist", "version": "1", "path": "openapi.yaml", "file_path": "swagger-ui.css"}
_PARAM = re.compile(r"\{(\w+):\w+\}")


def concrete(template: str) -> str:
    return _PARAM.sub(lambda m: SAMPLE[m.group(1)], template)


@pytest.fixture(scope="module")
def app(tiny_model_repository: Path) -> Litestar:
    """The Litestar routes, which document the prediction routes too (the pipeline serves
    them). Routes only: the lifespan (model load) never runs, nothing is served."""
    return create_app(Settings(model_repository=tiny_model_repository)).litestar


def app_routes(app: Litestar) -> set[tuple[str, str]]:
    return {
        (method, route.path)
        for route in app.routes
        for method in getattr(route, "methods", ())
        if method != "OPTIONS"  # Litestar adds it to every route
    }


def test_every_route_of_the_app_has_its_scope(app: Litestar) -> None:
    routes = app_routes(app)
    assert routes - set(EXPECTED) == set(), "routes without a scope in EXPECTED (and scopes.py)"
    assert set(EXPECTED) - routes == set(), "EXPECTED lists routes the app no longer has"
    wrong = {
        (method, template): (route_scope(method, concrete(template)), scope)
        for (method, template), scope in EXPECTED.items()
        if route_scope(method, concrete(template)) is not scope
    }
    assert wrong == {}, "(method, template): (got, expected)"


def test_a_wrong_method_gets_the_paths_scope_except_on_the_control_api() -> None:
    """A wrong method gets the path's scope: the app's 405 only reaches callers let through.
    The control API is POST only: other methods there change nothing and are unrouted (405)."""
    for (_, template), scope in EXPECTED.items():
        for method in ("GET", "POST", "OPTIONS", "DELETE", "TRACE"):
            expected = Scope.UNROUTED if scope is A and method != "POST" else scope
            assert route_scope(method, concrete(template)) is expected


def test_grantable_scopes_are_the_four_of_the_contract() -> None:
    assert {str(s) for s in GRANTABLE} == {"infer", "feedback", "read", "admin"}


@pytest.mark.parametrize(
    ("path", "scope"),
    [
        # Spellings the router sends to the control API (checked against it below).
        ("//v2/repository/models/mnist/unload", A),
        ("/v2//repository/models/mnist/unload/", A),
        ("/v2/repository", A),
        ("/v2/repository/", A),
        ("/v2/repository/anything/later", A),
        ("/v2/repository/models/../../models/mnist/infer", A),
        # Dot segments: the strictest scope, whatever they look like (scopes.py says why).
        ("/v2/models/../repository/models/mnist/unload", A),
        ("/static/../v2/repository/index", A),
        ("/healthz/../v2/repository/index", A),
        ("/v2/models/mnist/./infer", A),
        ("/static/..", A),
        # Open routes are exact: nothing under or beside them is open.
        ("/healthz/x", Scope.UNROUTED),
        ("/healthzx", Scope.UNROUTED),
        ("/v2/health/livex", Scope.UNROUTED),
        ("/Healthz", Scope.UNROUTED),
        ("/healthz/", O),
        ("/static/app.js", O),
        ("/staticx", Scope.UNROUTED),
        ("/schemax", Scope.UNROUTED),
        ("/schema/swagger", R),
        ("/v2/models/mnist/versions/3/infer/", I),
        ("/v2/models/mnist/extra/infer", R),  # not an infer route: the router 404s it
        ("/nothing/here", Scope.UNROUTED),
        ("", O),  # the router's "/"
    ],
)
def test_spellings(path: str, scope: Scope) -> None:
    assert route_scope("POST", path) is scope


@pytest.mark.parametrize(
    ("target", "path"),
    [
        (b"/v2/%72epository/models/mnist/unload", "/v2/repository/models/mnist/unload"),
        (b"/v1/predict?x=1#f", "/v1/predict"),
        (b"http://host:8000/v2/repository/index?q", "/v2/repository/index"),
        (b"/a%2Fb", "/a/b"),
        (b"/", "/"),
    ],
)
def test_path_of_target_decodes_like_uvicorn(target: bytes, path: str) -> None:
    assert path_of_target(target) == path


def test_percent_encoding_cannot_hide_the_control_api() -> None:
    assert route_scope_of_target(b"POST", b"/v2/%72epository/models/mnist/unload") is A
    assert route_scope_of_target(b"POST", b"/v2/repository%2Fmodels/mnist/unload") is A
    assert route_scope_of_target(b"POST", b"/%76%32/repository/index") is A
    assert route_scope_of_target(b"POST", b"/v1/predict") is I
    assert route_scope_of_target(b"GET", b"/healthz?probe=1") is O


def routed_scope(app: Litestar, method: str, path: str) -> Scope | None:
    """The scope of the route the real router picks for ``path`` (None: 404 or 405)."""
    try:
        _, _, _, _, template = app.asgi_router.handle_routing(
            path=normalize_path(path), method=method
        )
    except (NotFoundException, MethodNotAllowedException):
        return None
    return BY_ROUTER_TEMPLATE[(method, template)]


#: EXPECTED keyed as the router names its templates ("{name}", without the ":str").
BY_ROUTER_TEMPLATE = {
    (method, re.sub(r":\w+\}", "}", template)): scope
    for (method, template), scope in EXPECTED.items()
}
SEGMENTS = [
    "", ".", "..", "v1", "v2", "V2", "predict", "feedback", "models", "mnist", "versions", "1",
    "infer", "ready", "repository", "index", "load", "unload", "health", "live", "healthz",
    "readyz", "static", "app.js", "schema", "metrics", "quality", "openapi.json",
]  # fmt: skip


@st.composite
def spellings(draw: st.DrawFn) -> tuple[str, str]:
    """(method, path): a real route's path respelt (doubled, dropped or trailing slashes, a
    dot segment, a segment swapped for another route's), or a path made of route words."""
    if draw(st.integers(0, 3)) > 0:
        method, template = draw(st.sampled_from(sorted(EXPECTED)))
        segments = concrete(template).split("/")[1:]
        for _ in range(draw(st.integers(0, 3))):
            at = draw(st.integers(0, len(segments)))
            segments.insert(at, draw(st.sampled_from(["", "", "", ".", ".."])))
        if segments and draw(st.integers(0, 3)) == 0:
            segments[draw(st.integers(0, len(segments) - 1))] = draw(st.sampled_from(SEGMENTS))
    else:
        method = draw(st.sampled_from(["GET", "POST", "HEAD"]))
        segments = draw(st.lists(st.sampled_from(SEGMENTS), min_size=1, max_size=7))
    return method, "/" + "/".join(segments)


@settings(max_examples=600, deadline=None)
@given(spelling=spellings(), encode=st.sets(st.integers(min_value=0, max_value=60), max_size=3))
def test_the_guard_reads_a_path_as_the_router_routes_it(
    app: Litestar, spelling: tuple[str, str], encode: set[int]
) -> None:
    """Whatever spelling reaches a route, the guard gives it that route's scope, or admin for a
    dot segment; through uvicorn (a raw target with some characters percent-encoded, decoded
    before routing) as well."""
    method, path = spelling
    target = "".join(
        f"%{ord(c):02X}" if i in encode and c != "/" else c for i, c in enumerate(path)
    ).encode()
    decoded = urllib.parse.unquote(target.decode())
    expected = routed_scope(app, method, decoded)
    if expected is None:
        return  # the router answers 404/405 whatever the guard decided
    if {".", ".."} & set(decoded.split("/")):
        expected = A
    assert route_scope(method, decoded) is expected, decoded
    assert route_scope_of_target(method.encode(), target) is expected, target


def test_spellings_reach_routes_often_enough(app: Litestar) -> None:
    """The property above is only as good as its examples: most respelt paths must be routed."""
    routed = 0

    @settings(max_examples=300, deadline=None, database=None, derandomize=True)
    @given(spelling=spellings())
    def count(spelling: tuple[str, str]) -> None:
        nonlocal routed
        routed += routed_scope(app, *spelling) is not None

    count()
    assert routed >= 80  # 95 of 300 at the time of writing (deterministic: derandomize)


def test_learned_targets_are_bounded_and_only_routes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(scopes, "_LEARNED", {})
    assert route_scope_of_target(b"GET", b"/no/such/route") is Scope.UNROUTED
    assert scopes._LEARNED == {}  # junk paths are not kept
    for i in range(scopes._LEARNED_MAX + 50):
        assert route_scope_of_target(b"POST", f"/v2/models/m{i}/infer".encode()) is I
    assert len(scopes._LEARNED) == scopes._LEARNED_MAX
    # Learned or not, the answer is the same.
    assert route_scope_of_target(b"POST", b"/v2/models/m0/infer") is I
    assert route_scope_of_target(b"POST", b"/v2/models/m999/infer") is I
    assert route_scope_of_target(b"GET", b"/v2/models/m0") is R
