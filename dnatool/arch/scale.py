"""EfficientNet compound scaling of an ArchSpec (Tan & Le 2019; DNA+ scales its winners this way).

`--phi N` multiplies depth by 1.2^N, width by 1.1^N and resolution by 1.15^N; `--to bK` applies
EfficientNet-BK's published (width, depth, resolution) coefficients. Widths are rounded exactly as
timm's `round_channels` (divisor 8), per-stage depth is rounded up and spread over the stage's block
strings as timm's `_scale_stage_depth` does, and stem and head are scaled like timm's
EfficientNets, so EfficientNet-B0's arch scaled `--to b2` is exactly timm's `efficientnet_b2`.
Pure Python: no torch needed (it lives in `arch/`, which never imports torch).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from dnatool.arch.spec import ArchSpec, BlockSpec, make_divisible
from dnatool.errors import BadInput

ALPHA, BETA, GAMMA = 1.2, 1.1, 1.15  # depth, width, resolution bases of the compound rule
BASE_RESOLUTION = 224
EFFICIENTNET = {  # name: (width, depth, resolution), timm's efficientnet.py / the paper
    "b0": (1.0, 1.0, 224),
    "b1": (1.0, 1.1, 240),
    "b2": (1.1, 1.2, 260),
    "b3": (1.2, 1.4, 300),
    "b4": (1.4, 1.8, 380),
    "b5": (1.6, 2.2, 456),
    "b6": (1.8, 2.6, 528),
    "b7": (2.0, 3.1, 600),
}


def round_channels(channels: int, multiplier: float = 1.0, divisor: int = 8) -> int:
    """timm's `round_channels` (a zero multiplier leaves the width alone, as in timm)."""
    if not multiplier:
        return channels
    return make_divisible(channels * multiplier, divisor)


def scale_stage_depth(repeats: list[int], multiplier: float) -> list[int]:
    """timm's `_scale_stage_depth` ('ceil'): scale the stage's total repeats, then spread the
    new total over its block strings proportionally, last string first (so searched stages of
    one r1 string per layer grow like a multi-string timm stage)."""
    total = sum(repeats)
    remaining = int(math.ceil(total * multiplier))
    scaled = []
    for repeat in reversed(repeats):
        share = max(1, round(repeat / total * remaining))
        scaled.append(share)
        total -= repeat
        remaining -= share
    return scaled[::-1]


def _scaled_block(block: BlockSpec, repeat: int, width: float) -> BlockSpec:
    """A block at `repeat` and its width x `width`; a transformer layer keeps its head dim and
    rounds its width to whole heads (DeiT's Ti / S / B grow heads with width at head dim 64); a
    patch embedding stays one layer."""
    if block.type == "pe":  # the patch embedding is the network's entry, as the stem
        return dataclasses.replace(block, out=round_channels(block.out, width))
    if block.type == "vt" and block.heads and width:
        head_dim = block.out // block.heads
        heads = max(1, round(block.out * width / head_dim))
        return dataclasses.replace(block, repeat=repeat, out=heads * head_dim, heads=heads)
    return dataclasses.replace(block, repeat=repeat, out=round_channels(block.out, width))


def scale_arch(
    arch: ArchSpec, width: float, depth: float, resolution: int, name: str | None = None
) -> ArchSpec:
    """`arch` with every width x `width` (timm rounding) and every stage's depth x `depth`."""
    for label, value in (("width", width), ("depth", depth)):
        if not (isinstance(value, (int, float)) and value > 0 and math.isfinite(value)):
            raise BadInput(f"{label} multiplier must be a positive number, got {value!r}")
    stages = []
    for stage in arch.stages:
        repeats = scale_stage_depth([block.repeat for block in stage], depth)
        stages.append(
            tuple(_scaled_block(block, r, width) for block, r in zip(stage, repeats, strict=True))
        )
    meta: dict[str, Any] = {
        **arch.meta,
        "scaled_from": arch.name,
        "width_mult": width,
        "depth_mult": depth,
    }
    return arch.replace(
        stages=tuple(stages),
        stem=round_channels(arch.stem, width),
        head=round_channels(arch.head, width),
        resolution=resolution,
        name=name or f"{arch.name}-scaled",
        meta=meta,
    )


def scale_phi(arch: ArchSpec, phi: float) -> ArchSpec:
    """Compound scaling: depth 1.2^phi, width 1.1^phi, resolution 1.15^phi (nearest pixel)."""
    if not (isinstance(phi, (int, float)) and math.isfinite(phi)) or phi < 0:
        raise BadInput(f"phi must be a number >= 0, got {phi!r}")
    resolution = max(1, round(arch.resolution * GAMMA**phi))
    return scale_arch(arch, BETA**phi, ALPHA**phi, resolution, name=f"{arch.name}-phi{phi:g}")


def scale_to(arch: ArchSpec, target: str) -> ArchSpec:
    """EfficientNet-`target`'s coefficients; the resolution is the published one for a 224 px arch,
    and the same ratio (e.g. 260/224 for b2) for an arch at another resolution."""
    key = target.lower().removeprefix("efficientnet_").removeprefix("efficientnet-")
    if key not in EFFICIENTNET:
        raise BadInput(f"unknown scale target {target!r} (known: {', '.join(EFFICIENTNET)})")
    width, depth, published = EFFICIENTNET[key]
    resolution = max(1, round(arch.resolution * published / BASE_RESOLUTION))
    return scale_arch(arch, width, depth, resolution, name=f"{arch.name}-{key}")
