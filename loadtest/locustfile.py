"""Locust users that post real MNIST test digits to ``POST /v1/predict`` (or, with
``--protocol v2``, the Open Inference Protocol's ``POST /v2/models/mnist/infer``; with
``--protocol grpc``, its gRPC ``ModelInfer`` on the gRPC port), and the p95 gate.

    locust -f loadtest/locustfile.py --headless -H http://127.0.0.1:8000 -u 8 -t 30s \
        --p95-budget-ms 20 --max-error-rate 0.01 [--shape steady|step|spike] [--processes 2] \
        [--feedback-ratio 0.2] [--drift 0.5] [--protocol v1|v2|grpc] [--grpc-host HOST:PORT] \
        [--encoding mixed|json|binary]

A response fails unless it is 200 and schema-valid with one prediction per instance; correct
labels are counted (accuracy). The verdict is taken on the local runner or the master, never on
a worker, and sets the exit code; the one-line summary is printed last, with the service's own
live accuracy from ``/v1/quality`` beside the verdict.

``--feedback-ratio`` makes users send the true labels of that share of their predictions to
``/v1/feedback`` (batched, request name "feedback"); ``--drift`` replaces that share of the
requests by out-of-distribution digits (inverted or noisy; their true labels are kept).
``--encoding json|binary`` sends only one encoding (v1: JSON or octet-stream; v2: JSON data or
the binary tensor extension with FP32 data); ``mixed`` (default) follows the weights. v2
responses carry no prediction ids, so ``--feedback-ratio`` only applies to v1.

``--protocol grpc`` runs :class:`GrpcPredictUser` instead of :class:`PredictUser`: the official
``tritonclient.grpc`` client wrapped as Locust documents for custom clients
(loadtest/oip_grpc.py), raw FP32 contents, against ``--grpc-host`` (default: the ``-H`` host on
port 8001). Its calls count in the same statistics, so the same gate judges them.
"""

from __future__ import annotations

import json
import random
import urllib.request
from collections.abc import Callable
from typing import Any

from locust import FastHttpUser, User, events, task
from locust.argument_parser import LocustArgumentParser
from locust.env import Environment
from locust.runners import MasterRunner, WorkerRunner

from loadtest import percentiles
from loadtest.data import Sample, build_samples, load_digits, mnist_dir, out_of_distribution
from loadtest.gate import AccuracyCounter, GateConfig, RunResult, decide, summary_line
from loadtest.oip import HEADER_LENGTH, INFER_PATH, V2Sample, check_v2_response, v2_samples
from loadtest.oip_grpc import (
    GrpcInferClient,
    GrpcSample,
    close_all,
    grpc_samples,
    grpc_target,
    init_gevent,
)
from loadtest.schema import SchemaError, check_predictions
from loadtest.shapes import SelectableShape, StepPlan

# Every Locust process imports the locustfile (master and each --processes worker).
percentiles.install()

__all__ = ["GrpcPredictUser", "PredictUser", "SelectableShape"]

PREDICT_PATH = "/v1/predict"
FEEDBACK_PATH = "/v1/feedback"
QUALITY_PATH = "/v1/quality"


def _listen(hook: Any, handler: Callable[..., None]) -> None:
    """``EventHook.add_listener`` is untyped; registering through ``Any`` keeps mypy strict."""
    hook.add_listener(handler)


class _State:
    """Per-process state built at init: the prepared samples and the accuracy counter."""

    samples: list[Sample] = []  # noqa: RUF012 - filled once per process at init
    drifted: list[Sample] = []  # noqa: RUF012 - the --drift scenario's samples
    v2: list[V2Sample] = []  # noqa: RUF012 - the v2 twins of samples (--protocol v2)
    v2_drifted: list[V2Sample] = []  # noqa: RUF012 - the v2 twins of drifted
    grpc: list[GrpcSample] = []  # noqa: RUF012 - the gRPC twins of samples (--protocol grpc)
    grpc_drifted: list[GrpcSample] = []  # noqa: RUF012 - the gRPC twins of drifted
    accuracy = AccuracyCounter()


def _add_options(parser: LocustArgumentParser) -> None:
    defaults = GateConfig.defaults_from_env()
    group = parser.add_argument_group("MNIST predict load test (loadtest/)")
    group.add_argument(
        "--p95-budget-ms",
        type=float,
        default=defaults.p95_budget_ms,
        env_var="LOCUST_P95_BUDGET_MS",
        help="Gate: whole-run p95 budget (ms)",
    )
    group.add_argument(
        "--max-error-rate",
        type=float,
        default=defaults.max_error_rate,
        env_var="LOCUST_MAX_ERROR_RATE",
        help="Gate: highest failure ratio",
    )
    group.add_argument(
        "--mnist-dir",
        default="",
        env_var="LOCUST_MNIST_DIR",
        help="IDX directory (default: $MNIST_DIR, else ../shared/data/mnist)",
    )
    group.add_argument("--digits", type=int, default=2000, help="Test digits to cycle through")
    group.add_argument(
        "--instances-per-request", type=int, default=1, help="Digits per request body"
    )
    group.add_argument("--json-weight", type=int, default=3, help="Weight of the JSON task")
    group.add_argument("--binary-weight", type=int, default=1, help="Weight of the binary task")
    group.add_argument(
        "--shape",
        choices=["steady", "step", "spike"],
        default="steady",
        help="steady: -u for -t; step: find the knee; spike: -u, spike, -u",
    )
    group.add_argument("--step-users", type=int, default=4, help="step: users added per step")
    group.add_argument("--step-time", type=float, default=10.0, help="step: seconds per step")
    group.add_argument("--step-count", type=int, default=6, help="step: number of steps")
    group.add_argument(
        "--step-warmup",
        type=float,
        default=2.0,
        help="step: unmeasured seconds at the start of each step",
    )
    group.add_argument("--spike-users", type=int, default=32, help="spike: users at the peak")
    group.add_argument(
        "--feedback-ratio",
        type=float,
        default=0.0,
        help="Share of predictions whose true labels are sent to /v1/feedback",
    )
    group.add_argument(
        "--feedback-batch", type=int, default=50, help="Labels per /v1/feedback request"
    )
    group.add_argument(
        "--drift",
        type=float,
        default=0.0,
        help="Share of requests carrying out-of-distribution digits (inverted or noisy)",
    )
    group.add_argument(
        "--protocol",
        choices=["v1", "v2", "grpc"],
        default="v1",
        help="v1: POST /v1/predict; v2: Open Inference Protocol POST /v2/models/mnist/infer; "
        "grpc: its gRPC ModelInfer (raw FP32 contents, tritonclient.grpc) on --grpc-host",
    )
    group.add_argument(
        "--grpc-host",
        default="",
        env_var="LOCUST_GRPC_HOST",
        help="host:port of the gRPC port (default: the -H host on port 8001)",
    )
    group.add_argument(
        "--encoding",
        choices=["mixed", "json", "binary"],
        default="mixed",
        help="json or binary only (v1: octet-stream; v2: binary tensor data, FP32); mixed: "
        "by the weights (Locust itself owns --json)",
    )


def _on_init(environment: Environment, **_: Any) -> None:
    options = environment.parsed_options
    runner = environment.runner
    if options is None:
        return
    # One user class per run, chosen by --protocol, in every process (the master dispatches
    # users by class name, the workers spawn them from the same list).
    chosen: type[User] = GrpcPredictUser if options.protocol == "grpc" else PredictUser
    environment.user_classes[:] = [chosen]
    if options.protocol == "grpc":
        init_gevent()  # before any channel exists in this process
        GrpcPredictUser.target = grpc_target(options.grpc_host, environment.host)
    if not isinstance(runner, MasterRunner):
        images, labels = load_digits(mnist_dir(options.mnist_dir or None), options.digits)
        _State.samples = build_samples(images, labels, options.instances_per_request)
        if options.drift > 0:
            drifted = out_of_distribution(images)
            _State.drifted = build_samples(drifted, labels, options.instances_per_request)
        PredictUser.weights = encoding_weights(
            options.encoding, options.json_weight, options.binary_weight
        )
        PredictUser.protocol = options.protocol
        if options.protocol == "v2":
            _State.v2 = v2_samples(_State.samples)
            _State.v2_drifted = v2_samples(_State.drifted)
        if options.protocol == "grpc":
            _State.grpc = grpc_samples(_State.samples)
            _State.grpc_drifted = grpc_samples(_State.drifted)
    if isinstance(runner, WorkerRunner):
        _listen(runner.environment.events.report_to_master, _ship_accuracy)
    if isinstance(runner, MasterRunner):
        _listen(runner.environment.events.worker_report, _merge_accuracy)


def encoding_weights(encoding: str, json_weight: int, binary_weight: int) -> tuple[int, int]:
    """``(json, binary)`` task weights: ``--encoding json|binary`` overrides the weights."""
    if encoding == "json":
        return 1, 0
    if encoding == "binary":
        return 0, 1
    return json_weight, binary_weight


def _ship_accuracy(client_id: str, data: dict[str, Any]) -> None:
    data["mnist_accuracy"] = _State.accuracy.take()


def _merge_accuracy(client_id: str, data: dict[str, Any]) -> None:
    _State.accuracy.merge(data.get("mnist_accuracy", {}))


def _result(environment: Environment) -> RunResult:
    runner: Any = environment.runner
    total = runner.stats.total
    return RunResult(
        requests=total.num_requests,
        failures=total.num_failures,
        rps=float(total.total_rps),
        p50_ms=float(total.get_response_time_percentile(0.50)),
        p95_ms=float(total.get_response_time_percentile(0.95)),
        p99_ms=float(total.get_response_time_percentile(0.99)),
        correct=_State.accuracy.correct,
        labelled=_State.accuracy.labelled,
        exceptions=len(runner.exceptions),
    )


class _Outcome:
    line = ""


def _gate(environment: Environment, **_: Any) -> None:
    """Decide the exit code. Workers never judge: their stats are per-report slices."""
    options = environment.parsed_options
    if options is None:
        return
    config = GateConfig(options.p95_budget_ms, options.max_error_rate)
    result = _result(environment)
    verdict = decide(result, config, is_worker=isinstance(environment.runner, WorkerRunner))
    if verdict is None:
        return
    plan = getattr(environment.shape_class, "plan", None)
    if isinstance(plan, StepPlan):
        print(plan.report(config.p95_budget_ms, config.max_error_rate), flush=True)
    environment.process_exit_code = verdict.exit_code
    _Outcome.line = summary_line(result, verdict, config, live_quality(environment.host))


def live_quality(host: str | None) -> str:
    """``live_accuracy=… live_labelled=…`` from the service's /v1/quality (``n/a`` if absent)."""
    if not host:
        return "live_accuracy=n/a"
    try:
        with urllib.request.urlopen(host.rstrip("/") + QUALITY_PATH, timeout=5) as response:
            quality = json.loads(response.read())
    except (OSError, ValueError):
        return "live_accuracy=n/a"
    accuracy = quality.get("accuracy")
    shown = "n/a" if accuracy is None else f"{accuracy:.4f}"
    return f"live_accuracy={shown} live_labelled={quality.get('labelled', 0)}"


def _close_grpc(**_: Any) -> None:
    """Every process, before it exits: gRPC channels closed while gevent still runs
    (loadtest/oip_grpc.py says why)."""
    close_all()


def _print_summary(exit_code: int, **_: Any) -> None:
    """Locust prints its tables after ``quitting``; ``quit`` comes last, so the summary does."""
    if _Outcome.line:
        print(_Outcome.line, flush=True)


_listen(events.init_command_line_parser, _add_options)
_listen(events.init, _on_init)
_listen(events.quitting, _gate)
_listen(events.quitting, _close_grpc)
_listen(events.quit, _print_summary)


class PredictUser(FastHttpUser):
    """A closed-loop client: no think time, so ``-u`` is the concurrency."""

    weights: tuple[int, int] = (3, 1)
    protocol = "v1"

    def on_start(self) -> None:
        options = self.environment.parsed_options
        self.feedback_ratio = options.feedback_ratio if options is not None else 0.0
        self.feedback_batch = options.feedback_batch if options is not None else 50
        self.drift = options.drift if options is not None else 0.0
        self.pending: list[dict[str, Any]] = []

    def on_stop(self) -> None:
        self._send_feedback()

    def _post(self, body: bytes, content_type: str, name: str, sample: Sample) -> None:
        with self.client.post(
            PREDICT_PATH,
            data=body,  # type: ignore[arg-type]  # FastHttpSession sends bytes as-is
            headers={"Content-Type": content_type},
            name=name,
            catch_response=True,
        ) as response:
            if response.status_code != 200:
                response.failure(f"HTTP {response.status_code}")
                return
            try:
                predictions = check_predictions(response.content or b"", len(sample.labels))
            except SchemaError as exc:
                response.failure(str(exc))
                return
            _State.accuracy.add([p.label for p in predictions], sample.labels)
        if self.feedback_ratio > 0 and random.random() < self.feedback_ratio:
            self.pending += [
                {"prediction_id": p.prediction_id, "label": label}
                for p, label in zip(predictions, sample.labels, strict=True)
                if p.prediction_id is not None
            ]
            if len(self.pending) >= self.feedback_batch:
                self._send_feedback()

    def _send_feedback(self) -> None:
        items, self.pending = self.pending, []
        if not items:
            return
        with self.client.post(
            FEEDBACK_PATH, json={"feedback": items}, name="feedback", catch_response=True
        ) as response:
            if response.status_code != 200:
                response.failure(f"HTTP {response.status_code}")

    @task
    def predict(self) -> None:
        drifted = bool(_State.drifted) and random.random() < self.drift
        json_weight, binary_weight = self.weights
        as_json = random.random() * (json_weight + binary_weight) < json_weight
        if self.protocol == "v2":
            self._infer_v2(random.choice(_State.v2_drifted if drifted else _State.v2), as_json)
            return
        sample = random.choice(_State.drifted if drifted else _State.samples)
        if as_json:
            self._post(sample.json, "application/json", "predict json", sample)
        else:
            self._post(sample.binary, "application/octet-stream", "predict binary", sample)

    def _infer_v2(self, sample: V2Sample, as_json: bool) -> None:
        """One OIP v2 infer; a response fails unless it is 200 and holds every prediction."""
        if as_json:
            body, name = sample.json, "v2 infer json"
            headers = {"Content-Type": "application/json"}
        else:
            body, name = sample.binary, "v2 infer binary"
            headers = {
                "Content-Type": "application/octet-stream",
                HEADER_LENGTH: str(sample.header_length),
            }
        with self.client.post(
            INFER_PATH,
            data=body,  # type: ignore[arg-type]  # FastHttpSession sends bytes as-is
            headers=headers,
            name=name,
            catch_response=True,
        ) as response:
            if response.status_code != 200:
                response.failure(f"HTTP {response.status_code}")
                return
            try:
                labels = check_v2_response(
                    response.content or b"",
                    response.headers.get(HEADER_LENGTH),
                    len(sample.labels),
                )
            except SchemaError as exc:
                response.failure(str(exc))
                return
            _State.accuracy.add(labels, sample.labels)


class GrpcPredictUser(User):
    """A closed-loop gRPC client (``--protocol grpc``): ModelInfer with raw FP32 contents
    through tritonclient.grpc, reported to Locust by :class:`GrpcInferClient`."""

    #: host:port of the service's gRPC port (set at init from --grpc-host / -H).
    target = ""

    def on_start(self) -> None:
        options = self.environment.parsed_options
        self.drift = options.drift if options is not None else 0.0
        self.grpc = GrpcInferClient(self.target, self.environment.events.request)

    def on_stop(self) -> None:
        self.grpc.close()

    @task
    def predict(self) -> None:
        drifted = bool(_State.grpc_drifted) and random.random() < self.drift
        sample = random.choice(_State.grpc_drifted if drifted else _State.grpc)
        labels = self.grpc.infer(sample)
        if labels is not None:
            _State.accuracy.add(labels, sample.labels)
