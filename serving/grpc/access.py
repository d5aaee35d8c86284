"""Who may call what: a gRPC call's key is checked by the pipeline's access stage, the same
guard (serving/access/guard.py) as every HTTP request's.

Every method of the servicer calls :meth:`CallAccess.check` before doing anything, with the scope
it needs: ``read`` (health, metadata, readiness), ``infer`` (``ModelInfer``) or ``admin`` (the
repository extension: load, unload, index). The key arrives as the ``authorization`` call
metadata (what tritonclient sends for ``headers={"authorization": "Bearer ..."}``); a refusal
becomes ``UNAUTHENTICATED`` (401), ``PERMISSION_DENIED`` (403) or ``RESOURCE_EXHAUSTED`` with
retry info (429).
"""

from __future__ import annotations

from typing import Any, Literal

import grpc

from serving.access.guard import Decision
from serving.access.scopes import Scope as RouteScope
from serving.grpc.errors import refused
from serving.pipeline import Pipeline

Scope = Literal["read", "infer", "admin"]
Context = grpc.aio.ServicerContext[Any, Any]
#: The call metadata key credentials arrive in (lower case: gRPC metadata keys are).
AUTHORIZATION = "authorization"
_SCOPES = {"read": RouteScope.READ, "infer": RouteScope.INFER, "admin": RouteScope.ADMIN}


def metadata(context: Context, key: str) -> str | None:
    """The call's metadata value for ``key``, if any."""
    for name, value in context.invocation_metadata() or ():
        if name == key:
            return value if isinstance(value, str) else value.decode("latin-1")
    return None


def authorization(context: Context) -> str | None:
    """The call's ``authorization`` metadata value, if any."""
    return metadata(context, AUTHORIZATION)


class CallAccess:
    """The pipeline's access stage for gRPC calls."""

    def __init__(self, pipeline: Pipeline) -> None:
        self._pipeline = pipeline

    def check(self, context: Context, scope: Scope) -> Decision:
        """The decision (its ``key_name`` labels the call); raises the refusal's status."""
        decision = self._pipeline.check(_SCOPES[scope], authorization(context))
        if not decision.allowed:
            retry = next(
                (int(value) for name, value in decision.headers if name == b"retry-after"), None
            )
            raise refused(decision.status, decision.message, retry)
        return decision
