"""mmdet 3.3.0 with `dnatool.DNABackbone`: the shipped RetinaNet and Faster R-CNN configs on CPU.

Uses the placeholder `mmcv._ext` of `openmmlab_support` (its `nms` runs torchvision's) and
RoIAlign through torchvision, since mmcv-lite has no compiled ops.
"""

from __future__ import annotations

import pytest
import torch
from openmmlab_support import (
    DEPLOY,
    SMALL_ARCH,
    cpu_config,
    install_mmcv_ext_placeholder,
    torchvision_roi_align,
)

pytest.importorskip("mmdet")
install_mmcv_ext_placeholder()

DET_CONFIGS = sorted((DEPLOY / "mmdet").glob("*.py"))


def _build(cfg):
    from mmdet.registry import MODELS
    from mmengine.registry import init_default_scope

    init_default_scope("mmdet")
    if "roi_head" in cfg.model:
        torchvision_roi_align(cfg)
    model = MODELS.build(cfg.model)
    model.init_weights()
    return model


def _train_step_and_predict(model, size: int = 128) -> list:
    from mmdet.testing import demo_mm_inputs

    torch.manual_seed(0)
    num_classes = (
        model.bbox_head.num_classes
        if hasattr(model, "bbox_head")
        else model.roi_head.bbox_head.num_classes
    )
    data = demo_mm_inputs(
        batch_size=2, image_shapes=[(3, size, size)] * 2, num_items=[3, 2], num_classes=num_classes
    )
    model.train()
    batch = model.data_preprocessor(data, True)
    losses = model.loss(batch["inputs"], batch["data_samples"])
    total = sum(
        v if isinstance(v, torch.Tensor) else sum(v) for k, v in losses.items() if "loss" in k
    )
    assert torch.isfinite(total) and total > 0
    total.backward()
    trainable = [p for p in model.backbone.parameters() if p.requires_grad]
    assert trainable and all(p.grad is not None for p in trainable)
    model.eval()
    with torch.no_grad():
        batch = model.data_preprocessor(data, False)
        return model.predict(batch["inputs"], batch["data_samples"])


def test_shipped_configs_exist():
    assert {p.name.split("_")[0] for p in DET_CONFIGS} == {"faster-rcnn", "retinanet"}


@pytest.mark.parametrize("path", DET_CONFIGS, ids=lambda p: p.name.split("_")[0])
def test_shipped_config_trains_a_step_and_predicts(path):
    cfg = cpu_config(path)
    model = _build(cfg)
    assert list(model.backbone.out_channels) == list(cfg.model.neck.in_channels)
    # no init_cfg in the shipped configs: a random backbone must train whole, BatchNorm included
    assert "init_cfg" not in cfg.model.backbone
    assert model.backbone.frozen_stages == -1 and not model.backbone.norm_eval
    assert all(p.requires_grad for p in model.backbone.parameters())
    model.train()
    assert all(m.training for m in model.backbone.modules())
    preds = _train_step_and_predict(model)
    assert len(preds) == 2
    boxes = preds[0].pred_instances.bboxes
    assert boxes.ndim == 2 and boxes.shape[1] == 4


def test_generated_faster_rcnn_for_a_small_arch(tmp_path):
    from dnatool.backbones.configs import write_config

    path = write_config(SMALL_ARCH, tmp_path / "frcnn.py", "faster_rcnn", num_classes=3)
    cfg = cpu_config(path)
    model = _build(cfg)
    strides = cfg.model.roi_head.bbox_roi_extractor.featmap_strides
    assert list(strides) == list(model.backbone.out_strides[: len(strides)])
    assert cfg.model.rpn_head.anchor_generator.strides[0] == model.backbone.out_strides[0]
    _train_step_and_predict(model, size=96)
