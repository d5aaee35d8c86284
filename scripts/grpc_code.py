"""Generate serving/grpc/generated/ from serving/grpc/proto/grpc_service.proto (``make grpc-code``).

The generated modules are committed, not built at install time: the serving image installs
only the ``serve`` extra (grpcio, no grpcio-tools and its bundled protoc), and mypy --strict
reads the committed ``.pyi`` stubs (mypy-protobuf). ``--check`` regenerates into a temporary
directory and exits 1 when the committed files differ (tests/serving/grpc/test_proto.py runs it),
so the committed code cannot drift from the proto or from the pinned generator versions.

One change is made to protoc's output: the file is added to a private descriptor pool, not the
process-wide default one. Clients ship their own ``inference.*`` messages (tritonclient's
``service_pb2`` registers them in the default pool); two definitions of the same names in one
pool fail at import, so without this a process could not hold both (the test suite does).
Names and field numbers are unchanged: only where the descriptors live in memory differs.

    .venv/bin/python scripts/grpc_code.py [--check]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from grpc_tools import protoc

REPO = Path(__file__).resolve().parents[1]
PROTO_DIR = REPO / "serving" / "grpc" / "proto"
OUT_DIR = REPO / "serving" / "grpc" / "generated"
PROTO = "grpc_service.proto"
FILES = ("grpc_service_pb2.py", "grpc_service_pb2.pyi")
_DEFAULT_POOL = "DESCRIPTOR = _descriptor_pool.Default().AddSerializedFile("
_PRIVATE_POOL = (
    "# serving: a private pool, not the default one (scripts/grpc_code.py says why).\n"
    "POOL = _descriptor_pool.DescriptorPool()\n"
    "DESCRIPTOR = POOL.AddSerializedFile("
)


def generate(out_dir: Path) -> None:
    """Write the generated modules for ``PROTO`` into ``out_dir``."""
    plugin = Path(sys.executable).with_name("protoc-gen-mypy")
    with tempfile.TemporaryDirectory() as raw:
        status = protoc.main(
            [
                "grpc_tools.protoc",
                f"--proto_path={PROTO_DIR}",
                f"--python_out={raw}",
                f"--plugin=protoc-gen-mypy={plugin}",
                f"--mypy_out={raw}",
                PROTO,
            ]
        )
        if status != 0:
            raise SystemExit(f"protoc failed on {PROTO_DIR / PROTO} (exit {status})")
        module = (Path(raw) / FILES[0]).read_text()
        if module.count(_DEFAULT_POOL) != 1:
            raise SystemExit("protoc's output changed shape: the default-pool line is not there")
        (out_dir / FILES[0]).write_text(module.replace(_DEFAULT_POOL, _PRIVATE_POOL))
        (out_dir / FILES[1]).write_text((Path(raw) / FILES[1]).read_text())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--check", action="store_true", help="exit 1 if the committed code is stale"
    )
    args = parser.parse_args(argv)
    if not args.check:
        generate(OUT_DIR)
        print(f"generated {', '.join(FILES)} in {OUT_DIR.relative_to(REPO)}")
        return 0
    with tempfile.TemporaryDirectory() as fresh:
        generate(Path(fresh))
        stale = [
            name
            for name in FILES
            if not (OUT_DIR / name).is_file()
            or (OUT_DIR / name).read_text() != (Path(fresh) / name).read_text()
        ]
    if stale:
        print(
            f"serving/grpc/generated: {', '.join(stale)} differ from {PROTO}; run: make grpc-code",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
