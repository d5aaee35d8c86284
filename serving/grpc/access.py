"""Who may call what: the one place a gRPC call's credentials will be checked.

Every method of the servicer calls ``access.check(context, scope)`` before doing anything, with
the scope it needs: ``read`` (health, metadata, readiness), ``infer`` (``ModelInfer``) or
``admin`` (the repository extension: load, unload, index). Today no access control exists on
either protocol, so :data:`OPEN` lets everything through. The access-control issue fills in an
:class:`Access` that reads the key from the ``authorization`` call metadata (what tritonclient
sends for ``headers={"authorization": "Bearer ..."}``) and raises
:func:`unauthenticated` (no or unknown key) or :func:`permission_denied` (a key without the
scope), the gRPC twins of 401 and 403.
"""

from __future__ import annotations

from typing import Any, Literal, Protocol

import grpc

from serving.grpc.errors import StatusError

Scope = Literal["read", "infer", "admin"]
Context = grpc.aio.ServicerContext[Any, Any]
#: The call metadata key credentials arrive in (lower case: gRPC metadata keys are).
AUTHORIZATION = "authorization"


class Access(Protocol):
    def check(self, context: Context, scope: Scope) -> None:
        """Return if the call may proceed; else raise a :class:`StatusError`."""


class _Open:
    """No access control (the service's state on HTTP too, until the access-control issue)."""

    def check(self, context: Context, scope: Scope) -> None:
        return None


OPEN: Access = _Open()


def authorization(context: Context) -> str | None:
    """The call's ``authorization`` metadata value, if any."""
    for key, value in context.invocation_metadata() or ():
        if key == AUTHORIZATION:
            return value if isinstance(value, str) else value.decode("latin-1")
    return None


def unauthenticated(message: str = "a key is required: send authorization metadata") -> StatusError:
    return StatusError(grpc.StatusCode.UNAUTHENTICATED, message)


def permission_denied(scope: Scope) -> StatusError:
    return StatusError(grpc.StatusCode.PERMISSION_DENIED, f"this key lacks the {scope!r} scope")
