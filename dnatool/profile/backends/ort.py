"""onnxruntime on the CPU: the cheap mobile-CPU proxy (1-4 threads).

A module is converted exactly as `dnatool export` converts a network (`runtime.onnx.to_onnx`) and
run in a session of `runtime.ort.session` (the table's thread count, sequential, all graph
optimisations); the session options are recorded in the table's fingerprint. Latency is the
chosen clock around `session.run` with a prepared numpy input, as an application would call it.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from dnatool.errors import BadInput
from dnatool.profile.backends.base import BackendOptions, base_fingerprint, clock_fn
from dnatool.runtime import ort as R
from dnatool.runtime.onnx import conversion, to_onnx_bytes


class OrtCpuBackend:
    name = "ort-cpu"

    def __init__(self, options: BackendOptions) -> None:
        if options.precision != "fp32":
            raise BadInput(f"ort-cpu measures fp32 only, not {options.precision!r}")
        self.options = options
        self.clock = clock_fn(options)  # with 1 intra-op thread onnxruntime computes on this thread

    @staticmethod
    def missing() -> str | None:
        return R.missing()

    def fingerprint(self) -> dict[str, Any]:
        options = R.session_options(self.options.threads)
        return {
            **base_fingerprint(
                self.name,
                self.options,
                f"{conversion()}; session: {options['execution_mode']}, "
                f"graph optimisation {options['graph_optimization']}",
            ),
            "runtime": "onnxruntime",
            "runtime_version": R.version(),
            "provider": R.PROVIDER,
            "session": options,
        }

    def prepare(self, module: nn.Module, input_shape: tuple[int, ...]) -> R.OrtRunner:
        session = R.session(to_onnx_bytes(module, input_shape), threads=self.options.threads)
        return R.OrtRunner(session, input_shape, self.clock)
