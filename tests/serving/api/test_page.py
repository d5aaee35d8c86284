"""``GET /`` and ``/static/*``: the page's files, their caching headers, and what they may load."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from litestar.testing import TestClient

from serving.api.page import MEDIA_TYPES, etag_matches, load_assets
from serving.app import ServiceApp
from tests.conftest import AppStarter

REPO = Path(__file__).resolve().parents[3]
STATIC = REPO / "serving" / "static"
MAX_TOTAL_BYTES = 100 * 1024
Client = TestClient[ServiceApp]


@pytest.fixture
def client(app_client: AppStarter) -> Iterator[Client]:
    with app_client() as client:
        yield client


def test_the_page_is_served_at_the_root_with_its_headers(client: Client) -> None:
    response = client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert response.content == (STATIC / "index.html").read_bytes()
    assert response.headers["cache-control"] == "no-cache"
    assert re.fullmatch(r'"[0-9a-f]{32}"', response.headers["etag"])
    policy = response.headers["content-security-policy"]
    assert "default-src 'none'" in policy
    assert "connect-src 'self'" in policy
    assert "http" not in policy  # no other origin is allowed
    assert response.headers["x-content-type-options"] == "nosniff"


@pytest.mark.parametrize(
    ("name", "media_type"),
    [
        ("app.js", "text/javascript; charset=utf-8"),
        ("preprocess.js", "text/javascript; charset=utf-8"),
        ("style.css", "text/css; charset=utf-8"),
        ("favicon.svg", "image/svg+xml"),
    ],
)
def test_static_files_are_served_with_their_type(
    client: Client,
    name: str,
    media_type: str,
) -> None:
    response = client.get(f"/static/{name}")
    assert response.status_code == 200
    assert response.headers["content-type"] == media_type
    assert response.content == (STATIC / name).read_bytes()


def test_a_matching_etag_gets_304_without_a_body(client: Client) -> None:
    etag = client.get("/static/app.js").headers["etag"]
    again = client.get("/static/app.js", headers={"If-None-Match": etag})
    assert again.status_code == 304
    assert again.content == b""
    assert again.headers["etag"] == etag
    other = client.get("/static/style.css", headers={"If-None-Match": etag})
    assert other.status_code == 200  # another file's tag does not match


def test_the_etag_changes_with_the_content() -> None:
    tags = {asset.etag for asset in load_assets().values()}
    assert len(tags) == len(load_assets())


@pytest.mark.parametrize(
    ("header", "matches"),
    [
        (None, False),
        ('"abc"', True),
        ('W/"abc"', True),
        ('"x", W/"abc"', True),
        ("*", True),
        ('"abcd"', False),
        ('"x", "y"', False),
    ],
)
def test_if_none_match_comparison(header: str | None, matches: bool) -> None:
    assert etag_matches(header, '"abc"') is matches


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/static/nope.js", 404),
        ("/static/app.py", 404),
        # A dot segment could reach any route if anything resolved it: the admin scope's
        # answer (docs/security.md), here the admin API's 403 without a keys file.
        ("/static/..%2Fapp.py", 403),
    ],
)
def test_unknown_files_are_refused_with_the_json_error_body(
    client: Client, path: str, status: int
) -> None:
    response = client.get(path)
    assert response.status_code == status
    assert response.json()["error"]["status"] == status


def test_the_page_is_not_in_the_openapi_document(client: Client) -> None:
    paths = client.get("/schema/openapi.json").json()["paths"]
    assert "/" not in paths
    assert not any(path.startswith("/static") for path in paths)


def test_every_file_is_served_and_the_total_is_small() -> None:
    on_disk = {p.name for p in STATIC.iterdir() if p.suffix in MEDIA_TYPES}
    assert set(load_assets()) == on_disk
    assert sum((STATIC / name).stat().st_size for name in on_disk) <= MAX_TOTAL_BYTES


def test_the_files_load_nothing_from_another_origin() -> None:
    """No CDN, no external font: only same-origin paths (the SVG's xmlns is a name, not a URL)."""
    for path in STATIC.iterdir():
        text = path.read_text()
        if path.suffix == ".svg":
            text = text.replace('xmlns="http://www.w3.org/2000/svg"', "")
        assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}", text, re.IGNORECASE), path.name
        assert "@import" not in text, path.name
        assert "@font-face" not in text, path.name


def test_every_referenced_file_exists() -> None:
    html = (STATIC / "index.html").read_text()
    referenced = set(re.findall(r'(?:src|href)="/static/([^"]+)"', html))
    for module in STATIC.glob("*.js"):
        referenced |= set(re.findall(r'from "\./([^"]+)"', module.read_text()))
    assert referenced
    assert referenced <= set(load_assets())


@pytest.mark.slow
def test_the_wheel_ships_the_static_files(tmp_path: Path) -> None:
    """Built from a copy, so no build/ or egg-info lands in the work tree (or leaks in from it)."""
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    shutil.copytree(
        REPO / "serving", source / "serving", ignore=shutil.ignore_patterns("__pycache__")
    )
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
         "--quiet", "--wheel-dir", str(tmp_path), str(source)],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    (wheel,) = tmp_path.glob("*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {f"serving/static/{p.name}" for p in STATIC.iterdir()}
    assert expected <= names
