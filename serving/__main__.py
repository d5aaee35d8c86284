"""``python -m serving``: start the service. Flags override SERVING_* environment variables."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from serving.model import ModelLoadError, locate
from serving.settings import Settings


def parse_args(argv: list[str] | None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(
        prog="python -m serving",
        description="MNIST inference service (Litestar + onnxruntime, adaptive micro-batching). "
        "Every setting is also an environment variable SERVING_<NAME>; flags win.",
    )
    parser.add_argument("--host", help="interface to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="TCP port (default 8000; PORT is honoured)")
    parser.add_argument("--model-repository", type=Path, help="model repository root (models)")
    parser.add_argument("--model-name", help="model name in the repository (mnist)")
    parser.add_argument("--model-version", type=int, help="pinned version (default: latest)")
    parser.add_argument("--variant", dest="model_variant", choices=["fp32", "int8"])
    parser.add_argument("--workers", type=int, help="server processes (default 1)")
    parser.add_argument(
        "--log-level", choices=["critical", "error", "warning", "info", "debug", "trace"]
    )
    return {k: v for k, v in vars(parser.parse_args(argv)).items() if v is not None}


def main(argv: list[str] | None = None) -> int:
    overrides = parse_args(argv)
    try:
        settings = Settings(**overrides)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        print(f"serving: invalid settings: {problems}", file=sys.stderr)
        return 2
    try:
        # Pre-flight: a missing or corrupt model is one clear line, before any server starts.
        locate(settings)
    except ModelLoadError as exc:
        print(f"serving: cannot serve the model: {exc}", file=sys.stderr)
        return 1
    logging.basicConfig(
        level=settings.log_level.upper() if settings.log_level != "trace" else "DEBUG",
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    from serving.observability import prepare_multiprocess_dir  # late: --help stays fast
    from serving.server import run

    # Several workers share one /metrics view through prometheus_client's multiprocess mode,
    # which needs an empty directory named in the environment before any worker starts.
    if settings.workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        prepare_multiprocess_dir(Path(tempfile.mkdtemp(prefix="serving-metrics-")))
    else:
        prepare_multiprocess_dir()
    run(settings)
    return 0


if __name__ == "__main__":
    sys.exit(main())
