"""Training curves of a retraining run: `curves.csv` (one row per epoch) and `curves.png`.

Both are rewritten atomically after every epoch, so a killed run leaves readable curves. The PNG
is drawn with matplotlib's Agg canvas directly (no global backend switch, no display needed).
"""

from __future__ import annotations

import csv
import io as _io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dnatool.utils import io

CSV_FILE, PNG_FILE = "curves.csv", "curves.png"
COLUMNS = ("epoch", "lr", "train_loss", "val_loss", "top1", "top5", "ema_top1", "seconds")


def write_curves(run_dir: Path, rows: Sequence[dict[str, Any]]) -> list[str]:
    """Write both files; returns their names relative to `run_dir`."""
    buffer = _io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows([{k: _fmt(row.get(k)) for k in COLUMNS} for row in rows])
    io.write_text(run_dir / CSV_FILE, buffer.getvalue())
    io.write_bytes(run_dir / PNG_FILE, _plot(rows))
    return [CSV_FILE, PNG_FILE]


def _fmt(value: Any) -> Any:
    if isinstance(value, float):
        return f"{value:.6g}"
    return "" if value is None else value


def _plot(rows: Sequence[dict[str, Any]]) -> bytes:
    from dnatool.utils.plots import new_figure, png_bytes

    epochs = [row["epoch"] for row in rows]
    figure = new_figure(figsize=(9, 3.5), dpi=100)
    loss_ax, acc_ax = figure.subplots(1, 2)
    for key, label in (("train_loss", "train"), ("val_loss", "val")):
        loss_ax.plot(epochs, [row[key] for row in rows], marker=".", label=label)
    for key, label in (("top1", "top-1"), ("top5", "top-5"), ("ema_top1", "EMA top-1")):
        values = [row.get(key) for row in rows]
        if any(v is not None for v in values):
            acc_ax.plot(epochs, values, marker=".", label=label)
    loss_ax.set(xlabel="epoch", ylabel="loss", title="loss")
    acc_ax.set(xlabel="epoch", ylabel="accuracy (%)", title="validation accuracy")
    for axis in (loss_ax, acc_ax):
        axis.grid(alpha=0.3)
        axis.legend()
    return png_bytes(figure)
