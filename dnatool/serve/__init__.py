"""Serving: the Open Inference Protocol (KServe v2) over onnxruntime, with dynamic batching."""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def resolved_onnx(
    model_ref: str, report: Callable[..., None] | None = None
) -> Iterator[tuple[Path, str]]:
    """An .onnx file as is, or a model run / ARCH exported (parity-checked) to a temp folder
    that is removed when the block exits (a server's export does not outlive the server).

    Yields the ONNX path and the default model name: the model file's stem (`model` for a model
    run's model.pt, the arch file's stem for an ARCH file, `model` for an inline arch_def).
    """
    from dnatool.errors import BadInput

    path = Path(model_ref)
    if path.suffix == ".onnx":
        if not path.is_file():
            raise BadInput(f"ONNX file not found: {path}")
        yield path, path.stem
        return
    from dnatool.export.run import export_model
    from dnatool.nn.model_run import is_model_run

    name = (
        "model"
        if path.is_dir() and is_model_run(path)
        else path.stem
        if path.is_file()
        else "model"
    )
    with tempfile.TemporaryDirectory(prefix="dnatool-serve-") as tmp:
        out = Path(tmp) / f"{name}.onnx"
        export_model(model_ref, out, report=report)
        yield out, name
