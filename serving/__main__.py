"""``python -m serving``: start the service. Flags override SERVING_* environment variables."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import typing
from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, ValidationError

from serving.access.keys import KeysFileError, load_keys
from serving.model import ModelLoadError, locate
from serving.settings import Settings


def _flag(parser: argparse.ArgumentParser, flag: str, name: str, **kwargs: Any) -> None:
    """A flag for the setting ``name``; its help is the Field description, so each setting is
    documented once. The flag's own default stays None: an absent flag leaves the environment's
    value in force."""
    field = Settings.model_fields[name]
    alias = field.validation_alias
    variables = alias.choices if isinstance(alias, AliasChoices) else [f"SERVING_{name.upper()}"]
    default = "unset" if field.default is None else field.default
    about = f"{field.description} [env {' or '.join(map(str, variables))}; default: {default}]"
    if typing.get_origin(field.annotation) is Literal:
        kwargs["choices"] = typing.get_args(field.annotation)
    parser.add_argument(flag, dest=name, help=about.replace("%", "%%"), **kwargs)


def parse_args(argv: list[str] | None) -> dict[str, Any]:
    """The settings given as flags, by setting name."""
    parser = argparse.ArgumentParser(
        prog="python -m serving",
        description="MNIST inference service (Litestar + onnxruntime, adaptive micro-batching). "
        "Every setting is also an environment variable SERVING_<NAME>; flags win. All settings: "
        "docs/configuration.md.",
    )
    _flag(parser, "--host", "host")
    _flag(parser, "--port", "port", type=int)
    _flag(parser, "--grpc-port", "grpc_port", type=int)
    _flag(parser, "--model-repository", "model_repository", type=Path)
    _flag(parser, "--model-name", "model_name")
    _flag(parser, "--model-version", "model_version", type=int)
    _flag(parser, "--variant", "model_variant")
    _flag(parser, "--workers", "workers", type=int)
    _flag(parser, "--log-level", "log_level")
    _flag(parser, "--keys-file", "keys_file", type=Path)
    _flag(parser, "--ssl-certfile", "ssl_certfile", type=Path)
    _flag(parser, "--ssl-keyfile", "ssl_keyfile", type=Path)
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
    if settings.keys_file is not None:
        try:  # the same check every worker makes; here it is one line, not a traceback each
            load_keys(settings.keys_file)
        except KeysFileError as exc:
            print(f"serving: cannot use the keys file: {exc}", file=sys.stderr)
            return 2
    logging.basicConfig(
        level=settings.log_level.upper() if settings.log_level != "trace" else "DEBUG",
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    from serving.feedback.loop import shared_by_workers
    from serving.observability import prepare_multiprocess_dir  # late: --help stays fast
    from serving.transport.server import run

    # Every worker must verify the others' prediction ids and write the same quality store.
    settings = shared_by_workers(settings)

    # Several workers share one /metrics view through prometheus_client's multiprocess mode,
    # which needs an empty directory named in the environment before any worker starts.
    if settings.workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        prepare_multiprocess_dir(Path(tempfile.mkdtemp(prefix="serving-metrics-")))
    else:
        prepare_multiprocess_dir()
    return run(settings)


if __name__ == "__main__":
    sys.exit(main())
