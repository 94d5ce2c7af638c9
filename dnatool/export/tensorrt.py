"""TensorRT engines (plans) through the TensorRT Python API, strongly typed.

TensorRT 10+ takes precision from the network itself (strongly typed networks): fp32 builds the
exported ONNX as is; fp16 builds an ONNX traced from the half-precision model with fp32 inputs and
outputs; int8 builds a Q/DQ ONNX calibrated on real images (onnxruntime's static quantisation,
symmetric, per channel: the form TensorRT consumes). One timing cache file is shared by every build.

TensorRT and a CUDA GPU are optional: every entry point first calls `require_tensorrt`, which ends
in a one-line RunFailure when either is missing. No figure is reported that was not measured.
"""

from __future__ import annotations

import io as _io
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from dnatool.errors import BadInput, RunFailure
from dnatool.export.inputs import random_inputs, real_inputs
from dnatool.export.onnx import INPUT_NAME, OPSET, OUTPUT_NAME, ort_session
from dnatool.utils import io

if TYPE_CHECKING:
    from dnatool.nn.model_run import LoadedModel

PRECISIONS = ("fp32", "fp16", "int8")
DEFAULT_TIMING_CACHE = Path.home() / ".cache" / "dnatool" / "trt_timing.cache"


def require_tensorrt() -> Any:
    """The tensorrt module, or a one-line failure saying what is missing."""
    try:
        import tensorrt as trt
    except ImportError:
        raise RunFailure(
            "TensorRT is not installed (pip install tensorrt from NVIDIA's index, on a "
            "machine with an NVIDIA GPU); no plan was built"
        ) from None
    import torch

    if not torch.cuda.is_available():
        raise RunFailure("TensorRT needs a CUDA GPU and torch sees none; no plan was built")
    return trt


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
    """Trace the half-precision network between fp32 casts (fp32 in and out, fp16 inside)."""
    import copy

    import torch

    class Half(torch.nn.Module):
        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.inner = copy.deepcopy(inner).half().eval()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.inner(x.half()).float()

    dummy = torch.from_numpy(random_inputs(loaded.arch.in_chans, loaded.arch.resolution, batch=1))
    buffer = _io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # dynamo=False is deliberate
        torch.onnx.export(
            Half(loaded.model),
            (dummy,),
            buffer,
            dynamo=False,
            opset_version=OPSET,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
        )
    return buffer.getvalue()


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


def _load_cache(config: Any, cache_path: Path) -> Any:
    data = cache_path.read_bytes() if cache_path.is_file() else b""
    cache = config.create_timing_cache(data)
    config.set_timing_cache(cache, ignore_mismatch=False)
    return cache


def build_plan(
    trt: Any, onnx_bytes: bytes, shape: tuple[int, int, int], max_batch: int, cache_path: Path
) -> bytes:
    """Parse ONNX into a strongly typed network and build a serialized engine (dynamic batch)."""
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_bytes):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RunFailure(f"TensorRT could not parse the ONNX model: {errors}")
    config = builder.create_builder_config()
    profile = builder.create_optimization_profile()
    profile.set_shape(
        INPUT_NAME, (1, *shape), (max(1, max_batch // 2), *shape), (max_batch, *shape)
    )
    config.add_optimization_profile(profile)
    _load_cache(config, cache_path)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise RunFailure("TensorRT failed to build the engine (see its log above)")
    io.write_bytes(cache_path, bytes(config.get_timing_cache().serialize()))
    return bytes(plan)


def run_plan(
    trt: Any, plan: bytes, batch: np.ndarray, timed_runs: int = 0
) -> tuple[np.ndarray, float | None]:
    """Run an engine on `batch` (torch CUDA buffers); optionally the median of timed runs (ms)."""
    import torch

    engine = trt.Runtime(trt.Logger(trt.Logger.WARNING)).deserialize_cuda_engine(plan)
    context = engine.create_execution_context()
    context.set_input_shape(INPUT_NAME, batch.shape)
    x = torch.from_numpy(batch).cuda()
    y = torch.empty(
        tuple(context.get_tensor_shape(OUTPUT_NAME)), device="cuda", dtype=torch.float32
    )
    context.set_tensor_address(INPUT_NAME, x.data_ptr())
    context.set_tensor_address(OUTPUT_NAME, y.data_ptr())
    stream = torch.cuda.Stream()
    context.execute_async_v3(stream.cuda_stream)
    stream.synchronize()
    if not timed_runs:
        return y.cpu().numpy(), None
    times = []
    for _ in range(timed_runs):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record(stream)
        context.execute_async_v3(stream.cuda_stream)
        end.record(stream)
        end.synchronize()
        times.append(start.elapsed_time(end))
    return y.cpu().numpy(), float(np.median(times))


def export_tensorrt(
    loaded: LoadedModel,
    onnx_path: str | Path,
    plan_path: str | Path,
    precision: str = "fp32",
    max_batch: int = 32,
    timing_cache: str | Path = DEFAULT_TIMING_CACHE,
) -> dict[str, Any]:
    """Build, write and check a plan: parity vs onnxruntime fp32 on real images, GPU latency."""
    trt = require_tensorrt()
    shape = (loaded.arch.in_chans, loaded.arch.resolution, loaded.arch.resolution)
    plan = build_plan(
        trt, precision_onnx(loaded, onnx_path, precision), shape, max_batch, Path(timing_cache)
    )
    io.write_bytes(plan_path, plan)
    images, source = real_inputs(loaded.preprocess, loaded.arch.in_chans)
    expected = ort_session(str(onnx_path)).run([OUTPUT_NAME], {INPUT_NAME: images})[0]
    got, _ = run_plan(trt, plan, images)
    _, latency = run_plan(trt, plan, images[:1], timed_runs=50)
    agree = float(np.mean(got.argmax(1) == expected.argmax(1)))
    return {
        "plan": str(plan_path),
        "precision": precision,
        "tensorrt": trt.__version__,
        "trt_max_abs_diff": float(np.max(np.abs(got - expected))),
        "trt_top1_agreement": agree,
        "trt_latency_ms": round(latency, 4),
        "trt_parity_inputs": source,
        "timing_cache": str(timing_cache),
    }
