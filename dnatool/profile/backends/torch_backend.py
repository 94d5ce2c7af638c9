"""PyTorch eager on the CPU and on CUDA (eager or CUDA-graph replay); runners in
`dnatool.runtime.eager`."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from dnatool.errors import BadInput
from dnatool.profile.backends.base import BackendOptions, base_fingerprint, clock_fn
from dnatool.runtime.eager import TorchCpuRunner, TorchCudaRunner

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


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
            **base_fingerprint(self.name, self.options, "torch eager"),
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
            **base_fingerprint(self.name, self.options, f"torch {self.options.mode}"),
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
