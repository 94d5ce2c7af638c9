"""Helpers for the backbone tests that run the real mmsegmentation 1.2.2 / mmdet 3.3.0 on CPU.

PLACEHOLDER `mmcv._ext` (read this): the tests install `mmcv-lite`, which has no compiled ops,
and `mmcv.ops` loads every compiled op when it is imported, so `mmseg.models` and `mmdet.models`
fail with `No module named 'mmcv._ext'`. Only when the real module is missing,
`install_mmcv_ext_placeholder()` registers a module of that name in `sys.modules` whose functions
raise NotImplementedError, except `nms`, which runs `torchvision.ops.nms` (what Faster R-CNN's
and RetinaNet's predict need). Nothing the tests exercise (convolutions, ASPP, UperNet, FPN,
losses, RoIAlign with `use_torchvision=True`) reaches the other placeholder functions; if it
ever did, the NotImplementedError names the op. dnatool itself never imports mmcv.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import sys
import types
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy"
SMALL_ARCH = [
    ["ds_r1_k3_s1_e1_c8_se0.25"],
    ["ir_r1_k3_s2_e3_c16_se0.25"],
    ["ir_r1_k5_s2_e3_c24_se0.25"],
    ["ir_r1_k3_s2_e3_c32_se0.25"],
    ["ir_r1_k3_s2_e3_c48_se0.25"],
]


def _nms(boxes, scores, iou_threshold: float, offset: int = 0):
    import torchvision

    if offset != 0:
        raise NotImplementedError("placeholder mmcv._ext.nms supports offset=0 only")
    return torchvision.ops.nms(boxes.float(), scores.float(), float(iou_threshold))


def _placeholder_getattr(name: str):
    if name.startswith("__"):
        raise AttributeError(name)

    def missing(*args, **kwargs):
        raise NotImplementedError(
            f"mmcv compiled op {name!r} is a test placeholder (mmcv-lite has no ops)"
        )

    missing.__name__ = name
    return missing


def install_mmcv_ext_placeholder() -> bool:
    """Register the placeholder `mmcv._ext` unless a real one exists; True if installed."""
    if "mmcv._ext" in sys.modules:
        return getattr(sys.modules["mmcv._ext"], "IS_DNATOOL_TEST_PLACEHOLDER", False)
    if importlib.util.find_spec("mmcv._ext") is not None:
        return False
    module = types.ModuleType("mmcv._ext", "test placeholder for mmcv's compiled ops")
    module.__spec__ = importlib.machinery.ModuleSpec("mmcv._ext", None)
    module.IS_DNATOOL_TEST_PLACEHOLDER = True
    module.nms = _nms
    module.__getattr__ = _placeholder_getattr
    sys.modules["mmcv._ext"] = module
    return True


def cpu_config(path: str | Path, **arch_override):
    """An mmengine Config of a shipped/generated file, made CPU-runnable (SyncBN -> BN)."""
    from mmengine.config import Config

    cfg = Config.fromfile(str(path))
    _sync_to_bn(cfg._cfg_dict)
    if arch_override:
        cfg.model.backbone.update(arch_override)
    return cfg


def _sync_to_bn(node) -> None:
    if isinstance(node, dict):
        if node.get("type") == "SyncBN":
            node["type"] = "BN"
        for value in node.values():
            _sync_to_bn(value)
    elif isinstance(node, list):
        for value in node:
            _sync_to_bn(value)


def torchvision_roi_align(cfg) -> None:
    """Faster R-CNN on CPU: RoIAlign through torchvision (mmcv's own kernel is compiled)."""
    roi_layer = cfg.model.roi_head.bbox_roi_extractor.roi_layer
    roi_layer["use_torchvision"] = True


def write_voc(
    root: Path, n_train: int = 8, n_val: int = 4, size: int = 64, classes: int = 21
) -> Path:
    """A tiny VOC2012 layout: JPEGImages, SegmentationClass (palette PNG), ImageSets/Segmentation.

    Images hold red, green or blue rectangles (classes 1..3) on a dark background, two per image,
    with each rectangle's top row marked 255 (ignored): a segmentor can learn them in about a
    hundred CPU iterations, while predicting background everywhere scores mAcc 25.
    """
    from PIL import Image

    voc = root / "VOCdevkit" / "VOC2012"
    for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (voc / sub).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    palette = (rng.integers(0, 256, (256, 3), dtype=np.uint8)).flatten().tolist()
    names = [f"img{i:03d}" for i in range(n_train + n_val)]
    for name in names:
        image, mask = _scene(rng, size, classes)
        Image.fromarray(image).save(voc / "JPEGImages" / f"{name}.jpg", quality=95)
        label = Image.fromarray(mask, mode="P")
        label.putpalette(palette)
        label.save(voc / "SegmentationClass" / f"{name}.png")
    sets = voc / "ImageSets" / "Segmentation"
    (sets / "train.txt").write_text("\n".join(names[:n_train]) + "\n")
    (sets / "val.txt").write_text("\n".join(names[n_train:]) + "\n")
    return voc


def _scene(rng: np.random.Generator, size: int, classes: int) -> tuple[np.ndarray, np.ndarray]:
    image = rng.integers(0, 40, (size, size, 3), dtype=np.uint8)
    mask = np.zeros((size, size), dtype=np.uint8)
    colours = {1: (230, 40, 40), 2: (40, 230, 40), 3: (40, 40, 230)}
    for cls in rng.choice([1, 2, 3], size=2, replace=False):
        h, w = rng.integers(size // 4, size // 2, size=2)
        y, x = rng.integers(0, size - h), rng.integers(0, size - w)
        image[y : y + h, x : x + w] = colours[int(cls)]
        mask[y : y + h, x : x + w] = cls
        mask[y, x : x + w] = 255
    return image, mask
