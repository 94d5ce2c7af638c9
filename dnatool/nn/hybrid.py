"""BossNAS's HyTra layers, ResConv (`rc`) and ResAtt (`ra`), as timm ByobNet blocks.

BossNAS (Sec. 4) puts a depthwise position-encoding conv between the bottleneck's input projection
and its self-attention, makes that conv do the downsampling, and does the same in ResConv, so the
main weights of a layer do not depend on its stride. Both layers are timm's own blocks:

- ResAtt: timm's BoTNet bottleneck `SelfAttnBlock` with `extra_conv` (1x1, depthwise kxk with the
  stride, self-attention, 1x1); the attention is timm's `Attention2d` (1x1 q / k / v,
  multi-head, size-free, so one module serves every resolution).
- ResConv: timm's ResNet `BottleneckBlock` whose kxk conv is depthwise (the position conv, with
  the stride) and whose attention slot holds the bottleneck's dense kxk conv (1x1, depthwise kxk,
  dense kxk, 1x1).

As ByobNet does, the last BatchNorm of each layer starts at zero, so a deep hybrid network starts
as its shortcuts and trains stably from scratch.
"""

from __future__ import annotations

from functools import partial

from timm.layers import Attention2d, ConvNormAct, get_act_layer, get_norm_act_layer
from timm.models.byobnet import BottleneckBlock, LayerFn, SelfAttnBlock
from torch import nn

from dnatool.arch.spec import BlockSpec


def _attention(dim: int, stride: int = 1, heads: int = 1, device=None, dtype=None) -> nn.Module:
    """The self-attention SelfAttnBlock asks for (its position conv already strided)."""
    if stride != 1:
        raise ValueError("the position conv strides; attention runs at stride 1")
    return Attention2d(dim, num_heads=heads, device=device, dtype=dtype)


def hybrid_layer(in_chs: int, block: BlockSpec, act: str, drop_path_rate: float = 0.0) -> nn.Module:
    """One `rc` / `ra` layer (repeat 1) with input width `in_chs`, as timm's ByobNet builds it."""
    if block.repeat != 1:
        raise ValueError("a hybrid layer is one layer; expand repeats first")
    act_layer = get_act_layer(act)
    conv_norm_act = partial(ConvNormAct, norm_layer=nn.BatchNorm2d, act_layer=act_layer)
    layers = LayerFn(  # what ByobNet's get_layer_fns makes for BatchNorm and `act`
        conv_norm_act=conv_norm_act,
        norm_act=get_norm_act_layer(nn.BatchNorm2d, act_layer=act_layer),
        act=act_layer,
    )
    common = dict(
        in_chs=in_chs,
        out_chs=block.out,
        kernel_size=block.kernel,
        stride=block.stride,
        bottle_ratio=block.exp,
        group_size=1,
        drop_path_rate=drop_path_rate,
    )
    if block.type == "rc":
        layers.attn = partial(_dense_conv, kernel=block.kernel, conv_norm_act=conv_norm_act)
        module: nn.Module = BottleneckBlock(layers=layers, **common)
    elif block.type == "ra":
        layers.self_attn = partial(_attention, heads=block.heads)
        module = SelfAttnBlock(layers=layers, extra_conv=True, **common)
    else:
        raise ValueError(f"not a hybrid block type: {block.type!r}")
    module.init_weights(zero_init_last=True)
    return module


def _dense_conv(channels: int, kernel: int, conv_norm_act, device=None, dtype=None) -> nn.Module:
    """ResConv's dense kxk conv, in BottleneckBlock's attention slot (called with the channels)."""
    return conv_norm_act(channels, channels, kernel, device=device, dtype=dtype)
