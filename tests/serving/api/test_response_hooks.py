"""``ResponseHooks``: one ``before_send`` hook that runs plain callbacks in order on every
message, including callbacks added after the app was built (the observability plugin's)."""

from __future__ import annotations

import asyncio
from typing import Any

from serving.api.response_hooks import ResponseHooks
from serving.app import create_app
from serving.settings import Settings
from serving.testing import AppClient


def test_every_callback_runs_in_order_on_every_message_and_may_change_it() -> None:
    seen: list[tuple[str, str]] = []

    def first(message: Any, scope: Any) -> None:
        seen.append(("first", message["type"]))
        message["marked"] = [scope["path"]]

    def second(message: Any, scope: Any) -> None:
        seen.append(("second", message["type"]))
        message["marked"].append("second")

    hooks = ResponseHooks(first)
    hooks.callbacks.append(second)  # how the plugin joins at on_app_init
    start: dict[str, Any] = {"type": "http.response.start"}
    body: dict[str, Any] = {"type": "http.response.body"}

    async def send_both() -> None:
        for message in (start, body):
            await hooks(message, {"path": "/x"})  # type: ignore[arg-type]

    asyncio.run(send_both())
    assert seen == [
        ("first", "http.response.start"),
        ("second", "http.response.start"),
        ("first", "http.response.body"),
        ("second", "http.response.body"),
    ]
    assert start["marked"] == body["marked"] == ["/x", "second"]


def test_without_callbacks_nothing_happens() -> None:
    message: dict[str, Any] = {"type": "http.response.start"}
    asyncio.run(ResponseHooks()(message, {}))  # type: ignore[arg-type]
    assert message == {"type": "http.response.start"}


# Moved from test_routes.py: the real app has this one hook, shared by both of its callbacks.
def test_one_before_send_hook_adds_the_headers_and_observes_the_request(settings: Settings) -> None:
    """The observability plugin joins the app's one ResponseHooks instead of adding a hook (one
    coroutine per message): both the header and the metrics still come from it."""
    app = create_app(settings.model_copy(update={"metrics_enabled": True}))
    (hook,) = app.litestar.before_send
    assert isinstance(hook, ResponseHooks)
    assert len(hook.callbacks) == 2
    with AppClient(app) as client:
        health = client.get("/healthz", headers={"x-request-id": "h-1"})
        scrape = client.get("/metrics").text
    assert health.headers["x-request-id"] == "h-1"
    healthz = 'key="anonymous",method="GET",protocol="http",route="/healthz",status="200"'
    assert f"inference_http_requests_total{{{healthz}}} 1.0" in scrape
