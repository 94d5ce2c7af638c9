"""A teacher network cut at stage boundaries: one forward yields every block's (input, target).

DNA (CVPR 2020, Sec. 3.2) supervises block k of the student with the teacher's block k output
Y_k, feeding it the teacher's Y_{k-1}. The cut is chosen where the teacher's stage outputs have the
same stride as the search space's block outputs; when several teacher stages share a stride, the
deepest ones are used, matching the space's blocks in order (tf_efficientnet_b7 at 224 gives
48x56x56, 80x28x28, 160x14x14, 224x14x14, 384x7x7, 640x7x7 for the DNA space).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from dnatool.arch.space import SearchSpace
from dnatool.errors import BadInput, RunFailure


@dataclass(frozen=True)
class TeacherCut:
    """Which teacher stages supervise which block, and the target shapes (C, H, W)."""

    stages: tuple[int, ...]
    shapes: tuple[tuple[int, int, int], ...]

    def describe(self) -> list[dict]:
        return [
            {"block": k, "teacher_stage": s, "shape": list(shape)}
            for k, (s, shape) in enumerate(zip(self.stages, self.shapes))
        ]


class Teacher(nn.Module):
    """Wraps a timm EfficientNet-family model; `forward(x)` returns the cut stage outputs."""

    def __init__(self, model: nn.Module, cut: TeacherCut, name: str) -> None:
        super().__init__()
        self.model, self.cut, self.name = model, cut, name
        self.requires_grad_(False)

    def train(self, mode: bool = True) -> Teacher:
        """The teacher is always in eval mode (frozen BN statistics)."""
        return super().train(False)

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        outputs = stage_outputs(self.model, images, last=max(self.cut.stages))
        return [outputs[s] for s in self.cut.stages]


def stage_outputs(
    model: nn.Module, images: torch.Tensor, last: int | None = None
) -> list[torch.Tensor]:
    """Outputs of every stage (`model.blocks[i]`) of an EfficientNet-family model."""
    x = model.bn1(model.conv_stem(images))
    outputs = []
    for index, stage in enumerate(model.blocks):
        x = stage(x)
        outputs.append(x)
        if last is not None and index >= last:
            break
    return outputs


def find_cut(model: nn.Module, space: SearchSpace, resolution: int | None = None) -> TeacherCut:
    """Match the space's block output strides to the teacher's stages (deepest per stride)."""
    if not all(hasattr(model, name) for name in ("conv_stem", "bn1", "blocks")):
        raise BadInput(
            "teacher must be a timm EfficientNet-family model (conv_stem, bn1, blocks stages)"
        )
    res = resolution or space.resolution
    was_training = model.training
    model.eval()
    with torch.no_grad():
        outs = stage_outputs(model, torch.zeros(1, space.in_chans, res, res))
    model.train(was_training)
    by_size: dict[int, list[int]] = {}
    for index, out in enumerate(outs):
        by_size.setdefault(out.shape[-1], []).append(index)
    wanted = [space.block_out_resolution(k, res) for k in range(len(space.blocks))]
    return _assign(outs, by_size, wanted)


def _assign(
    outs: list[torch.Tensor], by_size: dict[int, list[int]], wanted: list[int]
) -> TeacherCut:
    stages: list[int] = []
    for size in sorted(set(wanted), reverse=True):
        need = wanted.count(size)
        have = by_size.get(size, [])
        if len(have) < need:
            raise BadInput(
                f"teacher has {len(have)} stage(s) with {size}x{size} outputs, the space needs {need}"
            )
        stages += have[-need:]
    stages = sorted(stages)
    shapes = tuple(tuple(int(d) for d in outs[s].shape[1:]) for s in stages)
    return TeacherCut(stages=tuple(stages), shapes=shapes)


def load_teacher_model(
    name: str, weights: str | None = None, pretrained: bool = True
) -> tuple[nn.Module, str]:
    """A dnatool model run, or a timm model (`name`, `timm:name`, `name.tag`) with weights from a
    local file or timm's download; the one teacher loader of training and retraining (KD)."""
    import timm

    from dnatool.nn.model_run import is_model_run, load_model

    if is_model_run(name) or Path(name).suffix == ".pt" and Path(name).is_file():
        loaded = load_model(name)
        return loaded.model, f"dnatool model run {loaded.source}"
    bare = name.removeprefix("timm:")
    if not timm.is_model(bare.split(".")[0]):
        raise BadInput(f"teacher {name!r} is neither a dnatool model run nor a timm model name")
    if weights is not None:
        if not Path(weights).is_file():
            raise BadInput(f"teacher weights file not found: {weights}")
        model = timm.create_model(
            bare, pretrained=True, pretrained_cfg_overlay={"file": str(weights)}
        )
        return model, f"timm {bare} with weights {weights}"
    if not pretrained:
        return timm.create_model(bare, pretrained=False), f"timm {bare} (random init, NOT trained)"
    try:
        return timm.create_model(bare, pretrained=True), f"timm {bare} (pretrained download)"
    except Exception as exc:  # network / hub errors come in many types
        raise RunFailure(
            f"could not get pretrained weights for teacher {bare!r} ({type(exc).__name__}); "
            "offline? pass a local file with -o teacher_weights=PATH"
        ) from None


def build_teacher(
    name: str,
    space: SearchSpace,
    weights: str | None = None,
    pretrained: bool = True,
    resolution: int | None = None,
) -> Teacher:
    model, description = load_teacher_model(name, weights, pretrained)
    return Teacher(model.eval(), find_cut(model, space, resolution), description)
