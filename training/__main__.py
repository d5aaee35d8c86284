"""``python -m training``: train an MNIST model, export it to ONNX (+ int8), publish a version."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from training import quiet
from training.cli import DefaultsFormatter
from training.config import (
    ARCHS,
    DEFAULT_LEARNING_RATE,
    DEFAULT_SCHEDULE,
    MOMENTUM,
    OPTIMIZERS,
    SCHEDULES,
    TrainConfig,
)
from training.data import MNIST_DIR_ENV, DataError, load


def parser() -> argparse.ArgumentParser:
    defaults = TrainConfig()
    per_optimizer = ", ".join(f"{name} {lr:g}" for name, lr in DEFAULT_LEARNING_RATE.items())
    per_arch = ", ".join(f"{arch} {schedule}" for arch, schedule in DEFAULT_SCHEDULE.items())
    parser = argparse.ArgumentParser(
        prog="python -m training",
        description="Train an MNIST model (the reference MLP or a small CNN), export it to ONNX "
        "(fp32 + dynamic int8), check parity with Keras and publish it as the next version of a "
        "model repository.",
        formatter_class=DefaultsFormatter,
    )
    add = parser.add_argument
    add(
        "--data-dir",
        type=Path,
        default=None,
        help=f"directory with the four MNIST IDX .gz files (default: ${MNIST_DIR_ENV} if set, "
        "else download the usual Keras way)",
    )
    add("--output", type=Path, default=Path("models"), help="model repository root")
    add("--name", default="mnist", help="model name in the repository")
    add("--arch", choices=ARCHS, default=defaults.arch, help="architecture")
    add(
        "--optimizer",
        choices=OPTIMIZERS,
        default=defaults.optimizer,
        help=f"optimizer; momentum is SGD with momentum {MOMENTUM}",
    )
    add(
        "--learning-rate",
        type=float,
        default=None,
        help=f"learning rate (default: per optimizer, {per_optimizer})",
    )
    add(
        "--lr-schedule",
        choices=SCHEDULES,
        default=None,
        help="cosine: the learning rate falls from its starting value to 0 along a half cosine "
        "over the run's steps; constant: it stays at its starting value (default: per "
        f"architecture, {per_arch})",
    )
    add(
        "--batch-size",
        type=int,
        default=defaults.batch_size,
        help="images per gradient step; the size of the training set (or more) is full-batch "
        "gradient descent",
    )
    add("--epochs", type=int, default=defaults.epochs, help="passes over the training images")
    add("--hidden-units", type=int, default=defaults.hidden_units, help="MLP hidden layer width")
    add("--dropout", type=float, default=defaults.dropout, help="MLP dropout rate")
    add(
        "--validation-split",
        type=float,
        default=defaults.validation_split,
        help="share of the training images held out (the last ones) for the per-epoch "
        "validation curves; 0 disables",
    )
    add("--seed", type=int, default=defaults.seed, help="random seed (weights, shuffling)")
    add(
        "--parity-tolerance",
        type=float,
        default=defaults.parity_tolerance,
        help="maximum |p_onnx - p_keras| over the test set; the export fails above it",
    )
    add(
        "--train-limit",
        type=int,
        default=None,
        help="use only the first N training images (default: all)",
    )
    add(
        "--test-limit",
        type=int,
        default=None,
        help="use only the first N test images (default: all)",
    )
    add(
        "--verbose",
        action="store_true",
        help="show TensorFlow's, tf2onnx's and onnxruntime's own log lines",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    quiet.configure(args.verbose)
    try:
        config = TrainConfig(
            arch=args.arch,
            optimizer=args.optimizer,
            learning_rate=args.learning_rate,
            lr_schedule=args.lr_schedule,
            batch_size=args.batch_size,
            epochs=args.epochs,
            hidden_units=args.hidden_units,
            dropout=args.dropout,
            validation_split=args.validation_split,
            seed=args.seed,
            parity_tolerance=args.parity_tolerance,
        )
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        data = load(args.data_dir).subset(args.train_limit, args.test_limit)
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    quiet.import_tensorflow(args.verbose)
    from training.pipeline import ParityError, run
    from training.summary import summary

    try:
        version_dir = run(data, args.output, args.name, config)
    except ParityError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    print(summary(version_dir))
    return 0


if __name__ == "__main__":
    sys.exit(main())
