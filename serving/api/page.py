"""The draw-a-digit page: ``GET /`` and the few static files under ``/static/``.

The files ship inside the ``serving`` package (``serving/static``) and are read once, when the
app is built, so a request is a dictionary lookup. Each answer carries a strong ETag and
``Cache-Control: no-cache``: browsers keep the files but revalidate them (a 304 with no body), so
a new release is picked up on the next load without versioned file names. The page may talk only
to this service: its Content-Security-Policy allows no other origin.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources
from typing import Any

from litestar import Request, Response, get
from litestar.exceptions import NotFoundException
from litestar.handlers import HTTPRouteHandler
from litestar.params import FromPath

STATIC_DIR = "static"
INDEX = "index.html"
MEDIA_TYPES = {
    ".html": "text/html",
    ".js": "text/javascript",
    ".css": "text/css",
    ".svg": "image/svg+xml",
}
CACHE_CONTROL = "no-cache"
#: Same origin only: no CDN, no external font, no inline script; canvas pixels stay local.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
_COMMON_HEADERS = {
    "Cache-Control": CACHE_CONTROL,
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "Referrer-Policy": "no-referrer",
}


@dataclass(frozen=True, slots=True)
class Asset:
    body: bytes
    media_type: str
    etag: str  # quoted, as it goes on the wire


def load_assets() -> dict[str, Asset]:
    """Every file of ``serving/static`` whose type is known, by file name."""
    assets: dict[str, Asset] = {}
    for entry in (resources.files("serving") / STATIC_DIR).iterdir():
        suffix = "." + entry.name.rpartition(".")[2]
        if not entry.is_file() or suffix not in MEDIA_TYPES:
            continue
        body = entry.read_bytes()
        etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
        assets[entry.name] = Asset(body, MEDIA_TYPES[suffix], etag)
    if INDEX not in assets:
        raise FileNotFoundError(f"serving/{STATIC_DIR}/{INDEX} is missing from the package")
    return assets


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    """RFC 9110 weak comparison of an ``If-None-Match`` list with our strong ETag."""
    if not if_none_match:
        return False
    candidates = (tag.strip().removeprefix("W/") for tag in if_none_match.split(","))
    return any(tag in ("*", etag) for tag in candidates)


def _answer(asset: Asset, request: Request[Any, Any, Any]) -> Response[bytes]:
    headers = {**_COMMON_HEADERS, "ETag": asset.etag}
    if etag_matches(request.headers.get("if-none-match"), asset.etag):
        return Response(b"", status_code=304, headers=headers)
    return Response(asset.body, media_type=asset.media_type, headers=headers)


def build_page_handlers() -> list[HTTPRouteHandler]:
    """``GET /`` (the page) and ``GET /static/{name}``; not part of the OpenAPI document."""
    assets = load_assets()

    @get("/", include_in_schema=False)
    async def page(request: Request[Any, Any, Any]) -> Response[bytes]:
        return _answer(assets[INDEX], request)

    @get("/static/{name:str}", include_in_schema=False)
    async def static(name: FromPath[str], request: Request[Any, Any, Any]) -> Response[bytes]:
        asset = assets.get(name)
        if asset is None:
            raise NotFoundException(f"no static file {name!r}")
        return _answer(asset, request)

    return [page, static]
