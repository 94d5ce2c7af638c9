"""The only module that touches timm's private EfficientNet builder.

Supernet ops, LUT entries and the final network are all built here from the same block strings,
so a supernet path, its latency entry and the deployed layer are the same timm module type.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from timm.layers import get_act_layer
from timm.models._efficientnet_blocks import SqueezeExcite
from timm.models._efficientnet_builder import EfficientNetBuilder, decode_arch_def
from timm.models.efficientnet import EfficientNet, EfficientNetFeatures
from torch import nn

from dnatool.arch.spec import ArchSpec, BlockSpec


def keep_channels(channels: int) -> int:
    """Widths in an ArchSpec are final: no rounding (scaling rounds explicitly, like timm)."""
    return channels


def act_layer(name: str) -> type[nn.Module]:
    return get_act_layer(name)


def efficientnet_kwargs(arch: ArchSpec) -> dict:
    """Constructor arguments shared by timm's EfficientNet and EfficientNetFeatures for `arch`."""
    return dict(
        block_args=decode_arch_def(arch.arch_def),
        in_chans=arch.in_chans,
        stem_size=arch.stem,
        act_layer=act_layer(arch.act),
        round_chs_fn=keep_channels,
    )


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
    if features_only:
        return EfficientNetFeatures(out_indices=tuple(out_indices), **common)
    return EfficientNet(
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
    built here has exactly the parameters of the same layer inside `build_model`.
    """
    builder = EfficientNetBuilder(
        round_chs_fn=keep_channels,
        act_layer=act_layer(act),
        norm_layer=nn.BatchNorm2d,
        se_layer=SqueezeExcite,
        drop_path_rate=drop_path_rate,
    )
    stages = builder(in_chs, decode_arch_def([[b.to_str() for b in blocks]]))
    return stages[0]


def build_op(in_chs: int, block: BlockSpec, act: str) -> nn.Module:
    """One candidate op (a single timm block) with the given input width."""
    return build_layers(in_chs, [block], act)[0]


def count_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@torch.no_grad()
def count_macs(module: nn.Module, input_shape: Sequence[int]) -> int:
    """Multiply-accumulates of one forward (torch FlopCounterMode counts 2 FLOPs per MAC)."""
    from torch.utils.flop_counter import FlopCounterMode

    was_training = module.training
    module.eval()
    counter = FlopCounterMode(display=False)
    with counter:
        module(torch.zeros(*input_shape))
    module.train(was_training)
    return counter.get_total_flops() // 2
