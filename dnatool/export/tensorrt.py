"""TensorRT engines (plans) through the TensorRT Python API, strongly typed.

TensorRT 10+ takes precision from the network itself (strongly typed networks): fp32 builds the
exported ONNX as is; fp16 builds `runtime.onnx.to_onnx(..., "fp16")` (the half-precision model
between fp32 casts, as the trt latency backend measures it); int8 builds a Q/DQ ONNX calibrated on
real images (onnxruntime's static quantisation, symmetric, per channel: the form TensorRT
consumes). Engines are built and run by `runtime.tensorrt` (one builder, one timing cache file).

TensorRT and a CUDA GPU are optional: every entry point first calls `require_tensorrt`, which ends
in a one-line RunFailure when either is missing. No figure is reported that was not measured.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from dnatool.errors import BadInput
from dnatool.export.inputs import real_inputs
from dnatool.runtime.onnx import INPUT_NAME, OUTPUT_NAME
from dnatool.runtime.tensorrt import DEFAULT_TIMING_CACHE, require_tensorrt
from dnatool.utils import io

if TYPE_CHECKING:
    from dnatool.nn.model_run import LoadedModel

PRECISIONS = ("fp32", "fp16", "int8")
__all__ = ["DEFAULT_TIMING_CACHE", "PRECISIONS", "export_tensorrt", "require_tensorrt"]


def precision_onnx(loaded: LoadedModel, onnx_path: str | Path, precision: str) -> bytes:
    """The ONNX whose types say the precision (strongly typed TensorRT builds exactly that)."""
    if precision not in PRECISIONS:
        raise BadInput(f"precision {precision!r} is not one of {', '.join(PRECISIONS)}")
    if precision == "fp32":
        return Path(onnx_path).read_bytes()
    if precision == "fp16":
        return _fp16_onnx(loaded)
    return _int8_qdq_onnx(loaded, onnx_path)


def _fp16_onnx(loaded: LoadedModel) -> bytes:
    """The half-precision network between fp32 casts (fp32 in and out, fp16 inside)."""
    from dnatool.runtime.onnx import to_onnx_bytes

    shape = (1, loaded.arch.in_chans, loaded.arch.resolution, loaded.arch.resolution)
    return to_onnx_bytes(loaded.model, shape, "fp16")


def _int8_qdq_onnx(loaded: LoadedModel, onnx_path: str | Path, count: int = 64) -> bytes:
    """Q/DQ int8 from static calibration on real images (symmetric, per-channel weights)."""
    import tempfile

    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    images, _ = real_inputs(loaded.preprocess, loaded.arch.in_chans, count=count)

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter(np.array_split(images, max(1, len(images) // 8)))

        def get_next(self) -> dict[str, np.ndarray] | None:
            batch = next(self.batches, None)
            return None if batch is None else {INPUT_NAME: batch}

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "int8.onnx"
        quantize_static(
            str(onnx_path),
            str(out),
            Reader(),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QInt8,
            weight_type=QuantType.QInt8,
            extra_options={"ActivationSymmetric": True, "WeightSymmetric": True},
        )
        return out.read_bytes()


def export_tensorrt(
    loaded: LoadedModel,
    onnx_path: str | Path,
    plan_path: str | Path,
    precision: str = "fp32",
    max_batch: int = 32,
    timing_cache: str | Path = DEFAULT_TIMING_CACHE,
) -> dict[str, Any]:
    """Build, write and check a plan: parity vs onnxruntime fp32 on real images, GPU latency."""
    from dnatool.runtime.ort import session
    from dnatool.runtime.tensorrt import EngineBuilder, TensorRTRunner, version
    from dnatool.runtime.timing import TimingProtocol, time_runner

    require_tensorrt()
    shape = (1, loaded.arch.in_chans, loaded.arch.resolution, loaded.arch.resolution)
    builder = EngineBuilder(cache_path=timing_cache)
    plan = builder.build(precision_onnx(loaded, onnx_path, precision), shape, max_batch)
    io.write_bytes(plan_path, plan)
    images, source = real_inputs(loaded.preprocess, loaded.arch.in_chans)
    images = images[:max_batch]
    expected = session(str(onnx_path)).run([OUTPUT_NAME], {INPUT_NAME: images})[0]
    got = TensorRTRunner(plan, images.shape).infer(images)
    latency = time_runner(TensorRTRunner(plan, shape), TimingProtocol()).median
    agree = float(np.mean(got.argmax(1) == expected.argmax(1)))
    return {
        "plan": str(plan_path),
        "precision": precision,
        "tensorrt": version(),
        "trt_max_abs_diff": float(np.max(np.abs(got - expected))),
        "trt_top1_agreement": agree,
        "trt_latency_ms": round(latency, 4),
        "trt_parity_inputs": source,
        "timing_cache": str(timing_cache),
    }
