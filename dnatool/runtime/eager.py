"""PyTorch eager on the CPU (a CPU clock) and on CUDA (CUDA events; eager or CUDA-graph replay).

On a GPU a Python timer measures the launch queue, not the kernels: each run is bracketed by CUDA
events on the current stream and read after one synchronisation. CUDA-graph mode captures the
forward once and times `graph.replay()`, which removes launch overhead the way a deployment
runtime (or TensorRT) would.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn


class TorchCpuRunner:
    def __init__(
        self,
        module: nn.Module,
        input_shape: tuple[int, ...] | None = None,
        clock: Callable[[], float] = time.perf_counter,
        x: Any = None,
    ) -> None:
        self.module = module.eval()
        self.x = torch.randn(*input_shape) if x is None else x
        self.clock = clock

    def run(self, n: int) -> list[float]:
        times = []
        with torch.inference_mode():
            for _ in range(n):
                start = self.clock()
                self.module(self.x)
                times.append((self.clock() - start) * 1e3)
        return times


class TorchCudaRunner:
    """Times eager forwards or CUDA-graph replays with one event pair per run."""

    def __init__(
        self, module: nn.Module, input_shape: tuple[int, ...], dtype: torch.dtype, graph: bool
    ) -> None:
        self.module = module.eval().to("cuda", dtype)
        self.x = torch.randn(*input_shape, device="cuda", dtype=dtype)
        self.graph = self._capture() if graph else None

    @torch.inference_mode()
    def _capture(self) -> torch.cuda.CUDAGraph:
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(3):  # warm-up on a side stream, as CUDA graph capture requires
                self.module(self.x)
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            self.out = self.module(self.x)
        return graph

    @torch.inference_mode()
    def run(self, n: int) -> list[float]:
        events = [
            (torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))
            for _ in range(n)
        ]
        for start, end in events:
            start.record()
            if self.graph is not None:
                self.graph.replay()
            else:
                self.module(self.x)
            end.record()
        torch.cuda.synchronize()
        return [start.elapsed_time(end) for start, end in events]
