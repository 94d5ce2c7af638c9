"""OpenMMLab configs for a searched network, with every `in_channels` computed from its arch.

`write_config(model, out, kind)` writes a self-contained mmengine Python config (no `_base_`, so
it needs neither mmseg's packaged configs nor `pkg_resources`) for mmseg (DeepLabV3+ on VOC, ASPP
and UperNet on ADE20K) or mmdet (RetinaNet and Faster R-CNN with FPN on COCO). Channels and
strides come from `levels.feature_levels`, the same rule timm's builder follows, so the heads fit
the backbone by construction. The configs in `deploy/` are this function's output for
`efficientnet_b0`. Writing a config imports no OpenMMLab package.
"""

from __future__ import annotations

import keyword
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dnatool.arch.resolve import BUILTIN, resolve_arch
from dnatool.arch.spec import ArchSpec
from dnatool.backbones.levels import Level, check_out_indices, default_out_indices, feature_levels
from dnatool.errors import BadInput
from dnatool.nn.model_run import MODEL_FILE, is_model_run, model_run_arch
from dnatool.utils.io import write_text

SEG_KINDS = ("deeplabv3plus", "aspp", "upernet")
DET_KINDS = ("retinanet", "faster_rcnn")
KINDS = SEG_KINDS + DET_KINDS
DEPLOY_FILES = {  # what `deploy/` ships: this module's output for efficientnet_b0
    "deeplabv3plus": "mmseg/deeplabv3plus_dna-b0_voc12-512x512.py",
    "aspp": "mmseg/aspp_dna-b0_ade20k-512x512.py",
    "upernet": "mmseg/upernet_dna-b0_ade20k-512x512.py",
    "retinanet": "mmdet/retinanet_dna-b0_fpn_1x_coco.py",
    "faster_rcnn": "mmdet/faster-rcnn_dna-b0_fpn_1x_coco.py",
}
DEPLOY_ARCH = "efficientnet_b0"
# and UperNet on an arch of the dna-vit space (depth 14, widths 256..448: DNA-T's 4.5 GMACs)
DEPLOY_VIT_FILE = "mmseg/upernet_dna-vit_ade20k-512x512.py"
DEPLOY_VIT_ARCH = Path(__file__).resolve().parents[2] / "recipes" / "arch" / "dna-vit-example.json"
IMPORTS = "dict(imports=['dnatool.backbones.openmmlab'], allow_failed_imports=False)"


@dataclass(frozen=True)
class Backbone:
    """What a config says about the backbone: the `arch=` value, its weights and its levels."""

    arch_value: Any
    spec: ArchSpec
    checkpoint: str | None
    levels: tuple[Level, ...]
    out_indices: tuple[int, ...]
    output_stride: int

    @property
    def channels(self) -> list[int]:
        return [self.levels[i].channels for i in self.out_indices]

    @property
    def strides(self) -> list[int]:
        return [self.levels[i].reduction for i in self.out_indices]


def backbone_for(
    model: Any,
    output_stride: int = 32,
    out_indices: tuple[int, ...] | None = None,
    checkpoint: str | None = None,
) -> Backbone:
    """Resolve MODEL (a model run, its model.pt, or any ARCH form) into what a config needs."""
    ref = str(model) if isinstance(model, (str, Path)) else None
    path = Path(ref) if ref is not None else None
    if (
        path is not None
        and path.is_file()
        and path.name == MODEL_FILE
        and is_model_run(path.parent)
    ):
        path = path.parent
    if path is not None and path.is_dir() and is_model_run(path):
        checkpoint = checkpoint or str(path / MODEL_FILE)
        spec = model_run_arch(path)
    else:
        spec = resolve_arch(str(path) if path is not None else model)
    arch_value: Any = ref if ref in BUILTIN else spec.to_dict()
    levels = tuple(feature_levels(spec, output_stride))
    indices = check_out_indices(levels, out_indices) if out_indices else default_out_indices(levels)
    return Backbone(arch_value, spec, checkpoint, levels, indices, output_stride)


def backbone_dict(bb: Backbone, **extra: Any) -> dict[str, Any]:
    """The `backbone=dict(type='dnatool.DNABackbone', ...)` entry of a config."""
    entry: dict[str, Any] = dict(
        type="dnatool.DNABackbone", arch=bb.arch_value, out_indices=bb.out_indices
    )
    if bb.output_stride != 32:
        entry["output_stride"] = bb.output_stride
    entry.update(extra)
    if bb.checkpoint:
        entry["init_cfg"] = dict(type="Pretrained", checkpoint=bb.checkpoint)
    return entry


def render_config(
    model: Any,
    kind: str,
    *,
    num_classes: int | None = None,
    crop_size: int | None = None,
    data_root: str | None = None,
    checkpoint: str | None = None,
) -> str:
    """The text of a config of `kind` for MODEL."""
    from dnatool.backbones import mmdet_configs, mmseg_configs

    if kind not in KINDS:
        raise BadInput(f"unknown config kind {kind!r} (known: {', '.join(KINDS)})")
    bb = backbone_for(model, output_stride=_output_stride(kind), checkpoint=checkpoint)
    options = {
        k: v
        for k, v in dict(num_classes=num_classes, crop_size=crop_size, data_root=data_root).items()
        if v is not None
    }
    builders = {**mmseg_configs.BUILDERS, **mmdet_configs.BUILDERS}
    variables = builders[kind](bb, **options)
    header = (
        f"# {kind} on dnatool arch {bb.spec.name!r}: backbone levels {list(bb.out_indices)}, "
        f"channels {bb.channels}, strides {bb.strides}.\n"
        f"# Written by dnatool ({'mmseg' if kind in SEG_KINDS else 'mmdet'} config).\n"
    )
    lines = [header, f"custom_imports = {IMPORTS}"]
    lines += [f"{name} = {pyformat(value)}" for name, value in variables.items()]
    return "\n".join(lines) + "\n"


def backbone_summary(model: Any, kind: str, checkpoint: str | None = None) -> dict[str, Any]:
    """What the config of `kind` says about the backbone (for the CLI and scripts)."""
    bb = backbone_for(model, output_stride=_output_stride(kind), checkpoint=checkpoint)
    return {
        "arch": bb.spec.name,
        "out_indices": list(bb.out_indices),
        "channels": bb.channels,
        "strides": bb.strides,
        "output_stride": bb.output_stride,
        "checkpoint": bb.checkpoint,
    }


def _output_stride(kind: str) -> int:
    """DeepLab heads run at stride 16 (dilated last stage); the others at 32."""
    return 16 if kind in ("deeplabv3plus", "aspp") else 32


def write_config(model: Any, out: str | Path, kind: str, **options: Any) -> Path:
    """Render and write atomically; returns the path."""
    return write_text(out, render_config(model, kind, **options))


def export_mmseg_config(model: Any, out: str | Path) -> dict[str, Any]:
    """`dnatool export MODEL --mmseg-config FILE`: the DeepLabV3+ config (the paper's VOC setting)."""
    path = write_config(model, out, "deeplabv3plus")
    return {
        "config": str(path),
        "kind": "deeplabv3plus",
        **backbone_summary(model, "deeplabv3plus"),
    }


def write_deploy_configs(root: str | Path) -> list[Path]:
    """(Re)write the configs shipped in `deploy/` (tests check they are up to date)."""
    written = [
        write_config(DEPLOY_ARCH, Path(root) / rel, kind) for kind, rel in DEPLOY_FILES.items()
    ]
    return [*written, write_config(str(DEPLOY_VIT_ARCH), Path(root) / DEPLOY_VIT_FILE, "upernet")]


def pyformat(value: Any, indent: int = 0, width: int = 100) -> str:
    """Python literal in mmengine config style (`dict(a=1)`), wrapped at `width`."""
    flat = _flat(value)
    if len(flat) + indent <= width or not isinstance(value, (dict, list, tuple)) or not value:
        return flat
    pad = " " * (indent + 4)
    items = [pad + prefix + pyformat(v, indent + 4, width) for prefix, v in _entries(value)]
    open_, close = _brackets(value)
    return open_ + "\n" + ",\n".join(items) + ",\n" + " " * indent + close


def _flat(value: Any) -> str:
    if isinstance(value, (dict, list, tuple)):
        inner = ", ".join(prefix + _flat(v) for prefix, v in _entries(value))
        open_, close = _brackets(value)
        trailing = "," if isinstance(value, tuple) and len(value) == 1 else ""
        return f"{open_}{inner}{trailing}{close}"
    return repr(value)


def _is_kwarg(key: Any) -> bool:
    return isinstance(key, str) and key.isidentifier() and not keyword.iskeyword(key)


def _entries(value: Any) -> list[tuple[str, Any]]:
    """(prefix, item) pairs: `k=` inside dict(...), `'k': ` inside {...}, nothing in sequences."""
    if isinstance(value, dict):
        call = all(_is_kwarg(k) for k in value)
        return [(f"{k}=" if call else f"{k!r}: ", v) for k, v in value.items()]
    return [("", v) for v in value]


def _brackets(value: Any) -> tuple[str, str]:
    if isinstance(value, dict):
        return ("dict(", ")") if all(_is_kwarg(k) for k in value) else ("{", "}")
    return ("[", "]") if isinstance(value, list) else ("(", ")")
