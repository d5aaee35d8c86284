"""``python -m benchmarks.models``: accuracy against inference cost, one row per model variant.

For each named model of a repository (by default the MLP ``mnist`` and the CNN ``mnist-cnn``),
fp32 and int8: the accuracy on the genuine MNIST test set and the in-process ``session.run``
cost per sample at batch 1, 16 and 128 (``benchmarks.floor``, the service's session options). Writes
``benchmarks/results/<date>-models.md``. Service throughput per model is what ``make bench``
measures for the model it is pointed at.

``--conv-int8`` adds, for models with convolutions, the variant the training stage does not
ship: dynamic quantization of the Conv weights too (``ConvInteger``), to show why.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import sys
import tempfile
from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnx

from benchmarks import floor
from loadtest.data import load_digits, mnist_dir
from model_repository.layout import ModelRepositoryError, resolve
from model_repository.metadata import load_metadata

BATCHES = (1, 16, 128)
TEST_DIGITS = 10_000
U8 = npt.NDArray[np.uint8]


def accuracy(model: Path, images: U8, labels: U8) -> float:
    """Share of ``images`` (flat uint8) the model labels correctly, run in batches of 1000."""
    sess = floor.session(model)
    name = sess.get_inputs()[0].name
    pixels = images.astype(np.float32) / np.float32(255.0)
    predicted = np.concatenate(
        [
            sess.run(None, {name: pixels[i : i + 1000]})[0].argmax(axis=1)
            for i in range(0, len(pixels), 1000)
        ]
    )
    return float((predicted == labels).mean())


def conv_int8(fp32: Path, directory: Path) -> Path | None:
    """The fp32 model with Conv quantized too (ConvInteger), or None if it has no Conv."""
    if not any(node.op_type == "Conv" for node in onnx.load(str(fp32)).graph.node):
        return None
    from onnxruntime.quantization import QuantType, quantize_dynamic

    path = directory / "model.int8-conv.onnx"
    quantize_dynamic(
        str(fp32), str(path), weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul", "Conv"]
    )
    return path


def rows(root: Path, names: list[str], seconds: float, with_conv_int8: bool = False) -> list[str]:
    images, labels = load_digits(mnist_dir(), TEST_DIGITS)
    lines = [
        "| model | arch | variant | file size | test accuracy | µs/sample at batch 1 "
        "| at batch 16 | at batch 128 | samples/s at batch 128 (one thread) |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    with tempfile.TemporaryDirectory() as scratch:
        for name in names:
            version = resolve(root, name)
            arch = load_metadata(version.metadata_file).training.get("arch", "mlp")
            variants = [("fp32", version.model_file("fp32")), ("int8", version.model_file("int8"))]
            extra = conv_int8(version.model_file("fp32"), Path(scratch)) if with_conv_int8 else None
            if extra is not None:
                variants.append(("int8, Conv too (not shipped)", extra))
            for variant, path in variants:
                points = {
                    p.batch: p for p in floor.measure(variant, path, images, BATCHES, seconds)
                }
                per_sample = points[128].per_sample_us
                lines.append(
                    f"| {name} v{version.version} | {arch} | {variant} "
                    f"| {path.stat().st_size / 1e6:.2f} MB "
                    f"| {accuracy(path, images, labels) * 100:.2f} % "
                    f"| {points[1].per_sample_us:.1f} | {points[16].per_sample_us:.2f} "
                    f"| {per_sample:.2f} "
                    f"| {1e6 / per_sample:,.0f} |"
                )
                print(lines[-1], flush=True)
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.models",
        description="Test accuracy and session.run cost per sample of each model variant.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--models", type=Path, default=Path("models"), help="model repository")
    parser.add_argument(
        "--names", nargs="+", default=["mnist", "mnist-cnn"], help="model names to compare"
    )
    parser.add_argument(
        "--seconds", type=float, default=3.0, help="measuring time per variant and batch size"
    )
    parser.add_argument(
        "--output", type=Path, default=Path("benchmarks/results"), help="results directory"
    )
    parser.add_argument(
        "--conv-int8",
        action="store_true",
        help="also measure models with Conv quantized too (ConvInteger; not what training ships)",
    )
    args = parser.parse_args(argv)
    try:
        table = rows(args.models, args.names, args.seconds, args.conv_int8)
    except ModelRepositoryError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    today = dt.date.today().isoformat()
    load = os.getloadavg()[0]
    text = "\n".join(
        [
            f"# Models: accuracy against inference cost ({today})",
            "",
            f"- Command: `python -m benchmarks.models --models {args.models} --names "
            f"{' '.join(args.names)}{' --conv-int8' if args.conv_int8 else ''}`; "
            f"{args.seconds:g} s per point (median of the runs in that time).",
            f"- Machine: {os.cpu_count()} cores, {platform.machine()}, Python "
            f"{platform.python_version()}; load average {load:.1f} when it finished (other "
            "processes share the cores: compare the rows with each other, not with other runs).",
            "- `session.run` in-process, one intra-op thread, no spinning (the service's "
            f"options); test accuracy over the genuine MNIST test set ({TEST_DIGITS:,} "
            "images). int8 = dynamic quantization of the MatMul weights (QInt8); the CNN's "
            "convolutions stay fp32 (see docs/training.md).",
            "",
            *table,
            "",
        ]
    )
    args.output.mkdir(parents=True, exist_ok=True)
    path = args.output / f"{today}-models.md"
    path.write_text(text)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
