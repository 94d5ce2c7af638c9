"""ExecuTorch with the XNNPACK delegate on the host CPU (the `mobile` extra): a phone-CPU proxy.

Lowering and runner: `dnatool.runtime.executorch` (also used by `profile export-ops`). Programs
come from the runtime's `ProgramCache`; `lower_all` fills it in parallel before timing starts.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from torch import nn

from dnatool.errors import BadInput, RunFailure
from dnatool.profile.backends.base import BackendOptions, base_fingerprint, clock_fn
from dnatool.runtime import executorch as E
from dnatool.utils.events import Report, quiet


class XnnpackBackend:
    name = "xnnpack"

    def __init__(self, options: BackendOptions) -> None:
        if options.precision != "fp32":
            raise BadInput("xnnpack measures fp32 only here")
        self.options = options
        self.cache = E.ProgramCache()

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
            self.cache.program(module, input_shape), input_shape, clock_fn(self.options)
        )

    def lower_all(
        self,
        builds: Sequence[Callable[[], tuple[nn.Module, tuple[int, ...]]]],
        jobs: int,
        report: Report = quiet,
    ) -> int:
        """Lower every network about to be timed, `jobs` processes at a time, before timing."""
        report("start", task="lower", total=len(builds))
        done = E.lower_all(
            [build() for build in builds],
            self.cache,
            jobs,
            lambda: report("advance", task="lower"),
        )
        report("log", message=f"xnnpack: lowered {done} programs, {len(builds) - done} cached")
        return done
