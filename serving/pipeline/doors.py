"""Which requests are predictions, and through which codec: the pipeline's HTTP routes.

Matched on the method and path alone, before any routing framework runs: the HTTP protocol
asks when a request's headers are complete, the app asks again only for requests the protocol
did not see (a test client). Everything else goes to Litestar (serving/api/).
"""

from __future__ import annotations

from dataclasses import dataclass

from serving.pipeline.codec import OIP, V1, HttpCodec

V1_PATH = "/v1/predict"
V2_MODELS = "/v2/models/"
INFER = "/infer"
VERSIONS = "versions/"
#: Route templates: the bounded ``route`` label of metrics and the span names.
V1_TEMPLATE = V1_PATH
V2_TEMPLATE = "/v2/models/{name}/infer"
V2_VERSION_TEMPLATE = "/v2/models/{name}/versions/{version}/infer"


@dataclass(frozen=True, slots=True)
class Door:
    """Where a prediction came in: its codec, its route template, and what its path names."""

    #: None: a door with its own codec (gRPC), which calls the stages itself.
    codec: HttpCodec | None
    template: str
    #: The model the path names (OIP); None: the served one (v1).
    model_name: str | None = None
    #: The version the path pins (OIP ``versions/<v>``); None: the newest served.
    version: str | None = None
    #: The protocol label of metrics and spans: ``http`` or ``grpc``.
    protocol: str = "http"


V1_DOOR = Door(V1, V1_TEMPLATE)


def find_door(method: str, path: str) -> Door | None:
    """The door of a ``POST`` to a prediction route, None for anything else."""
    if method != "POST":
        return None
    if path == V1_PATH:
        return V1_DOOR
    if not (path.startswith(V2_MODELS) and path.endswith(INFER)):
        return None
    name, _, rest = path[len(V2_MODELS) : -len(INFER)].partition("/")
    if not name:
        return None
    if not rest:
        return Door(OIP, V2_TEMPLATE, name)
    version = rest[len(VERSIONS) :]
    if not rest.startswith(VERSIONS) or not version or "/" in version:
        return None
    return Door(OIP, V2_VERSION_TEMPLATE, name, version)
