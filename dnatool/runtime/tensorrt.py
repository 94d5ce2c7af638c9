"""THE TensorRT engine builder and runner (TensorRT 10+ Python API), for tables and export.

Written against the documented API; TensorRT cannot be installed in this project's workplace, so
this module has never run here and no TensorRT figure has been reported. Design:
- strongly typed networks: precision comes from the ONNX graph (`runtime.onnx.to_onnx` with
  precision fp16 is fp16 inside, fp32 at its input and output; int8 is a Q/DQ graph);
- one timing cache per builder, shared by every engine it builds (many small engines would
  otherwise re-time the same tactics) and saved to a file (`~/.cache/dnatool/trt_timing.cache`
  unless told otherwise), so profile and export share what was timed;
- a fixed builder optimisation level, so tables are reproducible;
- latency: `execute_async_v3` calls bracketed by CUDA events (summing per-layer profiler times
  overstates engine latency), timed by `runtime.timing`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from dnatool.errors import RunFailure
from dnatool.runtime.onnx import INPUT_NAME, OUTPUT_NAME

OPT_LEVEL = 3
DEFAULT_TIMING_CACHE = Path.home() / ".cache" / "dnatool" / "trt_timing.cache"


def missing() -> str | None:
    """Why TensorRT cannot run here (None when it can)."""
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return "TensorRT is not installed (its Python package 'tensorrt' cannot be imported)"
    import torch

    return None if torch.cuda.is_available() else "no CUDA device visible to torch"


def require_tensorrt() -> Any:
    """The tensorrt module, or a one-line RunFailure saying what is missing."""
    reason = missing()
    if reason:
        raise RunFailure(f"{reason}; no TensorRT engine was built")
    import tensorrt as trt

    return trt


def version() -> str:
    import tensorrt as trt

    return str(trt.__version__)


class EngineBuilder:
    """Builds serialized engines from ONNX bytes, all sharing one timing cache."""

    def __init__(self, cache_path: str | Path | None = DEFAULT_TIMING_CACHE) -> None:
        trt = require_tensorrt()
        self.trt = trt
        self.logger = trt.Logger(trt.Logger.WARNING)
        self.builder = trt.Builder(self.logger)
        self.cache_path = Path(cache_path) if cache_path is not None else None
        self.cache_bytes = (
            self.cache_path.read_bytes()
            if self.cache_path is not None and self.cache_path.is_file()
            else b""
        )

    def build(
        self, onnx_bytes: bytes, input_shape: tuple[int, ...], max_batch: int | None = None
    ) -> bytes:
        """A serialized engine for inputs of `input_shape` (batch first), or batches 1..max_batch."""
        trt = self.trt
        network = self.builder.create_network(
            1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
        )
        parser = trt.OnnxParser(network, self.logger)
        if not parser.parse(onnx_bytes):
            errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise RunFailure(f"TensorRT could not parse the ONNX model: {errors}")
        config = self.builder.create_builder_config()
        config.builder_optimization_level = OPT_LEVEL
        sample = tuple(input_shape[1:])
        profile = self.builder.create_optimization_profile()
        if max_batch is None:
            profile.set_shape(INPUT_NAME, input_shape, input_shape, input_shape)
        else:
            profile.set_shape(
                INPUT_NAME, (1, *sample), (max(1, max_batch // 2), *sample), (max_batch, *sample)
            )
        config.add_optimization_profile(profile)
        config.set_timing_cache(config.create_timing_cache(self.cache_bytes), False)
        serialized = self.builder.build_serialized_network(network, config)
        if serialized is None:
            raise RunFailure("TensorRT failed to build an engine (see its log above)")
        self.cache_bytes = bytes(memoryview(config.get_timing_cache().serialize()))
        if self.cache_path is not None:
            from dnatool.utils.io import write_bytes

            write_bytes(self.cache_path, self.cache_bytes)
        return bytes(memoryview(serialized))


class TensorRTRunner:
    """One engine at one input shape: `run(n)` times it, `infer(x)` computes with it."""

    def __init__(self, plan: bytes, input_shape: tuple[int, ...]) -> None:
        import tensorrt as trt
        import torch

        logger = trt.Logger(trt.Logger.WARNING)
        self.engine = trt.Runtime(logger).deserialize_cuda_engine(plan)
        if self.engine is None:
            raise RunFailure("TensorRT could not deserialize the engine")
        self.context = self.engine.create_execution_context()
        self.context.set_input_shape(INPUT_NAME, tuple(input_shape))
        self.buffers: dict[str, Any] = {}
        for i in range(self.engine.num_io_tensors):
            name = self.engine.get_tensor_name(i)
            half = self.engine.get_tensor_dtype(name) == trt.DataType.HALF
            shape = tuple(self.context.get_tensor_shape(name))
            dtype = torch.float16 if half else torch.float32
            self.buffers[name] = torch.randn(*shape, device="cuda", dtype=dtype)
            self.context.set_tensor_address(name, self.buffers[name].data_ptr())
        self.stream = torch.cuda.Stream()

    def _execute(self) -> None:
        if not self.context.execute_async_v3(self.stream.cuda_stream):
            raise RunFailure("TensorRT execute_async_v3 failed")

    def run(self, n: int) -> list[float]:
        import torch

        events = [
            (torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))
            for _ in range(n)
        ]
        for start, end in events:
            start.record(self.stream)
            self._execute()
            end.record(self.stream)
        self.stream.synchronize()
        return [start.elapsed_time(end) for start, end in events]

    def infer(self, x: np.ndarray) -> np.ndarray:
        """Outputs for `x` (its shape must be this runner's input shape)."""
        import torch

        self.buffers[INPUT_NAME].copy_(torch.from_numpy(x))
        self._execute()
        self.stream.synchronize()
        return self.buffers[OUTPUT_NAME].float().cpu().numpy()
