"""Per-stage figures of a standalone network: what `arch show` prints and scripts read."""

from __future__ import annotations

from typing import Any

from dnatool.arch.spec import ArchSpec


def summarize(arch: ArchSpec, resolution: int | None = None) -> dict[str, Any]:
    """Params and MACs of timm's network of `arch`, total and per stage, at `resolution`."""
    from dnatool.nn.timm_adapter import build_model, count_macs

    res = resolution or arch.resolution
    model = build_model(arch)
    macs = count_macs(model, (1, arch.in_chans, res, res))
    size = -(-res // 2)
    stages = []
    for index, (stage, module) in enumerate(zip(arch.arch_def, model.blocks)):
        size = -(-size // arch.stages[index][0].stride)
        stages.append(
            {
                "index": index,
                "blocks": stage,
                "out_channels": arch.stages[index][-1].out,
                "stride": arch.stage_strides[index],
                "out_size": size,
                "params": sum(p.numel() for p in module.parameters()),
            }
        )
    return {
        "name": arch.name,
        "params": sum(p.numel() for p in model.parameters()),
        "macs": macs,
        "resolution": res,
        "stem": arch.stem,
        "head": arch.head,
        "num_classes": arch.num_classes,
        "stages": stages,
    }
