"""PyTorch eager on the CPU (wall clock) and on CUDA (CUDA events; eager or CUDA-graph replay).

On a GPU a Python timer measures the launch queue, not the kernels: each run is bracketed by CUDA
events on the current stream and read after one synchronisation. CUDA-graph mode captures the
forward once and times `graph.replay()`, which removes launch overhead the way a deployment
runtime (or TensorRT) would.
"""

from __future__ import annotations

import time
from typing import Any

import torch
from torch import nn

from dnatool.errors import BadInput
from dnatool.profile.backends.base import BackendOptions, base_fingerprint, clock_fn

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


class TorchCpuRunner:
    def __init__(
        self, module: nn.Module, input_shape: tuple[int, ...], clock: Any = time.perf_counter
    ) -> None:
        self.module = module.eval()
        self.x = torch.randn(*input_shape)
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


class TorchCpuBackend:
    name = "torch-cpu"

    def __init__(self, options: BackendOptions) -> None:
        if options.precision != "fp32" or options.mode != "eager":
            raise BadInput("torch-cpu measures fp32 eager only")
        self.options = options
        self.clock = clock_fn(options)

    @staticmethod
    def missing() -> str | None:
        return None

    def fingerprint(self) -> dict[str, Any]:
        return {
            **base_fingerprint(self.name, self.options),
            "runtime": "torch",
            "runtime_version": torch.__version__,
            "provider": "cpu",
        }

    def prepare(self, module: nn.Module, input_shape: tuple[int, ...]) -> TorchCpuRunner:
        torch.set_num_threads(self.options.threads)
        return TorchCpuRunner(module, input_shape, self.clock)


class TorchCudaBackend:
    name = "torch-cuda"

    def __init__(self, options: BackendOptions) -> None:
        if options.precision not in DTYPES:
            raise BadInput(
                f"torch-cuda precision must be one of {', '.join(DTYPES)}, not {options.precision!r}"
            )
        if options.clock != "wall":
            raise BadInput("torch-cuda times with CUDA events; --clock does not apply")
        if options.mode not in ("eager", "graph"):
            raise BadInput(f"torch-cuda mode must be eager or graph, not {options.mode!r}")
        self.options = options

    @staticmethod
    def missing() -> str | None:
        return None if torch.cuda.is_available() else "no CUDA device visible to torch"

    def fingerprint(self) -> dict[str, Any]:
        props = torch.cuda.get_device_properties(0)
        return {
            **base_fingerprint(self.name, self.options),
            "gpu": props.name,
            "driver": _driver_version(),
            "cuda": torch.version.cuda,
            "runtime": "torch",
            "runtime_version": torch.__version__,
            "provider": "cuda",
        }

    def prepare(self, module: nn.Module, input_shape: tuple[int, ...]) -> TorchCudaRunner:
        torch.backends.cudnn.benchmark = True
        return TorchCudaRunner(
            module, input_shape, DTYPES[self.options.precision], self.options.mode == "graph"
        )


def _driver_version() -> str:
    """The NVIDIA driver version from nvidia-smi (empty when it cannot be asked)."""
    import subprocess

    try:
        done = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        return done.stdout.strip().splitlines()[0] if done.stdout.strip() else ""
    except (OSError, subprocess.SubprocessError):
        return ""
