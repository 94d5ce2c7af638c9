"""A teacher network cut at stage boundaries: one forward yields every block's (input, target).

DNA (CVPR 2020, Sec. 3.2) supervises block k of the student with the teacher's block k output
Y_k, feeding it the teacher's Y_{k-1}. The cut is chosen where the teacher's stage outputs have the
same stride as the search space's block outputs; when several teacher stages share a stride, the
deepest ones are used, matching the space's blocks in order (tf_efficientnet_b7 at 224 gives
48x56x56, 80x28x28, 160x14x14, 224x14x14, 384x7x7, 640x7x7 for the DNA space).

A ViT space keeps one token grid in every block, which no CNN teacher's stages share. Its cut is
the teacher's pyramid instead (the deepest stage of each of its last n output sizes, the levels a
backbone hands a segmentation head: strides 4..32 of EfficientNet-B1 at 224 for dna-vit's four
blocks), and each cut map is resampled to the student's grid (area-averaged down, bilinear up):
the resolution adapter DNA needs when teacher and student are different kinds of network. A ViT
teacher with enough stages on the student's grid (a DNA+ generation of a ViT space) is cut like
a CNN teacher of the same strides: its deepest stages, nothing resampled.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dnatool.arch.space import SearchSpace
from dnatool.errors import BadInput, RunFailure


@dataclass(frozen=True)
class TeacherCut:
    """Which teacher stages supervise which block, and the target shapes (C, H, W)."""

    stages: tuple[int, ...]
    shapes: tuple[tuple[int, int, int], ...]
    grid: int | None = None  # resample every cut map to grid x grid (a ViT student's tokens)

    def describe(self) -> list[dict]:
        return [
            {"block": k, "teacher_stage": s, "shape": list(shape)}
            | ({"resampled_to": [self.grid, self.grid]} if self.grid else {})
            for k, (s, shape) in enumerate(zip(self.stages, self.shapes))
        ]

    def select(self, outputs: list[torch.Tensor]) -> list[torch.Tensor]:
        """The cut stages of a teacher's stage outputs, at the student's sizes."""
        return [resample(outputs[s], self.grid) for s in self.stages]


def resample(x: torch.Tensor, size: int | None) -> torch.Tensor:
    """A map at `size` x `size`: area average to shrink, bilinear to grow, as is when None."""
    if size is None or tuple(x.shape[-2:]) == (size, size):
        return x
    mode = "area" if x.shape[-1] >= size and x.shape[-2] >= size else "bilinear"
    kwargs = {"align_corners": False} if mode == "bilinear" else {}
    return nn.functional.interpolate(x, size=(size, size), mode=mode, **kwargs)


class Teacher(nn.Module):
    """Wraps a timm EfficientNet-family model; `forward(x)` returns the cut stage outputs.

    `preprocess` (mean, std, interpolation, crop_pct) is how the teacher's images were normalised
    in its own training: the student's data must be fed the same way, or its targets are off.
    """

    def __init__(
        self, model: nn.Module, cut: TeacherCut, name: str, preprocess: dict | None = None
    ) -> None:
        super().__init__()
        self.model, self.cut, self.name = model, cut, name
        self.preprocess = dict(preprocess or model_preprocess(model))
        self.requires_grad_(False)

    def train(self, mode: bool = True) -> Teacher:
        """The teacher is always in eval mode (frozen BN statistics)."""
        return super().train(False)

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        outputs = stage_outputs(self.model, images, last=max(self.cut.stages))
        return self.cut.select(outputs)


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
    if space.tokens and len(by_size.get(wanted[0], [])) < len(wanted):
        return _pyramid(outs, by_size, len(wanted), wanted[0])
    return _assign(outs, by_size, wanted)


def _pyramid(
    outs: list[torch.Tensor], by_size: dict[int, list[int]], n: int, grid: int
) -> TeacherCut:
    """The deepest stage of each of the teacher's last n output sizes, resampled to `grid`."""
    sizes = sorted(by_size, reverse=True)
    if len(sizes) < n:
        raise BadInput(
            f"teacher has {len(sizes)} output sizes ({', '.join(map(str, sizes))}); the ViT "
            f"space's {n} blocks need one per block"
        )
    stages = tuple(by_size[size][-1] for size in sizes[-n:])
    shapes = tuple((int(outs[s].shape[1]), grid, grid) for s in stages)
    return TeacherCut(stages=stages, shapes=shapes, grid=grid)


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


@dataclass
class LoadedTeacher:
    """A teacher network, where it came from, and the preprocessing it was trained with."""

    model: nn.Module
    description: str
    preprocess: dict[str, Any] = field(default_factory=dict)


def model_preprocess(model: nn.Module) -> dict[str, Any]:
    """mean / std / interpolation / crop_pct of a timm model (`timm.data.resolve_data_config`)."""
    from timm.data import resolve_data_config

    config = resolve_data_config({}, model=model)
    return {
        "mean": [float(v) for v in config["mean"]],
        "std": [float(v) for v in config["std"]],
        "interpolation": str(config["interpolation"]),
        "crop_pct": float(config["crop_pct"]),
    }


def _is_dnatool_model(name: str) -> bool:
    """A model run directory or a dnatool `.pt` file (rather than a timm model name)."""
    from dnatool.nn.model_run import is_model_run

    return is_model_run(name) or Path(name).suffix == ".pt" and Path(name).is_file()


def teacher_file(name: str, weights: str | None = None) -> Path | None:
    """The file holding the teacher's weights (hashed into the run's manifest); None for timm's
    download, which the recipe names."""
    from dnatool.nn.model_run import MODEL_FILE

    if _is_dnatool_model(name):
        path = Path(name)
        return path if path.is_file() else path / MODEL_FILE
    return Path(weights) if weights is not None and Path(weights).is_file() else None


def load_teacher(name: str, weights: str | None = None, pretrained: bool = True) -> LoadedTeacher:
    """A dnatool model run, or a timm model (`name`, `timm:name`, `name.tag`) with weights from a
    local file or timm's download; the one teacher loader of training and retraining (KD)."""
    import timm

    from dnatool.nn.model_run import load_model

    if _is_dnatool_model(name):
        loaded = load_model(name)
        preprocess = {k: loaded.preprocess[k] for k in ("mean", "std", "interpolation", "crop_pct")}
        return LoadedTeacher(loaded.model, f"dnatool model run {loaded.source}", preprocess)
    bare = name.removeprefix("timm:")
    if not timm.is_model(bare.split(".")[0]):
        raise BadInput(f"teacher {name!r} is neither a dnatool model run nor a timm model name")
    model, description = _timm_teacher(bare, weights, pretrained)
    return LoadedTeacher(model, description, model_preprocess(model))


def _timm_teacher(bare: str, weights: str | None, pretrained: bool) -> tuple[nn.Module, str]:
    """A timm model from a local weights file, timm's download, or (on request) random init."""
    import timm

    if weights is not None:
        if not Path(weights).is_file():
            raise BadInput(f"teacher weights file not found: {weights}")
        overlay = (
            {"file": str(weights)}  # safetensors: no pickle, timm reads it
            if str(weights).endswith(".safetensors")
            else {"state_dict": _weights_state(Path(weights))}
        )
        try:
            model = timm.create_model(bare, pretrained=True, pretrained_cfg_overlay=overlay)
        except (RuntimeError, ValueError, KeyError, OSError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise BadInput(
                f"teacher weights {weights} do not fit timm model {bare!r}: {first}"
            ) from None
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


def _weights_state(path: Path) -> dict[str, Any]:
    """The state_dict in a local weights file, read by dnatool's one checkpoint loader: a pickle
    that needs code is refused in one line (exit 2) like every other loader's, never by torch's
    message inside timm. The keys timm's loader picks (`state_dict_ema`, `model_ema`,
    `state_dict`, `model`, or the dict itself) and its prefix cleaning."""
    from timm.models import clean_state_dict

    from dnatool.utils.io import torch_load

    data = torch_load(path)
    if isinstance(data, dict):
        for key in ("state_dict_ema", "model_ema", "state_dict", "model"):
            if isinstance(data.get(key), dict):
                data = data[key]
                break
    if not isinstance(data, dict) or not data:
        raise BadInput(f"teacher weights {path} hold no state_dict")
    return clean_state_dict(data)


def load_teacher_model(
    name: str, weights: str | None = None, pretrained: bool = True
) -> tuple[nn.Module, str]:
    """`load_teacher` as (model, description), for callers that need no preprocessing."""
    loaded = load_teacher(name, weights, pretrained)
    return loaded.model, loaded.description


def build_teacher(
    name: str,
    space: SearchSpace,
    weights: str | None = None,
    pretrained: bool = True,
    resolution: int | None = None,
) -> Teacher:
    loaded = load_teacher(name, weights, pretrained)
    model = loaded.model.eval()
    return Teacher(model, find_cut(model, space, resolution), loaded.description, loaded.preprocess)
