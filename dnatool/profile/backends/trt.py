"""TensorRT (10+): the module converted as `dnatool export` converts it, built and run by
`dnatool.runtime.tensorrt` (one builder, one timing cache saved next to the table).

Written against the documented API; TensorRT cannot be installed in this project's workplace, so
this backend is not yet verified on a GPU and no TensorRT figure has been reported.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from dnatool.errors import BadInput
from dnatool.profile.backends.base import BackendOptions, base_fingerprint
from dnatool.runtime import tensorrt as T
from dnatool.runtime.onnx import conversion, to_onnx_bytes

PRECISIONS = ("fp32", "fp16")


class TensorRTBackend:
    name = "trt"

    def __init__(self, options: BackendOptions) -> None:
        if options.precision not in PRECISIONS:
            raise BadInput(
                f"trt precision must be fp32 or fp16 (INT8 needs Q/DQ nodes), not {options.precision!r}"
            )
        self.options = options
        self.builder = T.EngineBuilder(cache_path=None)

    @staticmethod
    def missing() -> str | None:
        return T.missing()

    def fingerprint(self) -> dict[str, Any]:
        from dnatool.profile.backends.torch_backend import _driver_version

        return {
            **base_fingerprint(self.name, self.options, conversion()),
            "gpu": torch.cuda.get_device_name(0),
            "driver": _driver_version(),
            "runtime": "tensorrt",
            "runtime_version": T.version(),
            "provider": f"strongly-typed, builder_optimization_level={T.OPT_LEVEL}",
        }

    def use_timing_cache(self, path: str | Path) -> None:
        """Share one timing cache file across every engine (and across resumed runs)."""
        self.builder = T.EngineBuilder(cache_path=path)

    def prepare(self, module: nn.Module, input_shape: tuple[int, ...]) -> T.TensorRTRunner:
        onnx = to_onnx_bytes(module, input_shape, self.options.precision)
        return T.TensorRTRunner(self.builder.build(onnx, input_shape), input_shape)
