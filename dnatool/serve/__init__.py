"""Serving: the Open Inference Protocol (KServe v2) over onnxruntime, with dynamic batching."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path


def resolve_onnx(model_ref: str, report: Callable[..., None] | None = None) -> tuple[Path, str]:
    """An .onnx file as is, or a model run / ARCH exported (parity-checked) to a temp folder.

    Returns the ONNX path and the default model name: the model file's stem (`model` for a model
    run's model.pt, the arch file's stem for an ARCH file, `model` for an inline arch_def).
    """
    from dnatool.errors import BadInput

    path = Path(model_ref)
    if path.suffix == ".onnx":
        if not path.is_file():
            raise BadInput(f"ONNX file not found: {path}")
        return path, path.stem
    from dnatool.export.run import export_model
    from dnatool.nn.model_run import is_model_run

    name = (
        "model"
        if path.is_dir() and is_model_run(path)
        else path.stem
        if path.is_file()
        else "model"
    )
    out = Path(tempfile.mkdtemp(prefix="dnatool-serve-")) / f"{name}.onnx"
    export_model(model_ref, out, report=report)
    return out, name
