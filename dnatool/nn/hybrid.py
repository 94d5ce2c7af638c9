"""BossNAS's HyTra layers, ResConv (`rc`) and ResAtt (`ra`), from timm's ByobNet blocks.

ResConv is timm's ResNet bottleneck (`BottleneckBlock`: 1x1, kxk, 1x1 around an average-pool
shortcut); ResAtt is timm's BoTNet bottleneck (`SelfAttnBlock`) whose self-attention is timm's
`Attention2d` (1x1 q / k / v, multi-head, size-free, so one module serves every resolution; a
stride-2 layer average-pools after attention as BoTNet does). Both open with a depthwise kxk
position-encoding conv added to their input (CPVT's PEG, which HyTra uses in place of BoTNet's
relative position embedding). As in timm's ByobNet, the last BatchNorm of each layer starts at
zero, so a deep hybrid network starts as its shortcuts and trains stably from scratch.
"""

from __future__ import annotations

from functools import partial

import torch
from timm.layers import Attention2d, ConvNormAct, create_conv2d, get_act_layer, get_norm_act_layer
from timm.models.byobnet import BottleneckBlock, LayerFn, SelfAttnBlock
from torch import nn

from dnatool.arch.spec import BlockSpec


class PooledAttention(nn.Module):
    """Multi-head self-attention on a feature map, then a 2x2 average pool when strided."""

    def __init__(self, dim: int, stride: int = 1, heads: int = 1, device=None, dtype=None) -> None:
        super().__init__()
        self.attn = Attention2d(dim, num_heads=heads, device=device, dtype=dtype)
        self.pool = (
            nn.AvgPool2d(2, 2, ceil_mode=True, count_include_pad=False)
            if stride > 1
            else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.attn(x))


class HybridLayer(nn.Module):
    """A position-encoding depthwise conv (added to the input), then the ByobNet bottleneck."""

    def __init__(self, in_chs: int, block: BlockSpec, act: str, drop_path_rate: float = 0.0):
        super().__init__()
        if block.repeat != 1:
            raise ValueError("a HybridLayer is one layer; expand repeats first")
        self.pos = create_conv2d(in_chs, in_chs, block.kernel, depthwise=True, bias=True)
        act_layer = get_act_layer(act)
        layers = LayerFn(  # what ByobNet's get_layer_fns makes for BatchNorm and `act`
            conv_norm_act=partial(ConvNormAct, norm_layer=nn.BatchNorm2d, act_layer=act_layer),
            norm_act=get_norm_act_layer(nn.BatchNorm2d, act_layer=act_layer),
            act=act_layer,
        )
        common = dict(
            in_chs=in_chs,
            out_chs=block.out,
            stride=block.stride,
            bottle_ratio=block.exp,
            drop_path_rate=drop_path_rate,
        )
        if block.type == "rc":
            self.body = BottleneckBlock(kernel_size=block.kernel, layers=layers, **common)
        elif block.type == "ra":
            layers.self_attn = partial(PooledAttention, heads=block.heads)
            self.body = SelfAttnBlock(layers=layers, **common)
        else:
            raise ValueError(f"not a hybrid block type: {block.type!r}")
        self.body.init_weights(zero_init_last=True)  # ByobNet's default

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x + self.pos(x))
