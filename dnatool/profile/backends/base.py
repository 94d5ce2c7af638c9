"""The small interface every latency backend implements (like nn-Meter's `backends/interface.py`).

A backend turns a torch module plus an input shape into a `Runner` whose `run(n)` returns n timed
forward passes in milliseconds, measured the way that runtime should be measured (wall clock for
CPU runtimes, CUDA events on a GPU). `fingerprint()` names the device and runtime so a table
measured elsewhere can be refused.
"""

from __future__ import annotations

import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from torch import nn


@dataclass(frozen=True)
class BackendOptions:
    """What the user chose on the command line; stored in the table header."""

    threads: int = 1
    batch: int = 1
    precision: str = "fp32"
    mode: str = "eager"
    clock: str = "wall"  # "cpu": thread CPU time, for 1-thread CPU backends on a shared machine


class Runner(Protocol):
    def run(self, n: int) -> list[float]:
        """Run n forward passes and return each one's latency in milliseconds."""
        ...


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


def base_fingerprint(name: str, options: BackendOptions) -> dict[str, Any]:
    return {
        "backend": name,
        "cpu": cpu_model(),
        "machine": platform.machine(),
        "threads": options.threads,
        "batch": options.batch,
        "precision": options.precision,
        "mode": options.mode,
        "clock": options.clock,
    }


def clock_fn(options: BackendOptions) -> Callable[[], float]:
    """Wall clock, or this thread's CPU time (immune to other processes' load; 1 thread only)."""
    if options.clock == "wall":
        return time.perf_counter
    if options.clock == "cpu" and options.threads == 1:
        return time.thread_time
    from dnatool.errors import BadInput

    raise BadInput(
        f"--clock {options.clock} needs --threads 1 (thread CPU time of the calling thread)"
        if options.clock == "cpu"
        else f"unknown clock {options.clock!r} (wall or cpu)"
    )
