"""THE ExecuTorch lowering (XNNPACK delegate) and runner: the phone-CPU path (the `mobile` extra).

Export path as documented by ExecuTorch 1.x: `torch.export` -> `to_edge_transform_and_lower` with
`XnnpackPartitioner` -> `.to_executorch()` -> a `.pte` program run by `executorch.runtime` on
ExecuTorch's CPU threadpool. Used by the xnnpack backend and by `profile export-ops`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def missing() -> str | None:
    try:
        import executorch  # noqa: F401
    except ImportError:
        return "executorch is not installed (pip install 'dnatool[mobile]')"
    return None


def version() -> str:
    import importlib.metadata

    return importlib.metadata.version("executorch")


def pte_bytes(module: Any, input_shape: tuple[int, ...]) -> bytes:
    """Lower `module` (eval mode) to an XNNPACK-delegated ExecuTorch program."""
    import torch
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    example = (torch.randn(*input_shape),)
    exported = torch.export.export(module.eval(), example)
    program = to_edge_transform_and_lower(
        exported, partitioner=[XnnpackPartitioner()]
    ).to_executorch()
    return program.buffer


def set_threads(threads: int) -> int:
    """Size ExecuTorch's shared CPU threadpool (XNNPACK runs on it); returns the count it has.

    Its default is one thread per core; `--threads` must hold here as it does for onnxruntime.
    """
    from executorch.extension.pybindings import portable_lib

    if portable_lib._threadpool_get_thread_count() != threads:
        portable_lib._unsafe_reset_threadpool(threads)
    return int(portable_lib._threadpool_get_thread_count())


class XnnpackRunner:
    """Times `forward` of a loaded program. The runner owns the program: a method outlives
    neither it nor its buffer (executing a method of a freed program crashes the process)."""

    def __init__(
        self,
        pte: bytes,
        input_shape: tuple[int, ...],
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        import torch
        from executorch.runtime import Runtime

        self.program = Runtime.get().load_program(pte)
        self.method = self.program.load_method("forward")
        self.x = torch.randn(*input_shape)
        self.clock = clock

    def run(self, n: int) -> list[float]:
        times = []
        for _ in range(n):
            start = self.clock()
            self.method.execute([self.x])
            times.append((self.clock() - start) * 1e3)
        return times
