"""The small interface every latency backend implements (like nn-Meter's `backends/interface.py`).

A backend turns a torch module plus an input shape into a `Runner` whose `run(n)` returns n timed
forward passes in milliseconds, measured the way that runtime should be measured (a CPU clock for
CPU runtimes, CUDA events on a GPU). The conversions, sessions and runners are those of
`dnatool.runtime`, which `dnatool export` uses too: a table times what ships. `fingerprint()` names
the device, the runtime and the conversion, so a table measured elsewhere can be refused.
"""

from __future__ import annotations

import platform
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from torch import nn

from dnatool.runtime.timing import Runner
from dnatool.runtime.timing import clock_fn as _clock_fn


@dataclass(frozen=True)
class BackendOptions:
    """What the user chose on the command line; stored in the table header."""

    threads: int = 1
    batch: int = 1
    precision: str = "fp32"
    mode: str = "eager"
    clock: str = "wall"  # "cpu": thread CPU time, for 1-thread CPU backends on a shared machine


class Backend(Protocol):
    name: str
    options: BackendOptions

    def fingerprint(self) -> dict[str, Any]:
        """Device and runtime facts that must match for a table to be reused."""
        ...

    def prepare(self, module: nn.Module, input_shape: tuple[int, ...]) -> Runner:
        """Compile or load `module` for this runtime, ready to be timed."""
        ...


def cpu_model() -> str:
    """The CPU model name (from /proc/cpuinfo on Linux, else platform.processor())."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def base_fingerprint(name: str, options: BackendOptions, conversion: str) -> dict[str, Any]:
    """The facts every backend records; `conversion` names how a module becomes what is run."""
    return {
        "backend": name,
        "cpu": cpu_model(),
        "machine": platform.machine(),
        "threads": options.threads,
        "batch": options.batch,
        "precision": options.precision,
        "mode": options.mode,
        "clock": options.clock,
        "conversion": conversion,
    }


def clock_fn(options: BackendOptions) -> Callable[[], float]:
    """Wall clock, or this thread's CPU time (immune to other processes' load; 1 thread only)."""
    return _clock_fn(options.clock, options.threads)
