"""The examples of docs/security.md work: the keys file parses as the docs say, and the
tritonclient example runs against a real server with its key sent through ``headers=``.

Blocks are found by the ``<!-- example: NAME -->`` line right above their fence.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from serving.access.keys import KeysFileError, parse_keys
from serving.access.scopes import Scope
from tests.support.server import REPO, free_port, serving_process

PAGE = REPO / "docs" / "security.md"
EXAMPLE = re.compile(r"^<!-- example: (\S+) -->\n```\w+\n(.*?)^```", re.MULTILINE | re.DOTALL)
KEY = "doc-example-key-7c41e9a2b8d05f36"


def examples() -> dict[str, str]:
    return dict(EXAMPLE.findall(PAGE.read_text()))


def test_the_examples_are_there() -> None:
    assert set(examples()) == {"keys-file", "tritonclient-http", "tritonclient-grpc"}


def test_the_keys_file_example_parses_once_a_key_is_pasted() -> None:
    text = examples()["keys-file"]
    with pytest.raises(KeysFileError, match=r"web-frontend.*visible ASCII without spaces"):
        parse_keys(text.encode())  # the placeholder itself is refused, not taken as a key
    table = parse_keys(text.replace("<paste the key here>", KEY).encode())
    ops, web = table.keys
    assert (ops.name, ops.scopes) == ("ops", frozenset({Scope.ADMIN, Scope.READ}))
    assert (web.rate_per_s, web.burst) == (50.0, 100.0)


def run_example(
    address: str, key: str, name: str = "tritonclient-http"
) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "MNIST_ADDRESS": address,
        "MNIST_GRPC_ADDRESS": address,
        "MNIST_API_KEY": key,
    }
    return subprocess.run(
        [sys.executable, "-c", examples()[name]],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.e2e
@pytest.mark.slow
def test_the_http_example_runs(tiny_model_repository: Path, tmp_path: Path) -> None:
    env = {"SERVING_MODEL_REPOSITORY": str(tiny_model_repository)}
    with serving_process(env, tmp_path / "server.log") as server:
        result = run_example(server.base_url.removeprefix("http://"), KEY)
    assert result.returncode == 0, result.stderr
    assert re.fullmatch(r"\[\d\] \['1'\]\n", result.stdout), result.stdout


@pytest.mark.e2e
@pytest.mark.slow
def test_both_examples_need_their_key(tiny_model_repository: Path, tmp_path: Path) -> None:
    """With keys required each example works with its key and fails with another: HTTP with
    401, gRPC with UNAUTHENTICATED (the same guard, the key as ``authorization`` metadata)."""
    keys = tmp_path / "keys.toml"
    keys.write_text(f'[[keys]]\nname = "doc"\nkey = "{KEY}"\nscopes = ["infer", "read"]\n')
    grpc_port = free_port()
    env = {
        "SERVING_MODEL_REPOSITORY": str(tiny_model_repository),
        "SERVING_KEYS_FILE": str(keys),
        "SERVING_REQUIRE_KEYS": "true",
        "SERVING_GRPC_PORT": str(grpc_port),
    }
    with serving_process(env, tmp_path / "server.log") as server:
        address = server.base_url.removeprefix("http://")
        good = run_example(address, KEY)
        bad = run_example(address, "not-" + KEY)
        grpc_address = f"127.0.0.1:{grpc_port}"
        good_grpc = run_example(grpc_address, KEY, "tritonclient-grpc")
        bad_grpc = run_example(grpc_address, "not-" + KEY, "tritonclient-grpc")
    assert good.returncode == 0, good.stderr
    assert bad.returncode != 0
    assert "401" in bad.stderr
    assert good_grpc.returncode == 0, good_grpc.stderr
    assert re.fullmatch(r"\[\d\]\n", good_grpc.stdout), good_grpc.stdout
    assert bad_grpc.returncode != 0
    assert "UNAUTHENTICATED" in bad_grpc.stderr
