"""``serving.testing``: the two ways every test, load test and benchmark runs the service. The
process harness's environment and failure reports, and the in-process client's handles."""

from __future__ import annotations

import shutil
import socket
import sys
from pathlib import Path

import pytest

from serving.testing import SERVE, AppClient, ServerProcess, free_port, pinned
from tests.conftest import AppStarter


def test_a_free_port_can_be_bound() -> None:
    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


def test_pinned_runs_on_one_core_only_when_asked() -> None:
    assert pinned(["python", "-V"], None) == ["python", "-V"]
    if shutil.which("taskset") is None:
        pytest.skip("taskset is not installed here")
    assert pinned(["python", "-V"], 1) == ["taskset", "-c", "1", "python", "-V"]


def test_the_child_environment_puts_the_tests_values_on_top(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SERVING_PORT", "1")  # a developer's shell: overridden by the harness
    monkeypatch.setenv("SERVING_DRAIN_GRACE_S", "5")  # theirs wins over the harness default
    server = ServerProcess(tmp_path / "log", env={"SERVING_WORKERS": "2"}, port=4321)
    assert server.cmd == [sys.executable, *SERVE]
    assert server.base_url == "http://127.0.0.1:4321"
    assert server.env["SERVING_HOST"] == "127.0.0.1"
    assert server.env["SERVING_PORT"] == "4321"
    assert server.env["SERVING_WORKERS"] == "2"
    assert server.env["SERVING_DRAIN_GRACE_S"] == "5"
    assert server.env["SERVING_GRPC_PORT"] == "0"  # gRPC off unless asked: 8001 is shared
    tls = ServerProcess(tmp_path / "log", ca_file=tmp_path / "ca.pem")
    assert tls.base_url.startswith("https://127.0.0.1:")
    assert tls.port != 4321


def test_a_harness_not_started_has_no_process_and_stops_cleanly(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "log")
    with pytest.raises(RuntimeError, match="has not been started"):
        _ = server.process
    assert server.stop() == 0
    assert server.log() == ""


def test_a_server_that_exits_before_ready_is_reported_with_its_output(tmp_path: Path) -> None:
    script = "import sys; print('cannot serve: no model'); sys.exit(3)"
    server = ServerProcess(tmp_path / "server.log", args=("-c", script), ready_timeout_s=60)
    with pytest.raises(RuntimeError) as raised:
        server.start()
    assert "exited with 3 before ready" in str(raised.value)
    assert "cannot serve: no model" in str(raised.value)
    assert server.stop() == 3


def test_a_server_that_never_gets_ready_is_stopped_and_reported(tmp_path: Path) -> None:
    script = "import time; time.sleep(600)"
    server = ServerProcess(tmp_path / "server.log", args=("-c", script), ready_timeout_s=0.5)
    with pytest.raises(RuntimeError, match=r"not ready after 0\.5 s"):
        server.start()
    assert server.process.poll() is not None  # stopped, not left behind


def test_the_app_client_keeps_the_app_and_its_service(app_client: AppStarter) -> None:
    client = app_client()
    assert isinstance(client, AppClient)
    with client:
        assert client.service is client.served.service
        assert client.service.ready  # the lifespan ran: loaded and warmed
    assert not client.service.ready
