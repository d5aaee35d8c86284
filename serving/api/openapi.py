"""The OpenAPI document and its page at ``/schema``, served with no network beyond the service.

Litestar's default page loads Redoc from a CDN, which leaves a blank page wherever that CDN is
unreachable. Swagger UI's files ship in the ``swagger-ui-bundle-v2`` package instead, and the
service serves them itself under ``/schema/assets``.
"""

from __future__ import annotations

from litestar.datastructures import CacheControlHeader
from litestar.enums import MediaType
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import SwaggerRenderPlugin
from litestar.openapi.spec import (
    Components,
    OpenAPI,
    OpenAPIMediaType,
    OpenAPIResponse,
    Reference,
    SecurityScheme,
)
from litestar.router import Router
from litestar.static_files import create_static_files_router
from swagger_ui_bundle import swagger_ui_path

from serving.access.scopes import Scope, route_scope
from serving.pipeline.oip import is_oip_path

SCHEMA_PATH = "/schema"
ASSETS_PATH = f"{SCHEMA_PATH}/assets"


def openapi_config(version: str) -> OpenAPIConfig:
    page = SwaggerRenderPlugin(
        js_url=f"{ASSETS_PATH}/swagger-ui-bundle.js",
        css_url=f"{ASSETS_PATH}/swagger-ui.css",
        standalone_preset_js_url=f"{ASSETS_PATH}/swagger-ui-standalone-preset.js",
        favicon=f"<link rel='icon' type='image/png' href='{ASSETS_PATH}/favicon-32x32.png'>",
        path="/",
    )
    return OpenAPIConfig(
        title="MNIST inference service",
        version=version,
        description="Adaptive micro-batching onnxruntime service for a Keras MNIST model.",
        path=SCHEMA_PATH,
        render_plugins=[page],
    )


def assets_router() -> Router:
    """Swagger UI's JavaScript and CSS, cached by browsers for a day."""
    return create_static_files_router(
        path=ASSETS_PATH,
        directories=[str(swagger_ui_path)],
        include_in_schema=False,
        cache_control=CacheControlHeader(max_age=86_400),
    )


BEARER = "bearer"
_REFUSALS = {
    401: "No API key, or not a valid one (WWW-Authenticate: Bearer); docs/security.md",
    403: "The key lacks this route's scope, or the admin API is off (no keys file)",
    429: "The key is over its rate limit (per worker); retry after Retry-After seconds",
}


def document_access(openapi: OpenAPI) -> OpenAPI:
    """Add what access control answers to every operation it guards: the bearer scheme, and
    401/403/429 in the route's error shape (serving/access/: the scopes; docs/security.md).

    Done on the generated document, once, because the answers depend on the route's scope
    (serving/access/scopes.py), not on any handler: the guard runs before routing."""
    components = openapi.components or Components()
    components.security_schemes = {
        **(components.security_schemes or {}),
        BEARER: SecurityScheme(type="http", scheme="bearer", description="An API key"),
    }
    openapi.components = components
    for path, item in (openapi.paths or {}).items():
        for method in ("get", "post", "put", "delete", "patch"):
            operation = getattr(item, method, None)
            scope = route_scope(method.upper(), path)
            if operation is None or scope in (Scope.OPEN, Scope.UNROUTED):
                continue
            shape = "OipError" if is_oip_path(path) else "ErrorBody"
            content = {
                MediaType.JSON.value: OpenAPIMediaType(
                    schema=Reference(f"#/components/schemas/{shape}")
                )
            }
            responses = operation.responses if operation.responses is not None else {}
            for code, text in _REFUSALS.items():
                responses.setdefault(str(code), OpenAPIResponse(description=text, content=content))
            operation.responses = responses
            # Optional unless keys are required: anonymous callers may use every scope but admin.
            operation.security = [{BEARER: []}] if scope is Scope.ADMIN else [{}, {BEARER: []}]
    return openapi
