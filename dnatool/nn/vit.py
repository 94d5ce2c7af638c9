"""Vision-transformer layers on NCHW maps, from timm's own modules (`vt`, `pe` block strings).

A ViT space keeps the frame every other space uses (timm's EfficientNet stem, stages, head and
`feature_info`, swapped in like the hybrid layers), so a token layer takes and gives a B x C x H x W
map and flattens it to H x W tokens inside:

- `vt`: timm's `vision_transformer.Block` (pre-norm attention + MLP, DeiT's layer) of width `c`,
  `h` heads and MLP ratio `e`; a width change between blocks enters through a linear projection
  of the tokens (the width transition of a searched ViT).
- `pe`: timm's `PatchEmbed` (a k x k conv of stride k, no overlap) followed by the position-
  encoding generator of Twins (timm's `PosConv`, a depthwise 3x3 conv on the token grid): a
  position encoding that needs no fixed image size, so one network serves classification at its
  resolution and dense prediction at any crop, and a supernet block serves any token grid.

Weights start as timm's ViT does (truncated normal 0.02 for linear layers, zero biases).
"""

from __future__ import annotations

import torch
from timm.layers import PatchEmbed, trunc_normal_
from timm.models.twins import PosConv
from timm.models.vision_transformer import Block
from torch import nn

from dnatool.arch.spec import BlockSpec


def _init_linear(module: nn.Module) -> None:
    for m in module.modules():
        if isinstance(m, nn.Linear):
            trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def tokens(x: torch.Tensor) -> torch.Tensor:
    """B x C x H x W -> B x HW x C."""
    return x.flatten(2).transpose(1, 2)


def unflatten(t: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """B x HW x C -> B x C x H x W."""
    return t.transpose(1, 2).reshape(t.shape[0], t.shape[2], height, width)


class TokenLayer(nn.Module):
    """`vt`: one transformer layer on the tokens of a map (a projection first if widths differ)."""

    def __init__(self, in_chs: int, block: BlockSpec, drop_path_rate: float = 0.0) -> None:
        super().__init__()
        assert block.heads is not None
        self.proj = nn.Linear(in_chs, block.out) if in_chs != block.out else nn.Identity()
        self.block = Block(
            dim=block.out,
            num_heads=block.heads,
            mlp_ratio=block.exp,
            qkv_bias=True,
            drop_path=drop_path_rate,
        )
        _init_linear(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        return unflatten(self.block(self.proj(tokens(x))), height, width)


class PatchEmbedding(nn.Module):
    """`pe`: non-overlapping k x k patches to `c`-wide tokens, plus a conditional position
    encoding (Twins' PEG) that works at any grid size."""

    def __init__(self, in_chs: int, block: BlockSpec) -> None:
        super().__init__()
        self.patch = PatchEmbed(
            img_size=None,
            patch_size=block.stride,
            in_chans=in_chs,
            embed_dim=block.out,
            output_fmt="NCHW",
            strict_img_size=False,
        )
        self.pos = PosConv(block.out, block.out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch(x)
        height, width = x.shape[-2:]
        return unflatten(self.pos(tokens(x), (height, width)), height, width)


def token_layer(in_chs: int, block: BlockSpec, drop_path_rate: float = 0.0) -> nn.Module:
    """One `vt` / `pe` layer (repeat 1) with input width `in_chs`."""
    if block.repeat != 1:
        raise ValueError("a token layer is one layer; expand repeats first")
    if block.type == "vt":
        return TokenLayer(in_chs, block, drop_path_rate)
    if block.type == "pe":
        return PatchEmbedding(in_chs, block)
    raise ValueError(f"not a token block type: {block.type!r}")
