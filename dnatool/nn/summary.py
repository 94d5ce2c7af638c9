"""Per-stage figures of a standalone network: what `arch show` prints and scripts read.

Counted on the meta device (no weights allocated, no convolution run), so a large or absurd arch
costs the same few milliseconds as EfficientNet-B0 and never reaches the allocator.
"""

from __future__ import annotations

from typing import Any

from dnatool.arch.spec import ArchSpec


def summarize(arch: ArchSpec, resolution: int | None = None) -> dict[str, Any]:
    """Params and MACs of timm's network of `arch`, total and per stage, at `resolution`."""
    res = resolution or arch.resolution
    model, macs = _meta_model_and_macs(arch, res)
    return {
        "name": arch.name,
        "params": _params(model),
        "macs": macs,
        "resolution": res,
        "stem": arch.stem,
        "head": arch.head,
        "num_classes": arch.num_classes,
        "stages": _stages(arch, model, res),
    }


def _meta_model_and_macs(arch: ArchSpec, res: int) -> tuple[Any, int]:
    """timm's network built on the meta device and its MACs of one forward on a meta input.

    Same figures as `count_macs` on a real network: FlopCounterMode counts shapes, not values.
    """
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from dnatool.nn.timm_adapter import build_model

    with torch.device("meta"):
        model = build_model(arch).eval()
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(torch.zeros(1, arch.in_chans, res, res, device="meta"))
    return model, counter.get_total_flops() // 2


def _params(module: Any) -> int:
    return sum(p.numel() for p in module.parameters())


def _stages(arch: ArchSpec, model: Any, res: int) -> list[dict[str, Any]]:
    """One row per stage: its block strings, output width / stride / size and params."""
    size = -(-res // 2)
    stages = []
    for index, (blocks, module) in enumerate(zip(arch.arch_def, model.blocks, strict=True)):
        size = -(-size // arch.stages[index][0].stride)
        stages.append(
            {
                "index": index,
                "blocks": blocks,
                "out_channels": arch.stages[index][-1].out,
                "stride": arch.stage_strides[index],
                "out_size": size,
                "params": _params(module),
            }
        )
    return stages
