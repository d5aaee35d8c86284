"""``python -m tests.support.slow_serving``: the real service, whose onnxruntime session takes a
known time per batch (``SLOW_BATCH_MS`` + ``SLOW_ROW_MS`` per row, sleeping without the GIL as
onnxruntime computes). A known, low capacity lets a Python client overload it.

With ``SLOW_GATE_FILE`` set, a batch waits while that file exists (after creating
``<file>.entered``): a test holds a batch in compute, sees that it is there, builds the queue it
wants behind it, and releases it by deleting the file. No sleeps, so no timing assumptions.
Warm-up batches are not held (the service could not become ready).
"""

from __future__ import annotations

import os
import socket
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import onnxruntime as ort

import serving.transport.server
from serving.__main__ import main
from serving.settings import Settings

if TYPE_CHECKING:  # the harness stays out of the server this module runs
    from serving.testing import ServerProcess

BATCH_S = float(os.environ.get("SLOW_BATCH_MS", "2")) / 1000
ROW_S = float(os.environ.get("SLOW_ROW_MS", "2")) / 1000
GATE = Path(os.environ["SLOW_GATE_FILE"]) if os.environ.get("SLOW_GATE_FILE") else None


def entered(gate: Path) -> Path:
    """The file a held batch creates: the test's sign that a batch is in compute."""
    return gate.with_name(gate.name + ".entered")


def gated_server(repository: Path, tmp_path: Path, **settings: str) -> tuple[ServerProcess, Path]:
    """The server, unstarted, and its gate: while that file exists, batches wait in the model.
    ``settings`` (environment variables) go on top, e.g. ``SLOW_BATCH_MS`` for slow batches."""
    from serving.testing import ServerProcess
    from tests.support.server import REPO

    gate = tmp_path / "gate"
    env = {
        "SERVING_MODEL_REPOSITORY": str(repository),
        "SERVING_REQUEST_TIMEOUT_MS": "30000",
        "SERVING_INLINE_MAX_ROWS": "0",
        "SLOW_BATCH_MS": "0",
        "SLOW_ROW_MS": "0",
        "SLOW_GATE_FILE": str(gate),
        **settings,
    }
    server = ServerProcess(
        tmp_path / "server.log",
        args=("-m", "tests.support.slow_serving"),
        env=env,
        cwd=REPO,
        ready_timeout_s=60,
    )
    return server, gate


class SlowSession(ort.InferenceSession):  # type: ignore[misc]
    def run(self, output_names: Any, input_feed: Any, run_options: Any = None) -> Any:
        pixels = next(iter(input_feed.values()))
        if GATE is not None and GATE.exists() and pixels.any():  # warm-up batches are zeros
            entered(GATE).touch()
            while GATE.exists():
                time.sleep(0.001)
        time.sleep(BATCH_S + ROW_S * pixels.shape[0])
        return super().run(output_names, input_feed, run_options)


def slow_worker(settings: Settings, listener: socket.socket) -> None:
    """A worker process of several (spawned: the patch is made again in it)."""
    ort.InferenceSession = SlowSession
    serve_worker(settings, listener)


serve_worker = serving.transport.server.serve_worker

if __name__ == "__main__":
    ort.InferenceSession = SlowSession
    # What the supervisor spawns with workers > 1.
    serving.transport.server.serve_worker = slow_worker
    sys.exit(main())
