"""``python -m tests.support.slow_serving``: the real service, whose onnxruntime session takes a
known time per batch (``SLOW_BATCH_MS`` + ``SLOW_ROW_MS`` per row, sleeping without the GIL as
onnxruntime computes). A known, low capacity lets a Python client overload it."""

from __future__ import annotations

import os
import socket
import sys
import time
from typing import Any

import onnxruntime as ort

import serving.server
from serving.__main__ import main
from serving.settings import Settings

BATCH_S = float(os.environ.get("SLOW_BATCH_MS", "2")) / 1000
ROW_S = float(os.environ.get("SLOW_ROW_MS", "2")) / 1000


class SlowSession(ort.InferenceSession):  # type: ignore[misc]
    def run(self, output_names: Any, input_feed: Any, run_options: Any = None) -> Any:
        rows = next(iter(input_feed.values())).shape[0]
        time.sleep(BATCH_S + ROW_S * rows)
        return super().run(output_names, input_feed, run_options)


def slow_worker(settings: Settings, listener: socket.socket) -> None:
    """A worker process of several (spawned: the patch is made again in it)."""
    ort.InferenceSession = SlowSession
    serve_worker(settings, listener)


serve_worker = serving.server.serve_worker

if __name__ == "__main__":
    ort.InferenceSession = SlowSession
    serving.server.serve_worker = slow_worker  # what the supervisor spawns with workers > 1
    sys.exit(main())
