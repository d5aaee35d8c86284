"""The shipped HAProxy config (deploy/haproxy/haproxy.cfg): HAProxy accepts it, the deploys embed
it and agree with it and with the service, and a real HAProxy running it in front of a real
service passes requests, refuses with the service's 503 when its limit and queue are spent,
and stops routing to a draining service.

The live tests run the file as shipped; only its environment variables change (ports, and the
limit or queue timeout a test shrinks on purpose). They synchronise on states, never on sleeps:
a batch held in compute by the slow service's gate file, the proxy's queue depth and server
state from its metrics.
"""

from __future__ import annotations

import json
import re
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml  # type: ignore[import-untyped]

from benchmarks.proxy import CONFIG, HaproxyProcess, check, defaults
from serving.settings import Settings
from serving.testing import ServerProcess
from tests.support.server import REPO, RunningServer, serving_process
from tests.support.slow_serving import entered
from tests.support.tiny_model import synthetic_images

DEPLOY = REPO / "deploy"
RAW = {"content-type": "application/octet-stream"}
SLOW_SERVE = ("-m", "tests.support.slow_serving")


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def port_of(address: str) -> int:
    """The port of an HAProxy bind or server address (``:8080``, ``127.0.0.1:8000``)."""
    return int(address.rsplit(":", 1)[1])


def pod() -> dict[str, Any]:
    spec: dict[str, Any] = load(DEPLOY / "k8s" / "deployment.yaml")["spec"]["template"]["spec"]
    return spec


def container(name: str) -> dict[str, Any]:
    (found,) = [c for c in pod()["containers"] if c["name"] == name]
    return dict(found)


def named_port(spec: dict[str, Any], name: str) -> int:
    (port,) = [p["containerPort"] for p in spec["ports"] if p["name"] == name]
    return int(port)


def config_setting(keyword: str) -> str:
    """The value of a one-line setting of the shipped file (e.g. ``timeout server``)."""
    (value,) = re.findall(rf"^\s*{keyword}\s+(\S+)\s*$", CONFIG.read_text(), re.MULTILINE)
    return str(value)


# ---------------------------------------------------------------- the file itself


def test_haproxy_accepts_the_shipped_config_without_warnings() -> None:
    done = check()
    assert done.returncode == 0, done.stdout + done.stderr
    # Also with the environment the live tests and the benchmark give it.
    done = check({"PROXY_BIND": "127.0.0.1:1", "PROXY_BACKEND_MAXCONN": "1"})
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_check_fails_on_a_broken_config(tmp_path: Path) -> None:
    broken = tmp_path / "haproxy.cfg"
    broken.write_text(CONFIG.read_text().replace("timeout queue", "timeout queeu"))
    assert check(config=broken).returncode != 0
    # Zero-warning mode: a setting HAProxy would ignore fails too.
    ignored = CONFIG.read_text().replace(
        "frontend public\n", "frontend public\n    timeout queue 1s\n"
    )
    broken.write_text(ignored)
    assert check(config=broken).returncode != 0


def test_every_knob_has_a_default_and_is_used() -> None:
    lines = [line for line in CONFIG.read_text().splitlines() if not line.lstrip().startswith("#")]
    used = set(re.findall(r"\$\{(\w+)\}", "\n".join(lines)))
    knobs = defaults()
    assert used == set(knobs), (used, set(knobs))
    assert all(knob.startswith("PROXY_") and "$" not in value for knob, value in knobs.items())


# ---------------------------------------------------------------- the deploys agree


def test_kubernetes_configmap_embeds_the_shipped_config() -> None:
    configmap = load(DEPLOY / "k8s" / "haproxy-configmap.yaml")
    assert configmap["data"]["haproxy.cfg"] == CONFIG.read_text(), (
        "deploy/k8s/haproxy-configmap.yaml is stale: regenerate it from deploy/haproxy/haproxy.cfg "
        "(command in its header)"
    )
    volumes = {v["name"]: v for v in pod()["volumes"]}
    proxy = container("proxy")
    (mount,) = proxy["volumeMounts"]
    assert volumes[mount["name"]]["configMap"]["name"] == configmap["metadata"]["name"]
    # Where the haproxy image reads its config.
    assert mount["mountPath"] == "/usr/local/etc/haproxy"


def test_ports_agree_between_proxy_service_and_manifests() -> None:
    knobs = defaults()
    settings = Settings()
    proxy_port = port_of(knobs["PROXY_BIND"])
    metrics_port = port_of(knobs["PROXY_METRICS_BIND"])
    # Kubernetes: the sidecar listens where the file binds and forwards to the serve container.
    proxy, serve = container("proxy"), container("serve")
    assert "env" not in proxy  # the file's defaults are the pod's
    assert knobs["PROXY_SERVICE"] == f"127.0.0.1:{settings.port}"
    assert named_port(serve, "serve") == settings.port
    assert named_port(proxy, "http") == proxy_port
    assert named_port(proxy, "proxy-metrics") == metrics_port
    service = load(DEPLOY / "k8s" / "service.yaml")
    # HTTP goes through the proxy's port; gRPC (HTTP/2, not the proxy's) to the service's own.
    targets = {p["name"]: p["targetPort"] for p in service["spec"]["ports"]}
    assert targets == {"http": "http", "grpc": "grpc"}
    assert {p["name"] for c in pod()["containers"] for p in c["ports"]} >= {"http", "serve"}
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert serve[probe]["httpGet"]["port"] == "serve"  # probes skip the proxy
    assert proxy["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "proxy-metrics"}
    assert re.search(r"^\s*monitor-uri /healthz$", CONFIG.read_text(), re.MULTILINE)
    # compose: the same file, the public port on the proxy, the service behind it.
    compose = load(DEPLOY / "compose.yaml")["services"]
    inference, compose_proxy = compose["inference"], compose["proxy"]
    assert "ports" not in inference
    assert compose_proxy["environment"]["PROXY_SERVICE"] == (
        f"inference:{inference['environment']['SERVING_PORT']}"
    )
    published = {int(p.split(":")[1]): int(p.split(":")[0]) for p in compose_proxy["ports"]}
    assert published[proxy_port] == settings.port  # clients keep using localhost:8000
    assert metrics_port in published
    assert "./haproxy/haproxy.cfg:/usr/local/etc/haproxy/haproxy.cfg:ro" in compose_proxy["volumes"]
    assert compose_proxy["image"].split(":")[1] == proxy["image"].split(":")[1]
    scrape = {j["job_name"]: j for j in load(DEPLOY / "prometheus.yml")["scrape_configs"]}
    assert scrape["haproxy"]["static_configs"][0]["targets"] == [f"proxy:{metrics_port}"]


def test_proxy_limits_fit_the_service_settings() -> None:
    knobs = defaults()
    settings = Settings()
    # The queue timeout is the service's default deadline.
    assert float(knobs["PROXY_DEADLINE_MS"]) == settings.request_timeout_ms
    assert config_setting("timeout queue") == '"${PROXY_DEADLINE_MS}"'
    # The service answers every request by its longest deadline: the proxy waits longer.
    assert config_setting("timeout server").endswith("s")
    assert float(config_setting("timeout server")[:-1]) * 1000 > settings.max_request_timeout_ms
    # What the proxy lets in, the service queues without shedding (1-row requests) and accepts.
    maxconn = int(knobs["PROXY_BACKEND_MAXCONN"])
    assert maxconn <= settings.max_queue_size
    assert maxconn <= settings.max_connections
    # ... and it is a whole number of batches, so the batcher can fill them.
    assert maxconn % settings.max_batch_size == 0


def test_every_platform_limits_an_instance_to_the_same_concurrency() -> None:
    """One number, derived once (docs/deploy.md): the proxy's maxconn per 1-CPU instance is
    Cloud Run's and KServe's containerConcurrency; compose runs two workers, so twice it."""
    maxconn = int(defaults()["PROXY_BACKEND_MAXCONN"])
    cloud_run = load(DEPLOY / "cloudrun" / "service.yaml")["spec"]["template"]["spec"]
    kserve = load(DEPLOY / "kserve" / "inferenceservice.yaml")["spec"]["predictor"]
    assert cloud_run["containerConcurrency"] == kserve["containerConcurrency"] == maxconn
    compose = load(DEPLOY / "compose.yaml")["services"]
    workers = int(compose["inference"]["environment"]["SERVING_WORKERS"])
    knobs = compose["proxy"]["environment"]
    assert int(knobs["PROXY_BACKEND_MAXCONN"]) == workers * maxconn
    assert int(knobs["PROXY_CAPACITY"]) == workers * int(defaults()["PROXY_CAPACITY"])


def test_kubernetes_sidecar_outlives_the_service_listener() -> None:
    serve, proxy = container("serve"), container("proxy")
    env = {e["name"]: e.get("value") for e in serve["env"]}
    serve_pre_stop = int(serve["lifecycle"]["preStop"]["exec"]["command"][1])
    proxy_pre_stop = int(proxy["lifecycle"]["preStop"]["exec"]["command"][1])
    # Until the service's listener closes, clients routed to the pod get a 503, not a refusal.
    assert proxy_pre_stop >= serve_pre_stop + float(env["SERVING_DRAIN_GRACE_S"])
    hard_stop = int(config_setting("hard-stop-after").removesuffix("s"))
    assert pod()["terminationGracePeriodSeconds"] > proxy_pre_stop + hard_stop
    # Guaranteed QoS holds for the pod only if every container has requests == limits.
    for spec in (serve, proxy):
        assert spec["resources"]["requests"] == spec["resources"]["limits"], spec["name"]
    hpa = load(DEPLOY / "k8s" / "hpa.yaml")
    (metric,) = hpa["spec"]["metrics"]
    assert metric["containerResource"]["container"] == "serve"


# ---------------------------------------------------------------- a real HAProxy in front


def raw_image(seed: int = 1) -> bytes:
    return (synthetic_images(1, seed=seed) * 255).astype("uint8").tobytes()


def wait_until(condition: Callable[[], bool], timeout_s: float = 30) -> None:
    """Poll ``condition`` (the timeout only guards against a hang)."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition never held"
        time.sleep(0.005)


class Call(threading.Thread):
    """One POST through the proxy on its own thread: ``.response`` once it is answered."""

    def __init__(self, url: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.headers = {**RAW, **(headers or {})}
        self.response: httpx.Response | None = None

    def run(self) -> None:
        with httpx.Client(timeout=60) as http:
            self.response = http.post(self.url, content=raw_image(), headers=self.headers)

    def answered(self) -> httpx.Response:
        self.join(timeout=60)
        assert self.response is not None, "no answer"
        return self.response


def predict(
    http: httpx.Client, url: str = "/v1/predict", request_id: str | None = None, **headers: str
) -> httpx.Response:
    """POST one raw image; ``headers`` by their Python names (X_Request_Timeout_Ms=...)."""
    extra = {name.replace("_", "-"): value for name, value in headers.items()}
    if request_id is not None:
        extra["X-Request-ID"] = request_id
    return http.post(url, content=raw_image(), headers={**RAW, **extra})


def assert_proxy_503(response: httpx.Response, request_id: str, why: str) -> None:
    """The service's 503: its JSON error body, Retry-After, and the request's id."""
    assert response.status_code == 503, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.headers["retry-after"] == defaults()["PROXY_RETRY_AFTER_S"]
    assert response.headers["x-request-id"] == request_id
    error = response.json()["error"]
    assert set(error) == {"status", "message", "request_id"}
    assert error["status"] == 503
    assert error["request_id"] == request_id
    assert why in error["message"]


@pytest.fixture
def service(tiny_model_repository: Path, tmp_path: Path) -> Iterator[RunningServer]:
    env = {"SERVING_MODEL_REPOSITORY": str(tiny_model_repository)}
    with serving_process(env, tmp_path / "server.log") as server:
        yield server


@pytest.fixture
def gated_service(
    tiny_model_repository: Path, tmp_path: Path
) -> Iterator[tuple[RunningServer, Path]]:
    """The slow service with its gate closed: the first real batch is held in compute."""
    gate = tmp_path / "gate"
    gate.touch()
    env = {
        "SERVING_MODEL_REPOSITORY": str(tiny_model_repository),
        "SERVING_REQUEST_TIMEOUT_MS": "30000",  # the held request must not time out meanwhile
        "SERVING_INLINE_MAX_ROWS": "0",  # a held inline batch would hold the event loop too
        "SLOW_BATCH_MS": "0",
        "SLOW_ROW_MS": "0",
        "SLOW_GATE_FILE": str(gate),
    }
    slow = ServerProcess(tmp_path / "server.log", args=SLOW_SERVE, env=env, cwd=REPO)
    with slow as server:
        try:
            yield server, gate
        finally:
            gate.unlink(missing_ok=True)


@pytest.mark.e2e
def test_requests_pass_through_with_their_request_id(
    service: RunningServer, tmp_path: Path
) -> None:
    with (
        HaproxyProcess(service.port, tmp_path / "haproxy.log") as proxy,
        httpx.Client(base_url=proxy.base_url, timeout=30) as http,
    ):
        kept = predict(http, request_id="c-1")
        generated = predict(http)
        too_long = predict(http, request_id="x" * 129)
        oip = http.post("/v2/models/mnist/infer", content=json.dumps({"inputs": [{
            "name": "pixels", "shape": [1, 784], "datatype": "FP32",
            "data": synthetic_images(1).ravel().tolist()}]}),
            headers={"content-type": "application/json", "X-Request-ID": "c-2"})  # fmt: skip
        ready = http.get("/readyz")
    for response in (kept, generated, too_long, oip, ready):
        assert response.status_code == 200, response.text
    assert kept.headers["x-request-id"] == "c-1"
    assert len(kept.json()["predictions"]) == 1
    # No id, or one the service would replace: the proxy sets a UUID (the service's own ids
    # are 32 hex digits), and the service answers with it, so both quote the same id.
    for response in (generated, too_long):
        assert uuid.UUID(response.headers["x-request-id"]).version == 4
    assert oip.headers["x-request-id"] == "c-2"
    assert oip.json()["outputs"]


@pytest.mark.e2e
def test_a_request_queued_past_the_queue_timeout_gets_the_services_503(
    gated_service: tuple[RunningServer, Path], tmp_path: Path
) -> None:
    """One slot (maxconn 1), held by a batch in compute: the next request waits in the proxy's
    queue for the queue timeout, then gets 503 with the JSON body and Retry-After, while the
    held one is still computing (so the proxy answered it, not the service)."""
    server, gate = gated_service
    env = {"PROXY_BACKEND_MAXCONN": "1", "PROXY_DEADLINE_MS": "300"}
    with HaproxyProcess(server.port, tmp_path / "haproxy.log", env=env) as proxy:
        url = proxy.base_url + "/v1/predict"
        held = Call(url)
        held.start()
        wait_until(lambda: entered(gate).exists())
        with httpx.Client(timeout=30) as http:
            queued = predict(http, url, request_id="q-1")
        assert held.is_alive()
        assert gate.exists()
        gate.unlink()
        assert held.answered().status_code == 200
    assert_proxy_503(queued, "q-1", "queue timeout")


@pytest.mark.e2e
def test_a_request_the_queue_cannot_serve_in_time_is_refused_at_once(
    gated_service: tuple[RunningServer, Path], tmp_path: Path
) -> None:
    """Capacity 2 req/s and one slot, one request held in it and one queued: a request with a
    1 s deadline would be answered third, after 1.5 s (3 requests > 2 req/s x 1 s), so it is
    refused at once while the queued one still waits; the queued one, with the default (30 s
    here) deadline, had been let in. OIP v2 paths get OIP's error shape. Released, the held
    and the queued requests are served."""
    server, gate = gated_service
    env = {"PROXY_BACKEND_MAXCONN": "1", "PROXY_DEADLINE_MS": "30000", "PROXY_CAPACITY": "2"}
    with HaproxyProcess(server.port, tmp_path / "haproxy.log", env=env) as proxy:
        url = proxy.base_url + "/v1/predict"
        held = Call(url)
        held.start()
        wait_until(lambda: entered(gate).exists())
        queued = Call(url)
        queued.start()
        wait_until(lambda: proxy.queued() == 1)
        with httpx.Client(base_url=proxy.base_url, timeout=30) as http:
            refused = predict(http, request_id="r-1", X_Request_Timeout_Ms="1000")
            oip = predict(http, "/v2/models/mnist/infer", X_Request_Timeout_Ms="1000")
        assert queued.is_alive()
        assert held.is_alive()
        gate.unlink()
        assert held.answered().status_code == 200
        assert queued.answered().status_code == 200
    assert_proxy_503(refused, "r-1", "outlasts the request's deadline")
    assert oip.status_code == 503
    assert oip.headers["retry-after"] == defaults()["PROXY_RETRY_AFTER_S"]
    assert set(oip.json()) == {"error"}
    assert "outlasts the request's deadline" in oip.json()["error"]


@pytest.mark.e2e
def test_a_draining_service_is_marked_down_and_the_proxy_answers_503(
    tiny_model_repository: Path, tmp_path: Path
) -> None:
    """SIGTERM makes the service drain: /readyz 503 (kept here for 60 s). HAProxy's health check
    marks it DOWN, and requests get the proxy's 503 instead of reaching it."""
    env = {"SERVING_MODEL_REPOSITORY": str(tiny_model_repository), "SERVING_DRAIN_GRACE_S": "60"}
    with (
        serving_process(env, tmp_path / "server.log") as server,
        HaproxyProcess(server.port, tmp_path / "haproxy.log") as proxy,
        httpx.Client(base_url=proxy.base_url, timeout=30) as http,
    ):
        before = predict(http)
        server.process.terminate()  # the first SIGTERM: drain
        wait_until(lambda: proxy.server_state() == "DOWN")
        after = predict(http, request_id="d-1")
        assert server.process.poll() is None  # still draining, yet no longer routed to
    assert before.status_code == 200
    assert_proxy_503(after, "d-1", "no ready instance")
    assert "is DOWN" in proxy.log()


@pytest.mark.e2e
def test_a_slow_body_does_not_hold_the_services_slot(
    service: RunningServer, tmp_path: Path
) -> None:
    """One slot (maxconn 1). A client sends its headers and half its body, then stalls: with
    ``option http-buffer-request`` the proxy waits for the body before taking the slot, so
    another client is served meanwhile (without it, the second request waits in the queue and
    gets 503 after the queue timeout)."""
    env = {"PROXY_BACKEND_MAXCONN": "1", "PROXY_DEADLINE_MS": "2000"}
    body = raw_image()
    with HaproxyProcess(service.port, tmp_path / "haproxy.log", env=env) as proxy:
        requests = 'haproxy_frontend_http_requests_total{proxy="public"}'
        seen = proxy.metrics()[requests]
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=30) as slow:
            head = b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n" % len(body)
            slow.sendall(head + b"Content-Type: application/octet-stream\r\n\r\n")
            slow.sendall(body[: len(body) // 2])
            wait_until(lambda: proxy.metrics()[requests] > seen)  # its headers are parsed
            with httpx.Client(timeout=30) as http:
                other = predict(http, proxy.base_url + "/v1/predict")
            slow.sendall(body[len(body) // 2 :])
            answer = slow.makefile("rb").readline()
    assert other.status_code == 200, other.text
    assert answer.startswith(b"HTTP/1.1 200"), answer
