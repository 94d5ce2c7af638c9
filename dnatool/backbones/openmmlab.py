"""`dnatool.DNABackbone`: a searched network as an mmseg / mmdet backbone, through the registry.

Reached from any OpenMMLab config with
`custom_imports=dict(imports=['dnatool.backbones.openmmlab'], allow_failed_imports=False)` and
`backbone=dict(type='dnatool.DNABackbone', arch=...)` (the pattern of `mmpretrain.ConvNeXt`):
mmseg's and mmdet's `MODELS.get('dnatool.X')` find the `dnatool` child of mmengine's root
`MODELS`. This module imports mmengine only (never mmseg, mmdet or mmcv), so it loads where mmcv's
compiled ops are missing. The network is timm's `EfficientNetFeatures` for the arch (parameter
names as in timm and in a dnatool `model.pt`), and `frozen_stages` / `norm_eval` follow mmseg's
MobileNetV2 / ResNet: frozen stages stay in eval with `requires_grad=False`, and `norm_eval` keeps
every BatchNorm in eval inside `train()`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from mmengine.model import BaseModule
from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import Registry
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from dnatool.arch.resolve import resolve_arch
from dnatool.backbones.levels import check_out_indices, check_output_stride, feature_levels
from dnatool.backbones.timm_models import checkpoint_filter_fn, model_kwargs, plain_arch
from dnatool.errors import BadInput
from dnatool.nn.model_run import MODEL_FILE
from dnatool.utils.io import CHECKPOINT_FORMAT, torch_load

MODELS = Registry(
    "model", parent=MMENGINE_MODELS, scope="dnatool", locations=["dnatool.backbones.openmmlab"]
)


@MODELS.register_module()
class DNABackbone(BaseModule):
    """Multi-scale features of a searched network (timm levels: 0 is stride 2, ..., 4 stride 32).

    Args:
        arch: any ARCH form (arch file, arch_def list, search.json, model run dir, built-in name).
        out_indices: feature levels returned, as a tuple of tensors.
        frozen_stages: -1 freezes nothing, 0 the stem, k the stem and the first k arch stages.
        norm_eval: keep BatchNorm layers in eval mode (frozen statistics) while training.
        output_stride: 32, or 16 / 8 to turn the last strides into dilations (DeepLab).
        drop_path_rate: stochastic depth, as in timm.
        init_cfg: `dict(type='Pretrained', checkpoint=PATH, prefix=None)`: a dnatool `model.pt` or
            model run directory, a plain state_dict, or an OpenMMLab checkpoint (with
            `prefix='backbone.'`); loaded with `weights_only=True` and checked against the arch.
    """

    def __init__(
        self,
        arch: Any,
        out_indices: Sequence[int] = (1, 2, 3, 4),
        frozen_stages: int = -1,
        norm_eval: bool = False,
        output_stride: int = 32,
        drop_path_rate: float = 0.0,
        init_cfg: dict | None = None,
    ) -> None:
        super().__init__(init_cfg=init_cfg)
        from dnatool.nn.timm_adapter import model_classes

        spec = resolve_arch(plain_arch(arch))
        check_output_stride(output_stride)
        levels = feature_levels(spec, output_stride)
        self.out_indices = check_out_indices(levels, out_indices)
        if not -1 <= frozen_stages <= len(spec.stages):
            raise BadInput(
                f"frozen_stages must be in [-1, {len(spec.stages)}], got {frozen_stages}"
            )
        body = model_classes(spec)[1](
            out_indices=self.out_indices,
            output_stride=output_stride,
            drop_path_rate=drop_path_rate,
            in_chans=spec.in_chans,
            **model_kwargs(spec),
        )
        self.conv_stem, self.bn1, self.blocks = body.conv_stem, body.bn1, body.blocks
        self.feature_info = body.feature_info
        self._stage_out_idx = set(body._stage_out_idx)
        self.arch, self.frozen_stages, self.norm_eval = spec, frozen_stages, norm_eval
        self.out_channels = tuple(self.feature_info.channels())
        self.out_strides = tuple(self.feature_info.reduction())
        self._freeze_stages()

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        x = self.bn1(self.conv_stem(x))
        outs = [x] if 0 in self._stage_out_idx else []
        for i, stage in enumerate(self.blocks):
            x = stage(x)
            if i + 1 in self._stage_out_idx:
                outs.append(x)
        return tuple(outs)

    def _freeze_stages(self) -> None:
        frozen: list[nn.Module] = [self.conv_stem, self.bn1] if self.frozen_stages >= 0 else []
        frozen += list(self.blocks[: max(self.frozen_stages, 0)])
        for module in frozen:
            module.eval()
            for param in module.parameters():
                param.requires_grad = False

    def train(self, mode: bool = True) -> DNABackbone:
        """As mmseg's backbones: frozen stages stay in eval; `norm_eval` pins every BatchNorm."""
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for module in self.modules():
                if isinstance(module, _BatchNorm):
                    module.eval()
        return self

    def init_weights(self) -> None:
        """Load `Pretrained` weights strictly and safely; other init_cfg types go to mmengine."""
        cfg = self.init_cfg
        if isinstance(cfg, dict) and cfg.get("type") == "Pretrained":
            state = load_backbone_state(cfg["checkpoint"], cfg.get("prefix"))
            self.load_state_dict(checkpoint_filter_fn(state, self), strict=True)
            self._is_init = True
            return
        super().init_weights()


def load_backbone_state(
    checkpoint: str | Path, prefix: str | None = None
) -> dict[str, torch.Tensor]:
    """A state_dict from a dnatool model run / `model.pt`, a plain or an OpenMMLab checkpoint."""
    source = str(checkpoint)
    if source.startswith(("http://", "https://")):
        data = torch.hub.load_state_dict_from_url(source, map_location="cpu", weights_only=True)
    else:
        path = Path(source)
        path = path / MODEL_FILE if path.is_dir() else path
        data = torch_load(path)
    if not isinstance(data, dict):
        raise BadInput(f"checkpoint {source} does not hold a state_dict")
    if data.get("format") == CHECKPOINT_FORMAT and data.get("kind") != "model":
        raise BadInput(f"{source} is a dnatool {data.get('kind')!r} checkpoint, expected a model")
    state = data["state_dict"] if isinstance(data.get("state_dict"), dict) else data
    state = {k.removeprefix("module."): v for k, v in state.items()}
    if prefix:
        state = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
        if not state:
            raise BadInput(f"checkpoint {source} has no key starting with prefix {prefix!r}")
    return state
