"""The ``tritonclient.grpc`` example of docs/serving.md runs, as written, against a real server."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.server import REPO, free_port, serving_process

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
MARKER = "# Run by tests/docs/test_grpc_example.py"


def example() -> str:
    """The python block of docs/serving.md that starts with the marker line."""
    page = (REPO / "docs" / "serving.md").read_text()
    blocks: list[str] = re.findall(r"^```python\n(.*?)^```", page, re.MULTILINE | re.DOTALL)
    (block,) = [b for b in blocks if b.startswith(MARKER)]
    return block


def test_the_grpc_example_runs(tiny_model_repository: Path, tmp_path: Path) -> None:
    code = example()
    assert 'InferenceServerClient("localhost:8001")' in code  # the documented default port
    port = free_port()
    env = {"SERVING_MODEL_REPOSITORY": str(tiny_model_repository), "SERVING_GRPC_PORT": str(port)}
    with serving_process(env, tmp_path / "server.log"):
        result = subprocess.run(
            [sys.executable, "-c", code.replace("localhost:8001", f"127.0.0.1:{port}")],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert result.returncode == 0, result.stderr
    label, ids = result.stdout.splitlines()
    assert re.fullmatch(r"label \d p 0\.\d+|label \d p 1\.0", label), label
    assert re.fullmatch(r"prediction ids \['[A-Za-z0-9_-]{44}'\]", ids), ids
