"""mmsegmentation 1.2.2 with `dnatool.DNABackbone`: shipped configs, a Runner run, ONNX parity.

Runs the real mmseg on CPU with the placeholder `mmcv._ext` of `openmmlab_support` (mmcv-lite has
no compiled ops; none of the paths below reaches them).
"""

from __future__ import annotations

import pytest
import torch
from openmmlab_support import (
    DEPLOY,
    SMALL_ARCH,
    cpu_config,
    install_mmcv_ext_placeholder,
    write_voc,
)

pytest.importorskip("mmseg")
install_mmcv_ext_placeholder()

SEG_CONFIGS = sorted((DEPLOY / "mmseg").glob("*.py"))


def _build(cfg):
    from mmengine.registry import init_default_scope
    from mmseg.registry import MODELS

    init_default_scope("mmseg")
    model = MODELS.build(cfg.model)
    model.init_weights()
    return model


def _batch(num_classes: int, size: int = 64, n: int = 2):
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample

    gen = torch.Generator().manual_seed(0)
    samples = []
    for _ in range(n):
        sample = SegDataSample(
            metainfo=dict(img_shape=(size, size), ori_shape=(size, size), pad_shape=(size, size))
        )
        sample.gt_sem_seg = PixelData(
            data=torch.randint(0, num_classes, (1, size, size), generator=gen)
        )
        samples.append(sample)
    return torch.randn(n, 3, size, size, generator=gen), samples


def test_shipped_configs_exist():
    assert {p.name.split("_")[0] for p in SEG_CONFIGS} == {"deeplabv3plus", "aspp", "upernet"}


@pytest.mark.parametrize("path", SEG_CONFIGS, ids=lambda p: p.stem)
def test_shipped_config_trains_a_step_and_predicts(path):
    cfg = cpu_config(path)
    model = _build(cfg)
    head_in = cfg.model.decode_head.in_channels
    assert model.backbone.out_channels[-1] == (
        head_in[-1] if isinstance(head_in, list) else head_in
    )
    num_classes = cfg.model.decode_head.num_classes
    inputs, samples = _batch(num_classes, size=32)
    model.train()
    losses = model.loss(inputs, samples)
    total = sum(v for k, v in losses.items() if "loss" in k)
    assert torch.isfinite(total)
    total.backward()
    grads = [p.grad for p in model.backbone.parameters() if p.requires_grad]
    assert grads and all(g is not None for g in grads)
    model.eval()
    with torch.no_grad():
        preds = model.predict(inputs, samples)
    assert preds[0].pred_sem_seg.data.shape == (1, 32, 32)
    assert int(preds[0].pred_sem_seg.data.max()) < num_classes


def _calibrated(segmentor: torch.nn.Module) -> torch.nn.Module:
    """Untrained nets give ~1e-5 logits in eval (BatchNorm at its initial statistics): give the
    BatchNorms statistics from a few random batches and the classifier larger weights, so the
    parity check compares logits of a realistic magnitude."""
    gen = torch.Generator().manual_seed(2)
    for module in segmentor.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.reset_running_stats()
            module.momentum = None  # cumulative average over the calibration batches
    segmentor.train()
    with torch.no_grad():
        for _ in range(3):
            segmentor(torch.randn(2, 3, 64, 64, generator=gen), mode="tensor")
        segmentor.decode_head.conv_seg.weight.normal_(0.0, 0.1, generator=gen)
    return segmentor.eval()


@pytest.mark.slow
def test_runner_trains_deeplabv3plus_and_evaluates_miou(tmp_path):
    """mmengine's Runner on VOC-layout data it can learn: red/green/blue rectangles (classes 1-3)
    on a dark background. Predicting background everywhere scores mAcc 25 and mIoU ~20 (four
    classes in the val masks); a network that learned the colours scores far above both."""
    from mmengine.runner import Runner

    from dnatool.backbones.configs import write_config

    iters = 100
    voc = write_voc(tmp_path / "data", n_train=32, n_val=8)
    path = write_config(
        SMALL_ARCH,
        tmp_path / "dlv3p.py",
        "deeplabv3plus",
        crop_size=64,
        data_root=str(voc),
        num_classes=21,
    )
    cfg = cpu_config(path)
    for loader in (cfg.train_dataloader, cfg.val_dataloader, cfg.test_dataloader):
        loader.update(num_workers=0, persistent_workers=False)
    cfg.train_dataloader.batch_size = 4
    cfg.train_cfg.update(max_iters=iters, val_interval=iters)
    cfg.param_scheduler[0]["end"] = iters
    # the config's lr 0.01 is for 20k iterations; 100 CPU iterations need larger steps
    cfg.optim_wrapper.optimizer.lr = 0.05
    cfg.default_hooks.checkpoint.update(interval=iters)
    cfg.default_hooks.logger.interval = 10
    cfg.work_dir = str(tmp_path / "work")
    cfg.env_cfg = dict(
        cudnn_benchmark=False,
        mp_cfg=dict(mp_start_method="fork", opencv_num_threads=0),
        dist_cfg=dict(backend="gloo"),
    )
    cfg.randomness = dict(seed=0)
    runner = Runner.from_cfg(cfg)
    runner.train()
    losses = runner.message_hub.get_scalar("train/loss").data[0]
    metrics = runner.val()
    first, last = float(losses[:10].mean()), float(losses[-10:].mean())
    print(
        f"Runner DeepLabV3+ after {iters} iterations: loss {first:.3f} -> {last:.3f}, "
        f"mIoU {metrics['mIoU']:.2f}, mAcc {metrics['mAcc']:.2f}, aAcc {metrics['aAcc']:.2f}"
    )
    assert len(losses) == iters and last < 0.5 * first
    assert metrics["mAcc"] > 50.0 and metrics["mIoU"] > 40.0  # all-background: 25 and ~20
    assert (tmp_path / "work" / f"iter_{iters}.pth").is_file()


def test_segmentor_exports_to_onnx_with_parity(tmp_path):
    import numpy as np
    import onnxruntime as ort

    from dnatool.backbones.configs import write_config

    torch.manual_seed(0)  # timm's weight init draws from the global RNG
    cfg = cpu_config(write_config(SMALL_ARCH, tmp_path / "dlv3p.py", "deeplabv3plus", crop_size=64))
    segmentor = _calibrated(_build(cfg))

    class Logits(torch.nn.Module):
        """The deployable graph: image -> per-pixel class logits at the input size."""

        def __init__(self) -> None:
            super().__init__()
            self.segmentor = segmentor

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            logits = self.segmentor(x, mode="tensor")
            return torch.nn.functional.interpolate(
                logits, size=x.shape[-2:], mode="bilinear", align_corners=False
            )

    wrapper = Logits().eval()
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    onnx_file = tmp_path / "seg.onnx"
    torch.onnx.export(
        wrapper,
        (x,),
        str(onnx_file),
        input_names=["image"],
        output_names=["logits"],
        opset_version=17,
        dynamo=False,
    )
    session = ort.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        expected = wrapper(x).numpy()
    got = session.run(None, {"image": x.numpy()})[0]
    assert got.shape == (1, 21, 64, 64)
    diff = float(np.abs(got - expected).max())
    print(
        f"segmentor ONNX parity: max abs diff {diff:.3g}, |logits| up to {np.abs(expected).max():.3g}"
    )
    scale = float(np.abs(expected).max())
    assert scale > 1.0 and diff <= 1e-5 * scale  # float32 rounding, relative to the logits
