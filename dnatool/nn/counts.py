"""THE params / MACs counter of one layer, used by `profile` (table entries) and `search`.

Layers are built by timm's builder (`timm_adapter.build_op`, the same module as in the standalone
network) on the meta device and counted with torch's FlopCounterMode: exact counts without
allocating weights or running convolutions.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from dnatool.arch.space import Layer
from dnatool.arch.spec import parse_block


def meta_counts(build: Callable[[], Any], input_shape: tuple[int, ...]) -> tuple[int, int]:
    """(params, MACs) of a module built on the meta device: the same count as `count_params` /
    `count_macs` (tests check it) without allocating weights or running convolutions."""
    import torch

    from dnatool.nn.timm_adapter import count_params, flop_counter

    with torch.device("meta"):
        module = build().eval()
    counter = flop_counter()
    with counter, torch.no_grad():
        module(torch.zeros(*input_shape, device="meta"))
    return count_params(module), counter.get_total_flops() // 2


@functools.lru_cache(maxsize=4096)
def op_counts(in_chs: int, block: str, act: str, resolution: int) -> tuple[int, int]:
    """(params, MACs) of one timm block at one input size."""
    from dnatool.nn.timm_adapter import build_op

    return meta_counts(
        lambda: build_op(in_chs, parse_block(block), act), (1, in_chs, resolution, resolution)
    )


def layer_counts(layer: Layer, act: str) -> tuple[int, int]:
    """(params, MACs) of one layer of a space's walk."""
    return op_counts(layer.in_width, layer.spec.to_str(), act, layer.in_res)
