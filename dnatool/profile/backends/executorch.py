"""ExecuTorch with the XNNPACK delegate on the host CPU (the `mobile` extra): a phone-CPU proxy.

Export path as documented by ExecuTorch 1.x: `torch.export` -> `to_edge_transform_and_lower` with
`XnnpackPartitioner` -> `.to_executorch()` -> a `.pte` program run by `executorch.runtime`.
`export_pte` is also used by `dnatool profile --export-ops` to write ops for on-device timing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from dnatool.errors import BadInput
from dnatool.profile.backends.base import BackendOptions, base_fingerprint, clock_fn


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
    """Times `forward` of a loaded program. The runner owns the program: a method outlives
    neither it nor its buffer (executing a method of a freed program crashes the process)."""

    def __init__(
        self, program: Any, input_shape: tuple[int, ...], clock: Callable[[], float]
    ) -> None:
        self.program = program
        self.method = program.load_method("forward")
        self.x = torch.randn(*input_shape)
        self.clock = clock

    def run(self, n: int) -> list[float]:
        times = []
        for _ in range(n):
            start = self.clock()
            self.method.execute([self.x])
            times.append((self.clock() - start) * 1e3)
        return times


def set_threads(threads: int) -> int:
    """Size ExecuTorch's shared CPU threadpool (XNNPACK runs on it); returns the count it has.

    Its default is one thread per core; `--threads` must hold here as it does for onnxruntime.
    """
    from executorch.extension.pybindings import portable_lib

    if portable_lib._threadpool_get_thread_count() != threads:
        portable_lib._unsafe_reset_threadpool(threads)
    return int(portable_lib._threadpool_get_thread_count())


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

        got = set_threads(self.options.threads)
        if got != self.options.threads:
            from dnatool.errors import RunFailure

            raise RunFailure(
                f"ExecuTorch's threadpool has {got} threads, not {self.options.threads}"
            )
        program = Runtime.get().load_program(pte_bytes(module, input_shape))
        return XnnpackRunner(program, input_shape, clock_fn(self.options))
