"""ExecuTorch with the XNNPACK delegate on the host CPU (the `mobile` extra): a phone-CPU proxy.

Export path as documented by ExecuTorch 1.x: `torch.export` -> `to_edge_transform_and_lower` with
`XnnpackPartitioner` -> `.to_executorch()` -> a `.pte` program run by `executorch.runtime`.
`export_pte` is also used by `dnatool profile --export-ops` to write ops for on-device timing.
"""

from __future__ import annotations

import time
from typing import Any

import torch
from torch import nn

from dnatool.errors import BadInput
from dnatool.profile.backends.base import BackendOptions, base_fingerprint


def pte_bytes(module: nn.Module, input_shape: tuple[int, ...]) -> bytes:
    """Lower `module` to an XNNPACK-delegated ExecuTorch program."""
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    example = (torch.randn(*input_shape),)
    exported = torch.export.export(module.eval(), example)
    program = to_edge_transform_and_lower(
        exported, partitioner=[XnnpackPartitioner()]
    ).to_executorch()
    return program.buffer


class XnnpackRunner:
    def __init__(self, method: Any, input_shape: tuple[int, ...]) -> None:
        self.method = method
        self.x = torch.randn(*input_shape)

    def run(self, n: int) -> list[float]:
        times = []
        for _ in range(n):
            start = time.perf_counter()
            self.method.execute([self.x])
            times.append((time.perf_counter() - start) * 1e3)
        return times


class XnnpackBackend:
    name = "xnnpack"

    def __init__(self, options: BackendOptions) -> None:
        if options.precision != "fp32":
            raise BadInput("xnnpack measures fp32 only here")
        self.options = options

    @staticmethod
    def missing() -> str | None:
        try:
            import executorch  # noqa: F401
        except ImportError:
            return "executorch is not installed (pip install 'dnatool[mobile]')"
        return None

    def fingerprint(self) -> dict[str, Any]:
        import importlib.metadata

        return {
            **base_fingerprint(self.name, self.options),
            "runtime": "executorch",
            "runtime_version": importlib.metadata.version("executorch"),
            "provider": "XnnpackPartitioner",
        }

    def prepare(self, module: nn.Module, input_shape: tuple[int, ...]) -> XnnpackRunner:
        from executorch.runtime import Runtime

        program = Runtime.get().load_program(pte_bytes(module, input_shape))
        return XnnpackRunner(program.load_method("forward"), input_shape)
