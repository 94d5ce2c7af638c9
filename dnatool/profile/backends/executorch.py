"""ExecuTorch with the XNNPACK delegate on the host CPU (the `mobile` extra): a phone-CPU proxy.

Lowering and runner: `dnatool.runtime.executorch` (also used by `profile export-ops`).
"""

from __future__ import annotations

from typing import Any

from torch import nn

from dnatool.errors import BadInput, RunFailure
from dnatool.profile.backends.base import BackendOptions, base_fingerprint, clock_fn
from dnatool.runtime import executorch as E


class XnnpackBackend:
    name = "xnnpack"

    def __init__(self, options: BackendOptions) -> None:
        if options.precision != "fp32":
            raise BadInput("xnnpack measures fp32 only here")
        self.options = options

    @staticmethod
    def missing() -> str | None:
        return E.missing()

    def fingerprint(self) -> dict[str, Any]:
        return {
            **base_fingerprint(self.name, self.options, "torch.export, XnnpackPartitioner"),
            "runtime": "executorch",
            "runtime_version": E.version(),
            "provider": "XnnpackPartitioner",
        }

    def prepare(self, module: nn.Module, input_shape: tuple[int, ...]) -> E.XnnpackRunner:
        got = E.set_threads(self.options.threads)
        if got != self.options.threads:
            raise RunFailure(
                f"ExecuTorch's threadpool has {got} threads, not {self.options.threads}"
            )
        return E.XnnpackRunner(
            E.pte_bytes(module, input_shape), input_shape, clock_fn(self.options)
        )
