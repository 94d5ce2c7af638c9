"""THE timing loop of every runtime, and the A B A B protocol that divides a machine's drift out.

A runner is anything with `run(n) -> list[float]`: n forward passes, each one's latency in ms,
timed the way its runtime should be timed (a CPU clock around the call, CUDA events on a GPU).

- `time_runner`: warm-up, then rounds until the median is stable (the table's protocol).
- `time_paired`: a network A and a reference network B measured in alternating rounds
  (A B A B ...). On a shared machine the speed of the CPU moves by 10-25% within minutes; a slow
  stretch slows A and B alike, so the per-round ratio A/B does not move with it. The figures are
  medians over rounds of per-round medians: a burst that hits one round changes nothing.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol


class Runner(Protocol):
    def run(self, n: int) -> list[float]:
        """Run n forward passes and return each one's latency in milliseconds."""
        ...


@dataclass(frozen=True)
class TimingProtocol:
    """How long and how often to time (`profile.measure.Protocol` extends it; export uses it)."""

    warmup: int = 10
    min_reps: int = 20
    max_reps: int = 1000
    round_reps: int = 10
    rel_tol: float = 0.01
    min_seconds: float = 0.2
    pair_rounds: int = 8  # whole networks: rounds alternating with a reference (A B A B)


@dataclass(frozen=True)
class Timing:
    median: float
    mean: float
    std: float
    n: int

    def to_dict(self) -> dict[str, Any]:
        return {"ms": self.median, "mean": self.mean, "std": self.std, "n": self.n}


@dataclass(frozen=True)
class Paired:
    """A network measured in rounds alternating with a reference network."""

    ms: float  # median over rounds of the network's round medians (raw)
    reference_ms: float  # the same for the reference network
    ratio: float  # median over rounds of network / reference (round by round)
    rounds: int
    n: int  # timed runs of the network

    def corrected(self, reference_ms: float) -> float:
        """The network's latency under the conditions in which the reference took `reference_ms`."""
        return self.ratio * reference_ms

    def to_dict(self) -> dict[str, Any]:
        return {
            "ms": self.ms,
            "reference_ms": self.reference_ms,
            "ratio": self.ratio,
            "rounds": self.rounds,
            "n": self.n,
        }


def clock_fn(clock: str, threads: int) -> Callable[[], float]:
    """Wall clock, or this thread's CPU time (immune to other processes' load; 1 thread only)."""
    from dnatool.errors import BadInput

    if clock == "wall":
        return time.perf_counter
    if clock == "cpu" and threads == 1:
        return time.thread_time
    raise BadInput(
        f"--clock {clock} needs --threads 1 (thread CPU time of the calling thread)"
        if clock == "cpu"
        else f"unknown clock {clock!r} (wall or cpu)"
    )


def time_runner(runner: Runner, protocol: TimingProtocol) -> Timing:
    """Warm up, then time rounds until the median is stable (relative change <= rel_tol)."""
    runner.run(protocol.warmup)
    times = runner.run(protocol.min_reps)
    previous = statistics.median(times)
    while len(times) < protocol.max_reps:
        times += runner.run(protocol.round_reps)
        current = statistics.median(times)
        if (
            abs(current - previous) <= protocol.rel_tol * previous
            and sum(times) >= 1e3 * protocol.min_seconds
        ):
            break
        previous = current
    return Timing(
        statistics.median(times),
        statistics.fmean(times),
        statistics.stdev(times) if len(times) > 1 else 0.0,
        len(times),
    )


def round_reps(warm_ms: float, protocol: TimingProtocol) -> int:
    """Runs per half-round: at least `round_reps`, and together `min_seconds` over all rounds."""
    share_ms = 1e3 * protocol.min_seconds / max(protocol.pair_rounds, 1)
    wanted = math.ceil(share_ms / warm_ms) if warm_ms > 0 else protocol.round_reps
    return int(min(max(protocol.round_reps, wanted), protocol.max_reps))


def time_paired(runner: Runner, reference: Runner, protocol: TimingProtocol) -> Paired:
    """`runner` and `reference` in `pair_rounds` alternating rounds (A B A B ...), both warmed up."""
    warm_a = statistics.median(runner.run(max(protocol.warmup, 1)))
    warm_b = statistics.median(reference.run(max(protocol.warmup, 1)))
    reps_a, reps_b = round_reps(warm_a, protocol), round_reps(warm_b, protocol)
    a_meds, b_meds, n = [], [], 0
    for _ in range(max(protocol.pair_rounds, 1)):
        a = runner.run(reps_a)
        b = reference.run(reps_b)
        a_meds.append(statistics.median(a))
        b_meds.append(statistics.median(b))
        n += len(a)
    return Paired(
        ms=statistics.median(a_meds),
        reference_ms=statistics.median(b_meds),
        ratio=statistics.median([x / y for x, y in zip(a_meds, b_meds)]),
        rounds=len(a_meds),
        n=n,
    )
