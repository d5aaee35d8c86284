"""PNG plots of training histories: one run's learning curves, and several runs compared.

matplotlib's Agg backend is selected explicitly, so plotting works on a machine with no display
(CI, containers) and never opens a window.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from model_repository.metadata import EpochRecord


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def learning_curves(history: Sequence[EpochRecord], path: Path, title: str) -> None:
    """Loss and accuracy per epoch, training and validation, side by side."""
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator

    epochs = [r.epoch for r in history]
    fig, (loss_ax, acc_ax) = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    loss_ax.plot(epochs, [r.loss for r in history], "o-", label="training")
    acc_ax.plot(epochs, [r.accuracy for r in history], "o-", label="training")
    if any(r.val_loss is not None for r in history):
        loss_ax.plot(epochs, [r.val_loss for r in history], "s--", label="validation")
        acc_ax.plot(epochs, [r.val_accuracy for r in history], "s--", label="validation")
    loss_ax.set(xlabel="epoch", ylabel="cross-entropy loss", yscale="log", title="loss")
    acc_ax.set(xlabel="epoch", ylabel="accuracy", title="accuracy")
    for ax in (loss_ax, acc_ax):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def compare_runs(runs: Sequence[tuple[str, Sequence[EpochRecord]]], path: Path, title: str) -> None:
    """Validation loss of several runs against epoch and against cumulative wall-clock seconds."""
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator

    fig, (by_epoch, by_time) = plt.subplots(1, 2, figsize=(12, 4.5), constrained_layout=True)
    for label, history in runs:
        losses = [r.val_loss for r in history]
        elapsed = []
        total = 0.0
        for record in history:
            total += record.seconds
            elapsed.append(total)
        by_epoch.plot([r.epoch for r in history], losses, "o-", markersize=3, label=label)
        by_time.plot(elapsed, losses, "o-", markersize=3, label=label)
    by_epoch.xaxis.set_major_locator(MaxNLocator(integer=True))
    by_epoch.set(xlabel="epoch", ylabel="validation loss", yscale="log", title="per epoch")
    by_time.set(
        xlabel="wall-clock seconds (cumulative)",
        ylabel="validation loss",
        yscale="log",
        title="per second of training",
    )
    for ax in (by_epoch, by_time):
        ax.grid(alpha=0.3, which="both")
    by_time.legend(fontsize="small")
    fig.suptitle(title)
    fig.savefig(path, dpi=100)
    plt.close(fig)
