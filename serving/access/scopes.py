"""Which scope every route of the service belongs to: the one table access control reads.

A request is judged from its method and path alone, at the header pass, before the router runs.
So this module must classify a path exactly as the router will route it, or stricter:

- Litestar collapses repeated slashes and ignores trailing ones (``//v2//repository/...`` reaches
  ``unload``), so those are normalised first.
- uvicorn percent-decodes the path before routing (``/v2/%72epository/...`` reaches ``unload``), so
  :func:`route_scope` takes the decoded path (ASGI ``scope["path"]``), and
  :func:`route_scope_of_target` decodes a raw request target the way uvicorn does.
- Neither resolves ``.`` or ``..`` segments. No client sends them (clients resolve them), and
  should anything between the socket and the router ever resolve them, a path like
  ``/v2/models/../repository/...`` could reach any route: so a path holding one is ``admin``,
  the strictest scope. Open routes are exact paths, never prefixes.

Unknown paths are :attr:`Scope.UNROUTED`: open while reads are open (the app's 404 stays a 404),
otherwise they need a valid key, of any scope. A key holder who mistypes a path still gets the
404; a caller without a key learns nothing about which routes exist. A route added to the app
without a rule here is therefore not open to the world when keys are required, and the table
test (tests/serving/access/test_scopes.py) fails until the route is given its scope.
"""

from __future__ import annotations

import re
import urllib.parse
from enum import StrEnum

import httptools


class Scope(StrEnum):
    """What a route needs. The four grantable ones are what a key's ``scopes`` may list."""

    #: Health: always open, for probes and load balancers.
    OPEN = "open"
    READ = "read"
    INFER = "infer"
    FEEDBACK = "feedback"
    #: The control API: model load/unload/index and every later control endpoint.
    ADMIN = "admin"
    #: No route of the service has this path (see the module docstring).
    UNROUTED = "unrouted"


#: The scopes a key can be granted (the keys file's ``scopes`` values).
GRANTABLE: frozenset[Scope] = frozenset({Scope.READ, Scope.INFER, Scope.FEEDBACK, Scope.ADMIN})

#: Exact (normalised) paths.
_EXACT: dict[str, Scope] = {
    # Probes: exact paths only (a prefix would open whatever a path could be made to look like).
    "/healthz": Scope.OPEN,
    "/readyz": Scope.OPEN,
    "/v2/health/live": Scope.OPEN,
    "/v2/health/ready": Scope.OPEN,
    # The draw-a-digit page and its files are open too: a browser cannot send a Bearer header
    # when it navigates, so a page behind a key could never load to ask for one. They are the
    # same public files for everyone; every API call the page makes is checked as usual.
    "/": Scope.OPEN,
    "/v1/predict": Scope.INFER,
    "/v1/feedback": Scope.FEEDBACK,
    "/v1/models": Scope.READ,
    "/v1/quality": Scope.READ,
    "/v1/rollout": Scope.READ,
    "/v2": Scope.READ,
    "/metrics": Scope.READ,
    "/schema": Scope.READ,
}
#: Every path under these prefixes (``/v2/repository/...`` is the OIP control API; a later
#: control endpoint goes under it or gets its own line here, as admin).
_PREFIXES: tuple[tuple[str, Scope], ...] = (
    ("/v2/repository/", Scope.ADMIN),
    ("/schema/", Scope.READ),  # the OpenAPI document and Swagger UI's files
    ("/static/", Scope.OPEN),  # the page's files (see "/" above)
)
_ADMIN_ROOT = "/v2/repository"
#: Rollout decisions (docs/rollout.md): control endpoints outside the OIP prefix, POST only.
_ADMIN_EXACT = frozenset({"/v1/rollout/promote", "/v1/rollout/rollback"})
#: ``/v2/models/{name}[/versions/{version}]/infer``; every other path under /v2/models is read.
_INFER_PATH = re.compile(r"/v2/models/[^/]+(?:/versions/[^/]+)?/infer")
_MODELS_PREFIX = "/v2/models/"
_DOT_SEGMENTS = frozenset({".", ".."})

#: Raw targets (no query) of the hottest routes, so most requests skip the decoding.
_EXACT_TARGETS: dict[bytes, Scope] = {path.encode(): scope for path, scope in _EXACT.items()}
#: Other (method, raw target) pairs already classified, e.g. /v2/models/mnist/infer (~2 us to
#: classify, ~0.1 us to look up). Bounded: filled until full, never evicted, and only with
#: paths of routes, so junk paths cannot grow it; once full the rest are classified each time.
_LEARNED: dict[tuple[bytes, bytes], Scope] = {}
_LEARNED_MAX = 256


def normalise(path: str) -> str:
    """``path`` as the router matches it: repeated and trailing slashes dropped."""
    return "/" + "/".join(segment for segment in path.split("/") if segment)


def route_scope(method: str, path: str) -> Scope:
    """The scope of a request for the percent-decoded ``path`` (ASGI ``scope["path"]``).

    The scope depends on the path, and for the control API on the method: its routes are all
    POST, so any other method there is unrouted (the router's 405). Elsewhere a wrong method
    (GET /v1/predict) gets the path's scope, and the app's 405 reaches only callers allowed on
    that path.
    """
    scope = _EXACT.get(path)
    if scope is not None:
        return scope
    if "//" in path or not path.startswith("/") or (path.endswith("/") and path != "/"):
        path = normalise(path)
        scope = _EXACT.get(path)
        if scope is not None:
            return scope
    if path == _ADMIN_ROOT or path.startswith(_ADMIN_ROOT + "/") or path in _ADMIN_EXACT:
        # The control API is POST only: another method changes nothing and gets the router's
        # 405 (unrouted), like any unknown method, instead of telling it about keys.
        return Scope.ADMIN if method == "POST" else Scope.UNROUTED
    if _DOT_SEGMENTS.intersection(path.split("/")):
        return Scope.ADMIN  # see the module docstring
    for prefix, prefix_scope in _PREFIXES:
        if path.startswith(prefix):
            return prefix_scope
    if path.startswith(_MODELS_PREFIX):
        return Scope.INFER if _INFER_PATH.fullmatch(path) else Scope.READ
    return Scope.UNROUTED


def path_of_target(target: bytes) -> str:
    """The path uvicorn routes for a raw request target: ``httptools.parse_url(target).path``,
    percent-decoded when it holds a ``%`` (query and fragment dropped, an absolute-form target
    reduced to its path), exactly as uvicorn's httptools protocol builds ``scope["path"]``."""
    try:
        raw = httptools.parse_url(target).path or b"/"
    except httptools.HttpParserInvalidURLError:
        # uvicorn answers 400 for such a target; whatever the guard decides, nothing is routed.
        raw = target.partition(b"?")[0]
    path = raw.decode("latin-1")
    return urllib.parse.unquote(path) if "%" in path else path


def route_scope_of_target(method: bytes, target: bytes) -> Scope:
    """:func:`route_scope` for the raw method and request target of the HTTP header pass."""
    scope = _EXACT_TARGETS.get(target)
    if scope is not None:
        return scope
    key = (method, target)
    scope = _LEARNED.get(key)
    if scope is not None:
        return scope
    scope = route_scope(method.decode("latin-1"), path_of_target(target))
    if scope is not Scope.UNROUTED and len(_LEARNED) < _LEARNED_MAX:
        _LEARNED[key] = scope
    return scope
