"""TensorRT through its Python API (TensorRT 10+): ONNX parser, strongly typed network.

Written against the documented API; TensorRT cannot be installed in this project's workplace, so
this backend is not yet verified on a GPU and no TensorRT figure has been reported. Design, after
the TensorRT 10 notes in the environment docs:
- precision comes from the network (strongly typed): fp16 means the ONNX graph itself is fp16;
- one timing cache is shared by every engine this backend builds (many small engines otherwise
  re-time the same tactics) and saved to `timing_cache_path` when set;
- a fixed builder optimisation level, so tables are reproducible;
- latency is the median of timed `execute_async_v3` calls bracketed by CUDA events (summing
  per-layer profiler times overstates engine latency).
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dnatool.errors import BadInput, RunFailure
from dnatool.profile.backends.base import BackendOptions, base_fingerprint

OPT_LEVEL = 3
PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16}


class TensorRTRunner:
    def __init__(self, engine: Any) -> None:
        import tensorrt as trt

        self.engine = engine
        self.context = engine.create_execution_context()
        self.buffers = {}
        for i in range(engine.num_io_tensors):
            name = engine.get_tensor_name(i)
            shape = tuple(engine.get_tensor_shape(name))
            dtype = (
                torch.float16
                if engine.get_tensor_dtype(name) == trt.DataType.HALF
                else torch.float32
            )
            self.buffers[name] = torch.randn(*shape, device="cuda", dtype=dtype)
            self.context.set_tensor_address(name, self.buffers[name].data_ptr())

    def run(self, n: int) -> list[float]:
        stream = torch.cuda.current_stream()
        events = [
            (torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))
            for _ in range(n)
        ]
        for start, end in events:
            start.record(stream)
            if not self.context.execute_async_v3(stream.cuda_stream):
                raise RunFailure("TensorRT execute_async_v3 failed")
            end.record(stream)
        torch.cuda.synchronize()
        return [start.elapsed_time(end) for start, end in events]


class TensorRTBackend:
    name = "trt"

    def __init__(self, options: BackendOptions) -> None:
        if options.precision not in PRECISIONS:
            raise BadInput(
                f"trt precision must be fp32 or fp16 (INT8 needs Q/DQ nodes), not {options.precision!r}"
            )
        import tensorrt as trt

        self.options = options
        self.logger = trt.Logger(trt.Logger.WARNING)
        self.builder = trt.Builder(self.logger)
        self.runtime = trt.Runtime(self.logger)
        self.timing_cache_path: Path | None = None
        self._cache_bytes = b""

    @staticmethod
    def missing() -> str | None:
        try:
            import tensorrt  # noqa: F401
        except ImportError:
            return "TensorRT is not installed (its Python package 'tensorrt' cannot be imported)"
        return None if torch.cuda.is_available() else "no CUDA device visible"

    def fingerprint(self) -> dict[str, Any]:
        import tensorrt as trt

        from dnatool.profile.backends.torch_backend import _driver_version

        return {
            **base_fingerprint(self.name, self.options),
            "gpu": torch.cuda.get_device_name(0),
            "driver": _driver_version(),
            "runtime": "tensorrt",
            "runtime_version": trt.__version__,
            "provider": f"strongly-typed, builder_optimization_level={OPT_LEVEL}",
        }

    def use_timing_cache(self, path: str | Path) -> None:
        """Share one timing cache file across every engine (and across resumed runs)."""
        self.timing_cache_path = Path(path)
        if self.timing_cache_path.is_file():
            self._cache_bytes = self.timing_cache_path.read_bytes()

    def prepare(self, module: nn.Module, input_shape: tuple[int, ...]) -> TensorRTRunner:
        buffer = io.BytesIO()
        _export_on_cuda(module, input_shape, buffer, PRECISIONS[self.options.precision])
        engine = self.runtime.deserialize_cuda_engine(self._build(buffer.getvalue()))
        if engine is None:
            raise RunFailure("TensorRT could not deserialize the engine it built")
        return TensorRTRunner(engine)

    def _build(self, onnx_bytes: bytes) -> bytes:
        import tensorrt as trt

        network = self.builder.create_network(
            1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
        )
        parser = trt.OnnxParser(network, self.logger)
        if not parser.parse(onnx_bytes):
            raise RunFailure(f"TensorRT ONNX parser: {parser.get_error(0)}")
        config = self.builder.create_builder_config()
        config.builder_optimization_level = OPT_LEVEL
        config.set_timing_cache(config.create_timing_cache(self._cache_bytes), False)
        serialized = self.builder.build_serialized_network(network, config)
        if serialized is None:
            raise RunFailure("TensorRT failed to build an engine (see its log above)")
        self._cache_bytes = bytes(memoryview(config.get_timing_cache().serialize()))
        if self.timing_cache_path is not None:
            from dnatool.utils.io import write_bytes

            write_bytes(self.timing_cache_path, self._cache_bytes)
        return bytes(memoryview(serialized))


def _export_on_cuda(
    module: nn.Module, input_shape: tuple[int, ...], target: Any, dtype: torch.dtype
) -> None:
    """Export on the GPU so fp16 tracing runs where fp16 kernels exist (the graph is fp16 then)."""
    module = module.eval().to("cuda", dtype)
    example = torch.randn(*input_shape, device="cuda", dtype=dtype)
    with torch.no_grad():
        torch.onnx.export(
            module,
            (example,),
            target,
            input_names=["input"],
            output_names=["output"],
            opset_version=17,
            dynamo=False,
        )
