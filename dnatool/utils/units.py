"""Quantities with units, as users type them: `10ms`, `800us`, `1.5s`; `5.3M`, `400M`, `1.2G`."""

from __future__ import annotations

import math
import re

from dnatool.errors import BadInput

_TIME_MS = {"s": 1000.0, "ms": 1.0, "us": 1e-3, "µs": 1e-3, "ns": 1e-6}
_COUNT = {"": 1.0, "k": 1e3, "K": 1e3, "M": 1e6, "G": 1e9, "B": 1e9, "T": 1e12}
_NUMBER = r"([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)"


def parse_latency_ms(text: str) -> float:
    """Milliseconds from `10ms`, `800us`, `1.5s`. A bare number is refused: budgets are quoted
    in ms on desktops and in us on accelerators, so guessing the unit would search the wrong
    budget by 1000x without a word."""
    match = re.fullmatch(_NUMBER + r"\s*(s|ms|us|µs|ns)?", str(text).strip())
    if not match:
        raise BadInput(
            f"bad latency {text!r}: expected a number with a unit, e.g. 10ms, 800us, 1.5s"
        )
    if match.group(2) is None:
        number = match.group(1)
        raise BadInput(
            f"bad latency {text!r}: give a unit, e.g. {number}ms or {number}us (s, ms, us, ns)"
        )
    return _positive_finite(
        float(match.group(1)) * _TIME_MS[match.group(2)], f"bad latency {text!r}"
    )


def parse_count(text: str) -> float:
    """A count from `5.3M`, `400M`, `1.2G`, `350000`, `12k`."""
    match = re.fullmatch(_NUMBER + r"\s*([kKMGBT]?)", str(text).strip())
    if not match:
        raise BadInput(
            f"bad count {text!r}: expected a number with an optional k/M/G suffix, e.g. 5.3M"
        )
    return _positive_finite(float(match.group(1)) * _COUNT[match.group(2)], f"bad count {text!r}")


def _positive_finite(value: float, what: str) -> float:
    """`1e400` reads as inf and `1e-400` as 0: neither is a budget a user means."""
    if not math.isfinite(value):
        raise BadInput(f"{what}: too large (not a finite number)")
    if value <= 0:
        raise BadInput(f"{what}: must be positive")
    return value


def format_count(value: float) -> str:
    """`5288548` -> `5.29M`: short, for tables."""
    for suffix, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:.2f}{suffix}"
    return f"{value:g}"
