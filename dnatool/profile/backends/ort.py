"""onnxruntime on the CPU: the cheap mobile-CPU proxy (1-4 threads).

Modules are exported with the TorchScript exporter (`dynamo=False`, one self-contained file) and
run with all graph optimisations, a fixed intra-op thread count and sequential execution. Latency
is wall clock around `session.run` with a prepared numpy input, as an application would call it.
"""

from __future__ import annotations

import io
import time
from typing import Any

import numpy as np
import torch
from torch import nn

from dnatool.profile.backends.base import BackendOptions, base_fingerprint, clock_fn


def export_onnx(
    module: nn.Module, input_shape: tuple[int, ...], target: Any, dtype: torch.dtype = torch.float32
) -> None:
    """Export `module` (eval mode) to ONNX at a fixed input shape (file path or file object)."""
    module = module.eval().to(dtype)
    example = torch.randn(*input_shape, dtype=dtype)
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


class OrtRunner:
    def __init__(
        self, session: Any, input_shape: tuple[int, ...], clock: Any = time.perf_counter
    ) -> None:
        self.session = session
        self.clock = clock
        self.feed = {
            "input": np.random.default_rng(0).standard_normal(input_shape, dtype=np.float32)
        }

    def run(self, n: int) -> list[float]:
        times = []
        for _ in range(n):
            start = self.clock()
            self.session.run(None, self.feed)
            times.append((self.clock() - start) * 1e3)
        return times


class OrtCpuBackend:
    name = "ort-cpu"

    def __init__(self, options: BackendOptions) -> None:
        if options.precision != "fp32":
            raise_bad(f"ort-cpu measures fp32 only, not {options.precision!r}")
        self.options = options
        self.clock = clock_fn(options)  # with 1 intra-op thread onnxruntime computes on this thread

    @staticmethod
    def missing() -> str | None:
        try:
            import onnxruntime  # noqa: F401
        except ImportError:
            return "onnxruntime is not installed (pip install 'dnatool[onnx]')"
        return None

    def fingerprint(self) -> dict[str, Any]:
        import onnxruntime as ort

        return {
            **base_fingerprint(self.name, self.options),
            "runtime": "onnxruntime",
            "runtime_version": ort.__version__,
            "provider": "CPUExecutionProvider",
        }

    def prepare(self, module: nn.Module, input_shape: tuple[int, ...]) -> OrtRunner:
        import onnxruntime as ort

        buffer = io.BytesIO()
        export_onnx(module, input_shape, buffer)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = self.options.threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3
        session = ort.InferenceSession(buffer.getvalue(), opts, providers=["CPUExecutionProvider"])
        return OrtRunner(session, input_shape, self.clock)


def raise_bad(message: str) -> None:
    from dnatool.errors import BadInput

    raise BadInput(message)
