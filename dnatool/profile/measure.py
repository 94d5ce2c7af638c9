"""Measuring ops as they run inside networks: the protocol, the plan of networks and the run.

Protocol (timed by `dnatool.runtime.timing`): warm-up runs, then rounds of timed runs until the
median moves less than `rel_tol` (or `max_reps`); networks are measured in shuffled order; a
reference network is re-measured every `reference_every` networks and its spread is stored as
the run's drift. Whole networks (calibration, validation, verified winners) are measured in
`pair_rounds` rounds alternating with the reference network (A B A B), so the machine's drift
is divided out round by round. Every measured network is written to the table at once
(atomically), so a killed run resumes with only the missing networks.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from torch import nn

from dnatool.arch.space import Choice, SearchSpace
from dnatool.profile.samples import SampleKey
from dnatool.runtime.timing import Paired, Timing, TimingProtocol, time_paired, time_runner

__all__ = ["Paired", "Protocol", "Timing", "plan", "time_paired", "time_runner"]


MINIMUM = {"min_reps": 1, "max_reps": 1, "round_reps": 1, "pair_rounds": 1, "calibration_nets": 3}


@dataclass(frozen=True)
class Protocol(TimingProtocol):
    """The timing protocol plus what a table measures: samples, calibration networks, seed."""

    samples_per_block: int = 0  # 0: 2 * (ops to solve) + 4, capped by the paths that exist
    calibration_nets: int = 18
    reference_every: int = 10
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            **dataclasses.asdict(self),
            "statistic": "median; whole networks: median over rounds of round medians",
            "order": "shuffled",
            "context": "block paths at their real input shape, minus an empty network of that input",
            "calibration": "whole networks spread over the space's MACs range, measured A B A B "
            "with the reference network",
        }

    @classmethod
    def quick(cls, seed: int = 0) -> Protocol:
        """`profile --quick`: few repetitions and samples, for a smoke run or the demo, not for a
        table to search with."""
        return cls(
            warmup=2,
            min_reps=5,
            max_reps=30,
            round_reps=5,
            min_seconds=0.0,
            samples_per_block=10,
            calibration_nets=6,
            pair_rounds=5,
            seed=seed,
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Protocol:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    def with_overrides(self, items: tuple[str, ...] | list[str]) -> Protocol:
        """This protocol with `key=value` fields replaced (`-o`); bad input in one line."""
        import difflib

        from dnatool.errors import BadInput

        fields = {f.name: f for f in dataclasses.fields(self)}
        values = dataclasses.asdict(self)
        for item in items:
            key, sep, text = item.partition("=")
            key = key.strip()
            if not sep or not key:
                raise BadInput(f"override {item!r} is not key=value")
            if key not in fields:
                close = difflib.get_close_matches(key, list(fields), n=1)
                hint = (
                    f"; did you mean {close[0]!r}?" if close else f" (fields: {', '.join(fields)})"
                )
                raise BadInput(f"unknown protocol field {key!r}{hint}")
            kind = type(values[key])
            try:
                value = (
                    kind(float(text)) if kind is int and float(text).is_integer() else kind(text)
                )
            except ValueError:
                raise BadInput(
                    f"protocol field {key!r} must be {kind.__name__}, got {text!r}"
                ) from None
            least = MINIMUM.get(key, 0)
            if not value >= least:
                raise BadInput(f"protocol field {key!r} must be >= {least}, got {text!r}")
            values[key] = value
        return Protocol(**values)


# ---- the networks that are measured -------------------------------------------------------------


def _pool() -> nn.Module:
    return nn.AdaptiveAvgPool2d(1)


def block_net(
    space: SearchSpace, k: int, choice: Choice, batch: int, in_width: int | None = None
) -> tuple[nn.Module, tuple[int, ...]]:
    """One path of block k at its real input shape (width `in_width`), its output pooled."""
    from dnatool.nn.timm_adapter import build_layers

    layers = space.path_layers(k, choice, in_width)
    width, res = layers[0].in_width, layers[0].in_res
    module = build_layers(width, [layer.spec for layer in layers], space.act)
    return nn.Sequential(module, _pool()), (batch, width, res, res)


def stem_input(space: SearchSpace, batch: int) -> tuple[int, ...]:
    return (batch, space.in_chans, space.resolution, space.resolution)


def head_input(space: SearchSpace, batch: int, width: int | None = None) -> tuple[int, ...]:
    width, res = space.head_input(width)
    return (batch, width, res, res)


@functools.lru_cache(maxsize=8)
def _any_model(space: SearchSpace, last_width: int | None = None) -> nn.Module:
    """Some network of the space (its last block ending in `last_width`): stem and head donor."""
    from dnatool.nn.timm_adapter import build_model

    return build_model(space.to_arch(space.example(last_width)))


def stem_net(space: SearchSpace, batch: int) -> tuple[nn.Module, tuple[int, ...]]:
    """conv_stem + bn1 + the fixed stages of timm's EfficientNet, output pooled."""
    model = copy.deepcopy(_any_model(space))  # backends move modules to their device: never share
    return nn.Sequential(
        model.conv_stem, model.bn1, *model.blocks[: len(space.fixed)], _pool()
    ), stem_input(space, batch)


def head_net(
    space: SearchSpace, batch: int, width: int | None = None
) -> tuple[nn.Module, tuple[int, ...]]:
    """conv_head + bn2 + global pool + classifier of timm's EfficientNet, after `width`."""
    width = space.head_input(width)[0]
    model = copy.deepcopy(_any_model(space, width))
    return nn.Sequential(
        model.conv_head, model.bn2, model.global_pool, model.classifier
    ), head_input(space, batch, width)


def whole_net(
    space: SearchSpace, choices: list[Choice], batch: int
) -> tuple[nn.Module, tuple[int, ...]]:
    from dnatool.nn.timm_adapter import build_model

    return build_model(space.to_arch(choices)), stem_input(space, batch)


def empty_net(shape: tuple[int, ...]) -> tuple[nn.Module, tuple[int, ...]]:
    """Only the pooling: the per-call cost (input copy, dispatch) of a network with this input."""
    return nn.Sequential(_pool()), shape


# ---- the plan -------------------------------------------------------------------------------------


def block_samples(
    space: SearchSpace, k: int, n: int, rng: np.random.Generator, in_width: int | None = None
) -> list[Choice]:
    """Distinct paths of block k entered at `in_width`: one path per op index and cell first
    (coverage: every layer key appears, never cut), then random ones up to `n`. In a fabric only
    the cells entered at that width, with the ops each layer's scale allows."""
    block = space.blocks[k]
    cells = _entered(space, k, in_width)
    chosen = list(dict.fromkeys(_coverage(space, k, cells)))
    seen = set(chosen)
    for _ in range(50 * n):
        if len(chosen) >= min(n, sum(block.cell_paths(c) for c in cells)):
            break
        cell = cells[int(rng.integers(len(cells)))]
        if block.cells[cell].options:
            options = block.layer_options(cell)
            path = tuple(int(o[rng.integers(len(o))]) for o in options)
        else:
            path = tuple(int(v) for v in rng.integers(0, len(block.ops), block.cells[cell].layers))
        choice = (cell, path)
        if choice not in seen:
            seen.add(choice)
            chosen.append(choice)
    return chosen


def _entered(space: SearchSpace, k: int, in_width: int | None) -> list[int]:
    """The cells of block k that input width `in_width` enters (all of them when None)."""
    return [
        c
        for c in range(len(space.blocks[k].cells))
        if in_width is None or in_width in space.cell_in_widths(k, c)
    ]


def _coverage(space: SearchSpace, k: int, cells: list[int]) -> list[Choice]:
    """Per cell, path j takes each layer's j-th allowed op (cycling): every layer key appears."""
    block = space.blocks[k]
    return [
        (c, tuple(o[j % len(o)] for o in block.layer_options(c)))
        for c in cells
        for j in range(len(block.ops))
    ]


def samples_per_block(
    space: SearchSpace, k: int, protocol: Protocol, in_width: int | None = None
) -> int:
    """Samples of block k on input width `in_width`: twice its distinct layer keys, plus 4; a
    protocol's own count is raised to the keys plus 2 (fewer cannot determine every entry)."""
    from dnatool.profile.lut import layer_keys

    block = space.blocks[k]
    cells = _entered(space, k, in_width)
    keys = {
        key
        for choice in _coverage(space, k, cells)
        for key in layer_keys(space, k, choice, in_width=in_width)
    }
    wanted = (
        max(protocol.samples_per_block, len(keys) + 2)
        if protocol.samples_per_block
        else 2 * len(keys) + 4
    )
    return min(wanted, sum(block.cell_paths(c) for c in cells))


def calibration_choices(space: SearchSpace, protocol: Protocol) -> list[list[Choice]]:
    """Whole networks for the calibration, spread evenly over the space's MACs range (its two
    extremes left out, so that validation's fastest and slowest networks are not among them)."""
    from dnatool.profile.strata import mac_costs, stratified

    return stratified(space, mac_costs(space), protocol.calibration_nets, protocol.seed, ends=False)


def reference_choices(space: SearchSpace, protocol: Protocol) -> list[Choice]:
    return space.sample(np.random.default_rng([protocol.seed, 2]))


def plan(
    space: SearchSpace, protocol: Protocol, batch: int
) -> dict[str, Callable[[], tuple[nn.Module, tuple[int, ...]]]]:
    """Every network to measure, by its sample key (stable, so a resumed run finds what is done)."""
    units: dict[str, Callable[[], tuple[nn.Module, tuple[int, ...]]]] = {
        str(SampleKey.stem()): lambda: stem_net(space, batch),
        str(SampleKey.stem(overhead=True)): lambda: empty_net(stem_input(space, batch)),
    }
    for width in space.in_widths(len(space.blocks)):
        units[str(SampleKey.head(space, width))] = lambda w=width: head_net(space, batch, w)
        units[str(SampleKey.head(space, width, overhead=True))] = lambda w=width: empty_net(
            head_input(space, batch, w)
        )
    rng = np.random.default_rng([protocol.seed, 0])
    for k in range(len(space.blocks)):
        for width in space.in_widths(k):
            res = space.block_in_resolution(k, width=width)
            shape = (batch, width, res, res)
            units[str(SampleKey.block_input(space, k, width))] = lambda shape=shape: empty_net(
                shape
            )
            n = samples_per_block(space, k, protocol, width)
            for choice in block_samples(space, k, n, rng, width):
                key = str(SampleKey.path(space, k, choice, width))
                units[key] = lambda k=k, choice=choice, w=width: block_net(
                    space, k, choice, batch, w
                )
    for choices in calibration_choices(space, protocol):
        units[str(SampleKey.net(choices))] = lambda choices=choices: whole_net(
            space, choices, batch
        )
    return units


def measure_unit(
    backend: Any, build: Callable[[], tuple[nn.Module, tuple[int, ...]]], protocol: Protocol
) -> Timing:
    module, shape = build()
    return time_runner(backend.prepare(module, shape), protocol)


def elapsed(start: float) -> float:
    return round(time.perf_counter() - start, 2)
