"""``python -m training``: train the MNIST MLP, export it to ONNX (+ int8), publish a version."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from training.data import MNIST_DIR_ENV, DataError, load


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from training.pipeline import TrainConfig

    defaults = TrainConfig()
    parser = argparse.ArgumentParser(
        prog="python -m training",
        description="Train the reference MNIST MLP, export it to ONNX (fp32 + dynamic int8), check "
        "parity with Keras and publish it as the next version of a model repository.",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help=f"directory with the four MNIST IDX .gz files (default: ${MNIST_DIR_ENV} if set, "
        "else download the usual Keras way)",
    )
    parser.add_argument("--output", type=Path, default=Path("models"), help="model repository root")
    parser.add_argument("--name", default="mnist", help="model name in the repository")
    parser.add_argument("--epochs", type=int, default=defaults.epochs)
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--learning-rate", type=float, default=defaults.learning_rate)
    parser.add_argument("--hidden-units", type=int, default=defaults.hidden_units)
    parser.add_argument("--dropout", type=float, default=defaults.dropout)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument(
        "--parity-tolerance",
        type=float,
        default=defaults.parity_tolerance,
        help="maximum |p_onnx - p_keras| over the test set; the export fails above it",
    )
    parser.add_argument(
        "--train-limit", type=int, default=None, help="use only the first N training images"
    )
    parser.add_argument(
        "--test-limit", type=int, default=None, help="use only the first N test images"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        data = load(args.data_dir).subset(args.train_limit, args.test_limit)
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    from training.pipeline import ParityError, TrainConfig, run  # imports TensorFlow

    config = TrainConfig(
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        hidden_units=args.hidden_units,
        dropout=args.dropout,
        seed=args.seed,
        parity_tolerance=args.parity_tolerance,
    )
    try:
        version_dir = run(data, args.output, args.name, config)
    except ParityError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    print(f"published {version_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
