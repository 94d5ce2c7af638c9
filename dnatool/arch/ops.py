"""Candidate op types: each declares its layer (block string, output width, stride) once.

A space's YAML names an op type (`ops: {type: mbconv, ...}`); the registry turns its fields into
ops. Everything downstream derives from `Op.layer`: the supernet module and the standalone network
(timm builds the block string), the latency-table key and the params / MACs count (of that same
block at its input width and resolution). New layer kinds (ResConv / ResAtt, transformer layers)
plug in here with their own `layer`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

from dnatool.arch.spec import BlockSpec


class Op(Protocol):
    """What a candidate op declares: a display name and its layer at a given width and stride."""

    type: ClassVar[str]

    @property
    def name(self) -> str: ...

    def layer(self, out: int, stride: int, se: float) -> BlockSpec: ...


@dataclass(frozen=True)
class MBConv:
    """An inverted-residual MBConv (timm `ir` block) with kernel and expansion."""

    kernel: int
    exp: float
    type: ClassVar[str] = "mbconv"

    @property
    def name(self) -> str:
        return f"k{self.kernel}_e{self.exp:g}"

    def layer(self, out: int, stride: int, se: float) -> BlockSpec:
        return BlockSpec(type="ir", out=out, kernel=self.kernel, stride=stride, exp=self.exp, se=se)


def out_resolution(in_res: int, stride: int) -> int:
    """Spatial size after a layer of `stride` (SAME padding rounds up): the one rule for every op."""
    return math.ceil(in_res / stride)


def _mbconv_ops(data: dict[str, Any]) -> tuple[Op, ...]:
    unknown = sorted(set(data) - {"type", "kernels", "expansions"})
    if unknown:
        raise ValueError(f"unknown field {unknown[0]!r} in mbconv ops")
    kernels = [int(k) for k in data["kernels"]]
    exps = [float(e) for e in data["expansions"]]
    if not kernels or not exps or any(k < 1 or k % 2 == 0 for k in kernels) or min(exps) <= 0:
        raise ValueError("mbconv ops need odd kernels >= 1 and expansions > 0")
    return tuple(MBConv(k, e) for k in kernels for e in exps)


OP_TYPES: dict[str, Callable[[dict[str, Any]], tuple[Op, ...]]] = {"mbconv": _mbconv_ops}


def parse_ops(data: Any) -> tuple[Op, ...]:
    """The candidate ops of a space's `ops` mapping (type `mbconv` when not given)."""
    if not isinstance(data, dict):
        raise ValueError("ops must be a mapping")
    kind = str(data.get("type", "mbconv"))
    if kind not in OP_TYPES:
        raise ValueError(f"unknown op type {kind!r} (known: {', '.join(sorted(OP_TYPES))})")
    ops = OP_TYPES[kind](data)
    if len(set(ops)) != len(ops):
        raise ValueError("ops list the same candidate twice")
    return ops
