"""Feature levels of an arch, computed from its block strings without building the network.

Mirrors timm's `EfficientNetBuilder` rule (feature_location='bottleneck'): a level is taken at the
stem when the first block has stride 2, and at the end of every stage followed by a stride-2 stage
(and the last stage). Level 0 is then the stride-2 level, 1 stride 4, ... (contracts.md). With an
`output_stride` below 32, later strides become dilations and reductions stop growing, as in timm.
Configs use this to write every `in_channels` without importing torch.

A ViT arch (`vt` layers) keeps one token grid after its patch embedding, so strides alone would
give it one level; there, every stage that ends in a `vt` layer (each searched block) is a level
too, all at the grid's stride, as mmseg's ViT backbone hands out several layers' outputs (a neck
such as `MultiLevelNeck` then makes the pyramid).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from dnatool.arch.spec import ArchSpec
from dnatool.errors import BadInput

OUTPUT_STRIDES = (8, 16, 32)


@dataclass(frozen=True)
class Level:
    index: int
    channels: int
    reduction: int


def feature_levels(arch: ArchSpec, output_stride: int = 32) -> list[Level]:
    """Channels and reduction of every feature level of `arch` (timm's `feature_info` order)."""
    return [Level(i, c, r) for i, (c, r, _) in enumerate(_levels(arch, output_stride))]


def level_positions(arch: ArchSpec, output_stride: int = 32) -> list[int]:
    """Where each level is taken: 0 after the stem, k + 1 after stage k."""
    return [position for _, _, position in _levels(arch, output_stride)]


def _levels(arch: ArchSpec, output_stride: int) -> list[tuple[int, int, int]]:
    check_output_stride(output_stride)
    levels: list[tuple[int, int, int]] = []
    stride = 2
    if arch.stages[0][0].stride > 1:
        levels.append((arch.stem, stride, 0))
    for k, stage in enumerate(arch.stages):
        # timm strides only the first block of a stage (the builder sets later strides to 1)
        if stage[0].stride > 1 and stride * stage[0].stride <= output_stride:
            stride *= stage[0].stride
        last = k + 1 == len(arch.stages)
        if last or arch.stages[k + 1][0].stride > 1 or stage[-1].type == "vt":
            levels.append((stage[-1].out, stride, k + 1))
    return levels


def check_output_stride(output_stride: int) -> None:
    if output_stride not in OUTPUT_STRIDES:
        raise BadInput(f"output_stride must be one of {OUTPUT_STRIDES}, got {output_stride!r}")


def check_out_indices(levels: Sequence[Level], out_indices: Sequence[int]) -> tuple[int, ...]:
    """Validate `out_indices` against the arch's levels; the error lists what exists."""
    indices = tuple(int(i) for i in out_indices)
    available = ", ".join(f"{lv.index} (stride {lv.reduction}, {lv.channels} ch)" for lv in levels)
    if not indices or len(set(indices)) != len(indices) or list(indices) != sorted(indices):
        raise BadInput(
            f"out_indices must be distinct increasing level indices, got {list(indices)}"
        )
    if indices[0] < 0 or indices[-1] >= len(levels):
        raise BadInput(
            f"out_indices {list(indices)} out of range; this arch has levels {available}"
        )
    return indices


def default_out_indices(levels: Sequence[Level], count: int = 4) -> tuple[int, ...]:
    """The last `count` levels of stride >= 4 (EfficientNet-B0: (1, 2, 3, 4), as ResNet's C2..C5)."""
    usable = [lv.index for lv in levels if lv.reduction >= 4]
    if not usable:
        raise BadInput("this arch has no feature level of stride >= 4 (too few stride-2 stages)")
    return tuple(usable[-count:])
