"""Every knob of the service, read once from ``SERVING_*`` environment variables.

One class so that the CLI, the app factory, the docs and the tests agree on names and defaults.
Each Field's description is the one place a setting is documented: ``python -m serving --help``
and the table in docs/configuration.md (``make docs``) are built from it. CLI flags override the
environment.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

Variant = Literal["fp32", "int8"]


class Settings(BaseSettings):
    """Service configuration; environment variable = ``SERVING_<FIELD NAME IN UPPER CASE>``."""

    model_config = SettingsConfigDict(
        env_prefix="SERVING_", extra="ignore", frozen=True, protected_namespaces=()
    )

    # ---------------------------------------------------------------- server
    host: str = Field(
        default="127.0.0.1", description="Interface to bind; 0.0.0.0 inside a container."
    )
    port: int = Field(
        default=8000,
        ge=0,
        le=65535,
        description="TCP port; the plain PORT variable (Cloud Run) is honoured too.",
        validation_alias=AliasChoices("SERVING_PORT", "PORT"),
    )
    workers: int = Field(
        default=1,
        ge=1,
        description="Server processes on the port (SO_REUSEPORT); each loads its own model and "
        "batcher.",
    )
    log_level: Literal["critical", "error", "warning", "info", "debug", "trace"] = Field(
        default="info", description="Log level of the service and of uvicorn."
    )
    drain_grace_s: float = Field(
        default=3.0,
        ge=0,
        description="On SIGTERM, how long the listener stays open answering 503 + Connection: "
        "close while load balancers drop this instance (pair with preStop, docs/deploy.md).",
    )
    drain_timeout_s: float = Field(
        default=30.0,
        gt=0,
        description="On SIGTERM, the longest wait for queued and in-flight requests to finish.",
    )
    max_header_bytes: int = Field(
        default=16 * 1024,
        ge=1024,
        description="Largest request line + headers in bytes; beyond it 431 and the connection "
        "is closed.",
    )
    header_timeout_s: float = Field(
        default=10.0,
        gt=0,
        description="Longest time from connecting (or starting a request) to its complete "
        "headers; then 408 and close.",
    )
    body_timeout_s: float = Field(
        default=30.0,
        gt=0,
        description="Longest time to receive a request body after its headers; then 408 (if "
        "not answered yet) and close.",
    )
    keep_alive_timeout_s: float = Field(
        default=5.0, gt=0, description="Idle keep-alive connections are closed after this."
    )
    backpressure: bool = Field(
        default=True,
        description="While the queue holds all the work that can be computed within the "
        "default deadline, stop reading connections (requests wait in the kernel, first come "
        "first served) instead of refusing them; false: refuse with 503 at once.",
    )
    max_connections: int = Field(
        default=1000,
        ge=1,
        description="Open connections per worker; a connection beyond it gets 503 + close at "
        "once. Keep below the file-descriptor limit.",
    )
    gc_young_threshold: int = Field(
        default=10_000,
        ge=0,
        description="Young-generation threshold of CPython's cyclic collector, set after "
        "start-up (0 keeps Python's 700).",
    )
    gil_switch_interval_ms: float = Field(
        default=0.5,
        ge=0,
        description="CPython's GIL switch interval (sys.setswitchinterval), set after start-up "
        "(0 keeps Python's 5 ms).",
    )

    # ---------------------------------------------------------------- model
    model_repository: Path = Field(
        default=Path("models"),
        description="Root of the model repository (<root>/<name>/<version>/).",
    )
    model_name: str = Field(default="mnist", description="Model to serve from the repository.")
    model_version: int | None = Field(
        default=None, ge=1, description="Pinned version, served besides the newest model_versions."
    )
    model_versions: int = Field(
        default=1,
        ge=0,
        description="How many of the newest versions are served (0: only the pinned one); "
        "/v1/predict uses the newest.",
    )
    model_poll_interval_s: float = Field(
        default=5.0,
        ge=0,
        description="How often each worker looks for new versions and hot-swaps them in "
        "(0: never).",
    )
    model_variant: Variant = Field(
        default="fp32",
        description="fp32 serves model.onnx; int8 serves model.int8.onnx (faster, slightly "
        "batch-dependent).",
    )
    ort_intra_op_threads: int = Field(
        default=1,
        ge=1,
        description="onnxruntime threads inside one operator; batching, not threads, gives "
        "the parallelism.",
    )
    ort_inter_op_threads: int = Field(
        default=1, ge=1, description="onnxruntime threads across operators (sequential execution)."
    )

    # ---------------------------------------------------------------- batching
    max_batch_size: int = Field(
        default=64,
        ge=1,
        description="Most rows computed in one session.run; a larger request runs alone.",
    )
    max_batch_delay_ms: float = Field(
        default=1.0,
        ge=0,
        description="Longest extra wait for a batch to fill, only while the service is busy; "
        "an idle service computes at once.",
    )
    max_queue_size: int = Field(
        default=1024,
        ge=1,
        description="Most rows waiting in the queue; beyond it requests get 503 + Retry-After.",
    )
    max_concurrent_batches: int = Field(
        default=1,
        ge=1,
        description="Batches computed at the same time (one inference thread each).",
    )
    inline_max_rows: int = Field(
        default=8,
        ge=0,
        description="A request of at most this many rows reaching an idle batcher is computed at "
        "once on the event loop (no thread hop) while such batches take under 0.5 ms; 0: never.",
    )

    # ---------------------------------------------------------------- requests
    max_instances: int = Field(default=256, ge=1, description="Most instances in one request.")
    max_body_bytes: int = Field(
        default=4 * 1024 * 1024,
        ge=1024,
        description="Largest accepted request body in bytes (413 beyond); 4 MiB fits 256 JSON "
        "instances.",
    )
    request_timeout_ms: float = Field(
        default=1000.0,
        gt=0,
        description="Default deadline of a request; the X-Request-Timeout-Ms header overrides "
        "it, up to max_request_timeout_ms.",
    )
    max_request_timeout_ms: float = Field(
        default=30000.0, gt=0, description="Upper bound for the X-Request-Timeout-Ms header."
    )

    # ---------------------------------------------------------------- gRPC (serving/grpc/)
    grpc_port: int = Field(
        default=8001,
        ge=0,
        le=65535,
        description="Open Inference Protocol gRPC port (inference.GRPCInferenceService), on host; "
        "0 turns gRPC off.",
    )
    grpc_max_concurrent_streams: int = Field(
        default=100,
        ge=1,
        description="Calls in progress at once on one gRPC connection (HTTP/2 streams); more wait "
        "for a free stream. Messages are bounded by max_body_bytes.",
    )

    @model_validator(mode="after")
    def _check_grpc_port(self) -> Settings:
        if self.grpc_port and self.grpc_port == self.port:
            raise ValueError(f"grpc_port and port are both {self.port}: give gRPC its own port")
        return self

    # ---------------------------------------------------------------- observability
    service_name: str = Field(
        default="mnist-inference",
        description="service.name of traces; unset: OTEL_SERVICE_NAME, else this default.",
    )
    tracing_enabled: bool | None = Field(
        default=None,
        description="Export OpenTelemetry traces over OTLP; unset: on when "
        "OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT is set. OTEL_SDK_DISABLED=true always wins.",
    )
    otlp_protocol: Literal["grpc", "http/protobuf"] | None = Field(
        default=None,
        description="OTLP transport; unset honours OTEL_EXPORTER_OTLP_PROTOCOL, "
        "else http/protobuf.",
    )
    trace_sample_ratio: float | None = Field(
        default=None,
        ge=0,
        le=1,
        description="Share of requests without a caller's trace decision that are traced (a "
        "caller's traceparent flag is always followed); unset: OTEL_TRACES_SAMPLER(_ARG), else "
        "0.01.",
    )
    metrics_enabled: bool = Field(default=True, description="Serve Prometheus metrics on /metrics.")
    access_log: bool = Field(
        default=False,
        description="Log one line per request (method, route, status, ms, request id, API key "
        "name; never a key) to the serving.access logger.",
    )
    metrics_sample_interval_s: float = Field(
        default=5.0,
        gt=0,
        description="How often each worker publishes its metrics and refreshes its sampled "
        "gauges; a scrape also does it for the worker answering.",
    )
    drift_window: int = Field(
        default=1000,
        ge=10,
        description="Recent images the input-drift (PSI) gauges are computed over.",
    )
    low_confidence_threshold: float = Field(
        default=0.5, ge=0, le=1, description="Predictions below this confidence are counted as low."
    )

    # ---------------------------------------------------------------- feedback and quality
    feedback_key: str | None = Field(
        default=None,
        repr=False,
        description="Key that signs prediction ids; set the same on every replica. Unset: "
        "random per start, shared by its workers.",
    )
    feedback_horizon_s: float = Field(
        default=86400.0, gt=0, description="How long a prediction id accepts feedback."
    )
    feedback_max_ids: int = Field(
        default=1_000_000,
        ge=1000,
        description="Most labelled ids remembered for duplicate detection; past it the oldest "
        "expire early.",
    )
    quality_window: int = Field(
        default=5000, ge=10, description="Last labelled predictions /v1/quality is computed over."
    )
    quality_store: Path | None = Field(
        default=None,
        description="SQLite file the workers share for feedback and drift windows; unset: a "
        "temporary file per start.",
    )

    @model_validator(mode="after")
    def _check_consistency(self) -> Settings:
        if self.max_queue_size < self.max_instances:
            raise ValueError(
                f"max_queue_size ({self.max_queue_size}) must be >= max_instances "
                f"({self.max_instances}): a full-size request could never be queued"
            )
        if self.model_versions == 0 and self.model_version is None:
            raise ValueError("model_versions 0 serves only the pinned version: set model_version")
        if self.max_request_timeout_ms < self.request_timeout_ms:
            raise ValueError("max_request_timeout_ms must be >= request_timeout_ms")
        return self

    # ---------------------------------------------------------------- rollout (docs/rollout.md)
    rollout_mode: Literal["replace", "shadow", "canary"] = Field(
        default="replace",
        description="What a newly published version does when its model has no rollout.toml: "
        "replace the served one at once, or become a shadow or canary candidate beside it.",
    )
    rollout_canary_share: float = Field(
        default=0.05,
        gt=0,
        le=1,
        description="Share of requests a canary candidate answers at first (rollout.toml: "
        "canary_share).",
    )
    rollout_shadow_share: float = Field(
        default=1.0,
        gt=0,
        le=1,
        description="Share of batches a shadow candidate also computes; clients get stable's "
        "answer (rollout.toml: shadow_share).",
    )
    rollout_min_samples: int = Field(
        default=1000,
        ge=30,
        description="Fewest predictions compared between candidate and stable before a promotion, "
        "per canary step (rollout.toml: min_samples).",
    )
    rollout_evaluation_interval_s: float = Field(
        default=5.0,
        gt=0,
        description="How often one worker judges the rollout's evidence, merged from all "
        "workers (rollout.toml: evaluation_interval_s).",
    )
    rollout_store: Path | None = Field(
        default=None,
        description="SQLite file the workers share for rollout state and evidence; on a "
        "persistent volume a restart resumes a rollout. Unset: a temporary file per start.",
    )
    rollout_resume_window_s: float = Field(
        default=300.0,
        gt=0,
        description="At start-up, a rollout whose state is older than this reverts to stable "
        "and starts over instead of resuming.",
    )
    rollout_boot: str | None = Field(
        default=None,
        description="Id of this start of the service, shared by its workers so that one of them "
        "decides what a restart does; set by the CLI (unset: one per process).",
    )

    # ---------------------------------------------------------------- access and TLS (issue 25)
    # One block, kept together until the request-path rewrite lands: serving/access/ reads these.
    keys_file: Path | None = Field(
        default=None,
        description="TOML file of API keys ([[keys]]: name, key or sha256, scopes, rate_per_s; "
        "docs/security.md), re-read when it changes. Unset: the admin API is off (403) and the "
        "rest is open; with it, SERVING_REQUIRE_KEYS=true closes infer, feedback and read too.",
    )
    require_keys: bool = Field(
        default=False,
        description="Make infer, feedback and read need a key too (health and the page stay "
        "open); needs keys_file.",
    )
    keys_reload_interval_s: float = Field(
        default=2.0,
        gt=0,
        description="How often each worker re-reads keys_file and swaps a changed, valid one in "
        "(an invalid file is refused; the keys in force stay).",
    )
    ssl_certfile: Path | None = Field(
        default=None,
        description="PEM certificate (chain) to serve HTTPS; unset: plain HTTP, TLS ends at the "
        "load balancer (docs/security.md).",
    )
    ssl_keyfile: Path | None = Field(
        default=None, description="PEM private key (unencrypted) of ssl_certfile."
    )

    @model_validator(mode="after")
    def _check_access(self) -> Settings:
        if self.require_keys and self.keys_file is None:
            raise ValueError("require_keys needs keys_file: without keys no request could pass")
        if (self.ssl_certfile is None) != (self.ssl_keyfile is None):
            raise ValueError("set ssl_certfile and ssl_keyfile together")
        for name, path in (("ssl_certfile", self.ssl_certfile), ("ssl_keyfile", self.ssl_keyfile)):
            # Checked here, once, rather than as a traceback from every worker's uvicorn.
            if path is not None and not path.is_file():
                raise ValueError(f"{name} {path} is not a file")
        return self
