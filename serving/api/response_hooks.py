"""``ResponseHooks``: ONE Litestar ``before_send`` hook that runs plain functions.

Litestar awaits every ``before_send`` hook for every message, and each await makes a coroutine;
so the app's header hook and the observability plugin's response observer share this one hook
(docs/decisions.md, "Observability on the hot path"). Whoever adds a callback (the plugin, at
``on_app_init``) appends to it rather than adding a hook of its own.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from litestar.types import Message, Scope

#: A function that may read or change an outgoing message (e.g. add a header).
ResponseCallback = Callable[["Message", "Scope"], None]


class ResponseHooks:
    """An async ``before_send`` hook that calls each callback, in order, on every message."""

    __slots__ = ("callbacks",)

    def __init__(self, *callbacks: ResponseCallback) -> None:
        self.callbacks = list(callbacks)

    async def __call__(self, message: Message, scope: Scope) -> None:
        for callback in self.callbacks:
            callback(message, scope)
