"""`dnatool export` as a library call: ONNX (always), then TensorRT and Triton where asked.

Shared by the CLI, `dnatool serve` (which exports a model run or ARCH on the fly) and the demo.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from dnatool.errors import BadInput
from dnatool.utils import io


def export_model(
    model_ref: Any,
    onnx_path: str | Path,
    *,
    trt_path: str | Path | None = None,
    precision: str = "fp32",
    triton_dir: str | Path | None = None,
    triton_name: str | None = None,
    tolerance: float = 1e-4,
    max_batch: int = 32,
    threads: int = 1,
    lut: str | Path | None = None,
    report: Callable[..., None] | None = None,
) -> dict[str, Any]:
    """Export MODEL (a model run or an ARCH, random init then) and return the export.json dict;
    with `lut`, the table's prediction beside the measured latency (`export.predicted`)."""
    from dnatool.export.onnx import REPORT_FILE, export_onnx
    from dnatool.nn.model_run import load_model

    onnx_path = Path(onnx_path)
    if onnx_path.suffix != ".onnx":
        raise BadInput(f"--onnx {onnx_path} must end in .onnx")
    if not tolerance > 0:
        raise BadInput(f"--tolerance must be positive, got {tolerance}")
    if trt_path is not None:
        from dnatool.export.tensorrt import PRECISIONS, require_tensorrt

        if precision not in PRECISIONS:
            raise BadInput(f"--precision {precision!r} is not one of {', '.join(PRECISIONS)}")
        require_tensorrt()  # fail in one line before minutes of work
    if lut is not None:
        from dnatool.profile.lut import load_lut

        load_lut(lut)  # a bad table is refused before minutes of work
    loaded = load_model(model_ref)
    result = export_onnx(loaded, onnx_path, tolerance=tolerance, report=report, threads=threads)
    if lut is not None:
        from dnatool.export.predicted import table_prediction

        if report:
            report("log", message=f"export: measuring beside the prediction of {lut}")
        result["lut"] = table_prediction(loaded, onnx_path.read_bytes(), lut)
    if trt_path is not None:
        from dnatool.export.tensorrt import export_tensorrt

        result["tensorrt"] = export_tensorrt(loaded, onnx_path, trt_path, precision, max_batch)
    if triton_dir is not None:
        from dnatool.export.triton import write_repository

        result["triton"] = write_repository(triton_dir, onnx_path, triton_name, trt_path, max_batch)
    io.write_json(
        onnx_path.parent / REPORT_FILE, {k: v for k, v in result.items() if k != "report"}
    )
    return result
