"""The only module that touches timm's private EfficientNet builder.

Supernet ops, LUT entries and the final network are all built here from the same block strings,
so a supernet path, its latency entry and the deployed layer are the same timm module type.
Hybrid layers (`rc` / `ra`, timm ByobNet blocks made by `nn/hybrid.py`; `vt` / `pe`, timm
vision-transformer modules made by `nn/vit.py`) enter timm's builder as 1x1
`cn` placeholders of the same width and stride and are swapped in right after, so a network keeps
timm's `EfficientNet` stem, stages, head, drop-path schedule and `feature_info`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import torch
from timm.layers import get_act_layer
from timm.models._efficientnet_blocks import SqueezeExcite
from timm.models._efficientnet_builder import EfficientNetBuilder, decode_arch_def
from timm.models.efficientnet import EfficientNet, EfficientNetFeatures
from torch import nn

from dnatool.arch.spec import HYBRID_TYPES, TOKEN_TYPES, ArchSpec, BlockSpec, stride_stages
from dnatool.errors import BadInput


def keep_channels(channels: int) -> int:
    """Widths in an ArchSpec are final: no rounding (scaling rounds explicitly, like timm)."""
    return channels


def act_layer(name: str) -> type[nn.Module]:
    return get_act_layer(name)


def is_hybrid(arch: ArchSpec) -> bool:
    return any(block.type in HYBRID_TYPES for stage in arch.stages for block in stage)


def _placeholder(block: BlockSpec) -> BlockSpec:
    """What timm's builder makes in place of a hybrid layer: a 1x1 conv of its width and stride."""
    if block.type not in HYBRID_TYPES:
        return block
    return BlockSpec(type="cn", out=block.out, repeat=block.repeat, kernel=1, stride=block.stride)


def _arch_def(stages: Sequence[Sequence[BlockSpec]]) -> list[list[str]]:
    return [[_placeholder(block).to_str() for block in stage] for stage in stages]


def _swap_hybrid(
    blocks: nn.Module,
    in_chs: int,
    stages: Sequence[Sequence[BlockSpec]],
    act: str,
    drop_path_rate: float,
) -> None:
    """Replace the placeholders in built stages by the hybrid layers, with the drop-path rate timm's
    builder gives the block at that position (`rate * index / count`)."""
    from dnatool.nn.hybrid import hybrid_layer
    from dnatool.nn.vit import token_layer

    count = sum(block.repeat for stage in stages for block in stage)
    index, chs = 0, in_chs
    for stage_module, stage in zip(blocks, stages, strict=True):
        position = 0
        for block in stage:
            for r in range(block.repeat):
                if block.type in HYBRID_TYPES:
                    one = dataclasses.replace(block, repeat=1, stride=block.stride if r == 0 else 1)
                    rate = drop_path_rate * index / count
                    stage_module[position] = (
                        token_layer(chs, one, rate)
                        if block.type in TOKEN_TYPES
                        else hybrid_layer(chs, one, act, rate)
                    )
                chs, position, index = block.out, position + 1, index + 1


class HybridEfficientNet(EfficientNet):
    """timm's EfficientNet with the hybrid layers of `hybrid` swapped in for their placeholders."""

    def __init__(self, *, hybrid: ArchSpec, drop_path_rate: float = 0.0, **kwargs) -> None:
        super().__init__(drop_path_rate=drop_path_rate, **kwargs)
        _swap_hybrid(self.blocks, hybrid.stem, hybrid.stages, hybrid.act, drop_path_rate)


class HybridEfficientNetFeatures(EfficientNetFeatures):
    """timm's EfficientNetFeatures with the hybrid layers swapped in; no dilated output stride
    (timm would dilate only the placeholders)."""

    def __init__(
        self, *, hybrid: ArchSpec, drop_path_rate: float = 0.0, output_stride: int = 32, **kwargs
    ) -> None:
        if output_stride != 32:
            raise BadInput(
                f"output_stride {output_stride}: networks with rc / ra layers have no dilated "
                "form; use output_stride 32"
            )
        super().__init__(drop_path_rate=drop_path_rate, **kwargs)
        _swap_hybrid(self.blocks, hybrid.stem, hybrid.stages, hybrid.act, drop_path_rate)


class TokenEfficientNetFeatures(nn.Module):
    """Features of a ViT arch: timm's EfficientNet body (stem, stages; parameter names as in the
    classifier and a `model.pt`) returning the levels of `backbones/levels.py`, which include the
    output of every stage that ends in a `vt` layer (all at the token grid's stride). No dilated
    form: `output_stride` must be at least the arch's total stride."""

    def __init__(
        self,
        *,
        hybrid: ArchSpec,
        out_indices: Sequence[int] = (0, 1, 2, 3, 4),
        output_stride: int = 32,
        drop_path_rate: float = 0.0,
        feature_location: str = "bottleneck",
        **kwargs: Any,
    ) -> None:
        from timm.models._features import FeatureInfo

        from dnatool.backbones.levels import feature_levels, level_positions

        super().__init__()
        total = 2 * math.prod(stage[0].stride for stage in hybrid.stages)
        if output_stride < total:
            raise BadInput(
                f"output_stride {output_stride}: a ViT arch has no dilated form; its stride is "
                f"{total}"
            )
        if feature_location != "bottleneck":
            raise BadInput("ViT archs give features at the end of their stages only")
        kwargs = {k: v for k, v in kwargs.items() if k not in ("num_classes", "num_features")}
        body = HybridEfficientNet(hybrid=hybrid, drop_path_rate=drop_path_rate, **kwargs)
        self.conv_stem, self.bn1, self.blocks = body.conv_stem, body.bn1, body.blocks
        levels, positions = feature_levels(hybrid), level_positions(hybrid)
        info = [
            dict(
                num_chs=level.channels,
                reduction=level.reduction,
                module="bn1" if position == 0 else f"blocks.{position - 1}",
                stage=position,
            )
            for level, position in zip(levels, positions, strict=True)
        ]
        self.feature_info = FeatureInfo(info, tuple(out_indices))
        self._stage_out_idx = {positions[i] for i in out_indices}

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.bn1(self.conv_stem(x))
        outs = [x] if 0 in self._stage_out_idx else []
        for i, stage in enumerate(self.blocks):
            x = stage(x)
            if i + 1 in self._stage_out_idx:
                outs.append(x)
        return outs


def is_vit(arch: ArchSpec) -> bool:
    return any(block.type == "vt" for stage in arch.stages for block in stage)


def model_classes(arch: ArchSpec) -> tuple[type[nn.Module], type[nn.Module]]:
    """(classifier class, feature class) that build `arch` from `efficientnet_kwargs(arch)`."""
    if is_vit(arch):
        return HybridEfficientNet, TokenEfficientNetFeatures
    if is_hybrid(arch):
        return HybridEfficientNet, HybridEfficientNetFeatures
    return EfficientNet, EfficientNetFeatures


def efficientnet_kwargs(arch: ArchSpec) -> dict:
    """Constructor arguments of `model_classes(arch)`: timm's EfficientNet(Features) arguments,
    hybrid layers as placeholders plus `hybrid=arch` for the classes that swap them in."""
    kwargs = dict(
        block_args=decode_arch_def(_arch_def(arch.stages)),
        in_chans=arch.in_chans,
        stem_size=arch.stem,
        act_layer=act_layer(arch.act),
        round_chs_fn=keep_channels,
    )
    return dict(kwargs, hybrid=arch) if is_hybrid(arch) else kwargs


def build_model(
    arch: ArchSpec,
    *,
    features_only: bool = False,
    out_indices: Sequence[int] = (0, 1, 2, 3, 4),
    num_classes: int | None = None,
    drop_rate: float = 0.0,
    drop_path_rate: float = 0.0,
) -> nn.Module:
    """timm's own `EfficientNet` (or `EfficientNetFeatures`) for an arch."""
    common = dict(efficientnet_kwargs(arch), drop_path_rate=drop_path_rate)
    classifier, features = model_classes(arch)
    if features_only:
        return features(out_indices=tuple(out_indices), **common)
    return classifier(
        num_classes=arch.num_classes if num_classes is None else num_classes,
        num_features=arch.head,
        drop_rate=drop_rate,
        **common,
    )


def build_layers(
    in_chs: int, blocks: Sequence[BlockSpec], act: str, drop_path_rate: float = 0.0
) -> nn.Sequential:
    """A run of layers (one timm block per BlockSpec) as the builder makes them inside a network.

    Same builder arguments as timm's `EfficientNet` (BatchNorm2d, timm's SqueezeExcite), so a layer
    built here has exactly the parameters of the same layer inside `build_model`; a later layer
    that strides opens a timm stage (`stride_stages`), as in the network.
    """
    builder = EfficientNetBuilder(
        round_chs_fn=keep_channels,
        act_layer=act_layer(act),
        norm_layer=nn.BatchNorm2d,
        se_layer=SqueezeExcite,
        drop_path_rate=drop_path_rate,
    )
    groups = stride_stages(blocks)
    stages = builder(in_chs, decode_arch_def(_arch_def(groups)))
    if any(block.type in HYBRID_TYPES for block in blocks):
        _swap_hybrid(stages, in_chs, groups, act, drop_path_rate)
    if len(stages) == 1:
        return stages[0]
    return nn.Sequential(*(layer for stage in stages for layer in stage))


def build_op(in_chs: int, block: BlockSpec, act: str) -> nn.Module:
    """One candidate op (a single timm block) with the given input width."""
    return build_layers(in_chs, [block], act)[0]


def count_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def flop_counter() -> Any:
    """torch's FlopCounterMode, plus the formula it lacks for the CPU kernel of scaled-dot-product
    attention (one counter for `count_macs` and the meta-device counts of `nn/counts.py`)."""
    from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

    def cpu_sdpa(query, key, value, *args, out_shape=None, **kwargs) -> int:
        return sdpa_flop_count(query, key, value)

    cpu_kernel = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu
    return FlopCounterMode(display=False, custom_mapping={cpu_kernel: cpu_sdpa})


@torch.no_grad()
def count_macs(module: nn.Module, input_shape: Sequence[int]) -> int:
    """Multiply-accumulates of one forward (torch FlopCounterMode counts 2 FLOPs per MAC)."""
    was_training = module.training
    module.eval()
    counter = flop_counter()
    with counter:
        module(torch.zeros(*input_shape))
    module.train(was_training)
    return counter.get_total_flops() // 2
