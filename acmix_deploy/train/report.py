"""Training records: the per-epoch metrics CSV and the loss / accuracy curves PNG (both atomic)."""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path
from typing import Any

from acmix_deploy.fileio import atomic_path, write_bytes_atomic

COLUMNS = ("epoch", "lr", "train_loss", "train_acc", "val_loss", "val_top1", "val_top5", "time_s")


def write_metrics_csv(rows: list[dict[str, Any]], path: str | os.PathLike[str]) -> Path:
    """One row per finished epoch; accuracies in percent, lr at the epoch's last step."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _fmt(row[k]) for k in COLUMNS})
    return write_bytes_atomic(path, buf.getvalue().encode())


def _fmt(value: Any) -> Any:
    return f"{value:.6g}" if isinstance(value, float) else value


def read_metrics_csv(path: str | os.PathLike[str]) -> list[dict[str, float]]:
    with open(path, newline="") as fh:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(fh)]


def plot_curves(rows: list[dict[str, Any]], path: str | os.PathLike[str], title: str = "") -> Path:
    """Two panels: train / val loss, and train accuracy / val top-1 / val top-5, by epoch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    epochs = [r["epoch"] for r in rows]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    ax_loss.plot(epochs, [r["train_loss"] for r in rows], marker=".", label="train")
    ax_loss.plot(epochs, [r["val_loss"] for r in rows], marker=".", label="val")
    ax_loss.set(xlabel="epoch", ylabel="loss (val: no label smoothing)", title="loss", yscale="log")
    ax_acc.plot(epochs, [r["train_acc"] for r in rows], marker=".", label="train (augmented)")
    ax_acc.plot(epochs, [r["val_top1"] for r in rows], marker=".", label="val top-1")
    ax_acc.plot(epochs, [r["val_top5"] for r in rows], marker=".", label="val top-5", alpha=0.6)
    ax_acc.set(xlabel="epoch", ylabel="accuracy (%)", title="accuracy")
    for ax in (ax_loss, ax_acc):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return Path(path)
