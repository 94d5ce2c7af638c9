"""The one way dnatool draws a PNG: a matplotlib Figure on the Agg canvas (no pyplot state, no
global backend switch, no display), rendered to bytes and written atomically."""

from __future__ import annotations

import io as _io
import os
from pathlib import Path
from typing import Any

from dnatool.utils import io


def new_figure(**kwargs: Any) -> Any:
    """A matplotlib Figure attached to an Agg canvas (`figsize=...` and other Figure options)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(**kwargs)
    FigureCanvasAgg(figure)
    return figure


def png_bytes(figure: Any, dpi: float | None = None) -> bytes:
    """The figure as PNG bytes, laid out tightly."""
    figure.tight_layout()
    buffer = _io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def save_png(figure: Any, path: str | os.PathLike, dpi: float | None = None) -> Path:
    """Atomic write: a kill leaves the previous complete PNG or the new one."""
    return io.write_bytes(path, png_bytes(figure, dpi))
