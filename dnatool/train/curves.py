"""Per-block loss curves as CSV and PNG, rebuilt from the block checkpoints (any rank wrote them)."""

from __future__ import annotations

import csv
import io as _io
from pathlib import Path

from dnatool.train.setup import block_checkpoint
from dnatool.utils import io


def write_curves(run: Path, num_blocks: int) -> None:
    rows = []
    for k in range(num_blocks):
        path = block_checkpoint(run, k)
        if path.is_file():
            rows += [[k, *row] for row in io.load_checkpoint(path, "supernet_block")["history"]]
    buffer = _io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["block", "epoch", "cell", "loss", "lr"])
    writer.writerows(rows)
    io.write_text(Path(run) / "curves" / "loss.csv", buffer.getvalue())
    _plot(rows, num_blocks, Path(run) / "curves" / "loss.png")


def _plot(rows: list[list], num_blocks: int, path: Path) -> None:
    from dnatool.utils.plots import new_figure, save_png

    fig = new_figure(figsize=(3 * num_blocks, 2.8))
    axes = fig.subplots(1, num_blocks, squeeze=False)
    for k, ax in enumerate(axes[0]):
        cells = sorted({r[2] for r in rows if r[0] == k})
        for c in cells:
            points = sorted((r[1] + 1, r[3]) for r in rows if r[0] == k and r[2] == c)
            ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=f"cell {c}")
        ax.set_title(f"block {k}")
        ax.set_xlabel("epoch")
        ax.set_ylabel("MSE to teacher" if k == 0 else "")
        if cells:
            ax.legend(fontsize=7)
    save_png(fig, path, dpi=100)
