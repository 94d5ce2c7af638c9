"""Candidate op types: each declares its layer (block string, output width, stride) once.

A space's YAML names an op type (`ops: {type: mbconv, ...}`); the registry turns its fields into
ops. Everything downstream derives from `Op.layer`: the supernet module and the standalone network
(timm builds the block string), the latency-table key and the params / MACs count (of that same
block at its input width and resolution). Two kinds today: `mbconv` (timm `ir` blocks) and
`hytra` (BossNAS's ResConv / ResAtt, `rc` / `ra` blocks), `vit` (transformer layers, `vt` blocks,
one op per MLP ratio); a new kind plugs in with its `layer`.
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


@dataclass(frozen=True)
class ResConv:
    """HyTra's ResConv: a ResNet bottleneck (ratio `bottleneck`, kxk conv) after a strided
    depthwise kxk position-encoding conv (`rc` block, `nn/hybrid.py`). Takes no SE."""

    kernel: int
    bottleneck: float
    type: ClassVar[str] = "hytra"

    @property
    def name(self) -> str:
        return f"rc_k{self.kernel}"

    def layer(self, out: int, stride: int, se: float) -> BlockSpec:
        return BlockSpec(type="rc", out=out, kernel=self.kernel, stride=stride, exp=self.bottleneck)


@dataclass(frozen=True)
class ResAtt:
    """HyTra's ResAtt: the bottleneck with `heads`-head self-attention for its dense kxk conv
    (BoTNet), after the same position-encoding conv (`ra` block). Takes no SE."""

    heads: int
    kernel: int
    bottleneck: float
    type: ClassVar[str] = "hytra"

    @property
    def name(self) -> str:
        return f"ra_h{self.heads}"

    def layer(self, out: int, stride: int, se: float) -> BlockSpec:
        return BlockSpec(
            type="ra",
            out=out,
            kernel=self.kernel,
            stride=stride,
            exp=self.bottleneck,
            heads=self.heads,
        )


@dataclass(frozen=True)
class Downsample:
    """HyTra's downsampling before the first choice layer: a kxk conv-BN-act (timm `cn` block)
    that halves the scale; a fabric names it to let routes start at a smaller scale."""

    kernel: int
    type: ClassVar[str] = "hytra"

    @property
    def name(self) -> str:
        return f"down_k{self.kernel}"

    def layer(self, out: int, stride: int, se: float) -> BlockSpec:
        return BlockSpec(type="cn", out=out, kernel=self.kernel, stride=stride)


@dataclass(frozen=True)
class ViTLayer:
    """A transformer layer (`vt` block) with MLP ratio `mlp`; its heads follow its width
    (`width / head_dim`, DeiT's 64 or the DNA space's 32), so a cell's width fixes them."""

    mlp: float
    head_dim: int
    type: ClassVar[str] = "vit"

    @property
    def name(self) -> str:
        return f"m{self.mlp:g}"

    def layer(self, out: int, stride: int, se: float) -> BlockSpec:
        if stride != 1:
            raise ValueError("vit layers keep the token grid: blocks of a vit space have stride 1")
        if out % self.head_dim:
            raise ValueError(f"width {out} is not a multiple of the head dim {self.head_dim}")
        return BlockSpec(
            type="vt", out=out, kernel=1, stride=1, exp=self.mlp, heads=out // self.head_dim
        )


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


def _hytra_ops(data: dict[str, Any]) -> tuple[Op, ...]:
    """ResConv plus one ResAtt per head count: `{type: hytra, kernel, bottleneck, heads: [..]}`;
    `downsample: true` adds the 3x3 downsampling conv a fabric's routes may start with."""
    unknown = sorted(set(data) - {"type", "kernel", "bottleneck", "heads", "downsample"})
    if unknown:
        raise ValueError(f"unknown field {unknown[0]!r} in hytra ops")
    kernel, ratio = int(data.get("kernel", 3)), float(data.get("bottleneck", 0.25))
    heads = [int(h) for h in data.get("heads", [4])]
    if kernel < 1 or kernel % 2 == 0 or not 0 < ratio <= 1 or any(h < 1 for h in heads):
        raise ValueError("hytra ops need an odd kernel, a bottleneck in (0, 1] and heads >= 1")
    down = (Downsample(3),) if data.get("downsample", False) else ()
    return (ResConv(kernel, ratio), *(ResAtt(h, kernel, ratio) for h in heads), *down)


def _vit_ops(data: dict[str, Any]) -> tuple[Op, ...]:
    """One transformer layer per MLP ratio: `{type: vit, mlp_ratios: [..], head_dim: 32}`."""
    unknown = sorted(set(data) - {"type", "mlp_ratios", "head_dim"})
    if unknown:
        raise ValueError(f"unknown field {unknown[0]!r} in vit ops")
    ratios = [float(r) for r in data["mlp_ratios"]]
    head_dim = int(data.get("head_dim", 32))
    if not ratios or min(ratios) <= 0 or head_dim < 1:
        raise ValueError("vit ops need MLP ratios > 0 and a head_dim >= 1")
    return tuple(ViTLayer(r, head_dim) for r in ratios)


OP_TYPES: dict[str, Callable[[dict[str, Any]], tuple[Op, ...]]] = {
    "mbconv": _mbconv_ops,
    "hytra": _hytra_ops,
    "vit": _vit_ops,
}


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
