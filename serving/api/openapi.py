"""The OpenAPI document and its page at ``/schema``, served with no network beyond the service.

Litestar's default page loads Redoc from a CDN, which leaves a blank page wherever that CDN is
unreachable. Swagger UI's files ship in the ``swagger-ui-bundle-v2`` package instead, and the
service serves them itself under ``/schema/assets``.
"""

from __future__ import annotations

from litestar.datastructures import CacheControlHeader
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import SwaggerRenderPlugin
from litestar.router import Router
from litestar.static_files import create_static_files_router
from swagger_ui_bundle import swagger_ui_path

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
