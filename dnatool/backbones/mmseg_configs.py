"""The top-level variables of each config kind, following mmseg 1.x / mmdet 3.x's own `_base_` files.

Each builder takes a `configs.Backbone` and returns an ordered dict of config variables. Heads
read their widths from `bb.channels` and their strides from `bb.strides`; nothing is typed twice.
"""

from __future__ import annotations

from typing import Any

from dnatool.backbones.configs import backbone_dict
from dnatool.errors import BadInput

SEG_MEAN, SEG_STD = [123.675, 116.28, 103.53], [58.395, 57.12, 57.375]
NORM = dict(type="SyncBN", requires_grad=True)
CE = dict(type="CrossEntropyLoss", use_sigmoid=False, loss_weight=1.0)
VOC = dict(
    type="PascalVOCDataset",
    root="data/VOCdevkit/VOC2012",
    classes=21,
    img="JPEGImages",
    seg="SegmentationClass",
    train="ImageSets/Segmentation/train.txt",
    val="ImageSets/Segmentation/val.txt",
    scale=(2048, 512),
)
ADE = dict(
    type="ADE20KDataset",
    root="data/ade/ADEChallengeData2016",
    classes=150,
    img="images/{}",
    seg="annotations/{}",
    train=None,
    val=None,
    scale=(2048, 512),
)


def _segmentor(
    bb: Any, head: dict, crop: int, num_classes: int, neck: dict | None = None
) -> dict[str, Any]:
    channels = neck["out_channels_list"] if neck else bb.channels
    aux_level = len(channels) - 2
    aux = dict(
        type="FCNHead",
        in_channels=channels[aux_level],
        in_index=aux_level,
        channels=128,
        num_convs=1,
        concat_input=False,
        dropout_ratio=0.1,
        num_classes=num_classes,
        norm_cfg=NORM,
        align_corners=False,
        loss_decode={**CE, "loss_weight": 0.4},
    )
    return dict(
        type="EncoderDecoder",
        data_preprocessor=dict(
            type="SegDataPreProcessor",
            mean=SEG_MEAN,
            std=SEG_STD,
            bgr_to_rgb=True,
            pad_val=0,
            seg_pad_val=255,
            size=(crop, crop),
        ),
        backbone=backbone_dict(bb, frozen_stages=-1, norm_eval=False),
        **({"neck": {k: v for k, v in neck.items() if k != "out_channels_list"}} if neck else {}),
        decode_head={
            **head,
            "num_classes": num_classes,
            "norm_cfg": NORM,
            "align_corners": False,
            "loss_decode": CE,
        },
        auxiliary_head=aux if aux_level >= 0 else None,
        train_cfg=dict(),
        test_cfg=dict(mode="whole"),
    )


def _seg_data(data: dict, root: str, crop: int, ade: bool) -> dict[str, Any]:
    extra = dict(reduce_zero_label=True) if ade else {}
    scale = data["scale"] if crop >= 256 else (crop * 4, crop)
    train_pipeline = [
        dict(type="LoadImageFromFile"),
        dict(type="LoadAnnotations", **extra),
        dict(type="RandomResize", scale=scale, ratio_range=(0.5, 2.0), keep_ratio=True),
        dict(type="RandomCrop", crop_size=(crop, crop), cat_max_ratio=0.75),
        dict(type="RandomFlip", prob=0.5),
        dict(type="PhotoMetricDistortion"),
        dict(type="PackSegInputs"),
    ]
    test_pipeline = [
        dict(type="LoadImageFromFile"),
        dict(type="Resize", scale=scale, keep_ratio=True),
        dict(type="LoadAnnotations", **extra),
        dict(type="PackSegInputs"),
    ]

    def loader(split: str, pipeline: list, train: bool) -> dict[str, Any]:
        prefix = dict(img_path=data["img"].format(split), seg_map_path=data["seg"].format(split))
        dataset = dict(type=data["type"], data_root=root, data_prefix=prefix, pipeline=pipeline)
        if data["train"]:
            dataset["ann_file"] = data["train"] if train else data["val"]
        sampler = (
            dict(type="InfiniteSampler", shuffle=True)
            if train
            else dict(type="DefaultSampler", shuffle=False)
        )
        return dict(
            batch_size=4 if train else 1,
            num_workers=4,
            persistent_workers=True,
            sampler=sampler,
            dataset=dataset,
        )

    val = loader("validation", test_pipeline, False)
    return dict(
        train_dataloader=loader("training", train_pipeline, True),
        val_dataloader=val,
        test_dataloader=val,
        val_evaluator=dict(type="IoUMetric", iou_metrics=["mIoU"]),
        test_evaluator=dict(type="IoUMetric", iou_metrics=["mIoU"]),
    )


def _seg_schedule(iters: int) -> dict[str, Any]:
    return dict(
        optim_wrapper=dict(
            type="OptimWrapper",
            clip_grad=None,
            optimizer=dict(type="SGD", lr=0.01, momentum=0.9, weight_decay=0.0005),
        ),
        param_scheduler=[
            dict(type="PolyLR", eta_min=1e-4, power=0.9, begin=0, end=iters, by_epoch=False)
        ],
        train_cfg=dict(type="IterBasedTrainLoop", max_iters=iters, val_interval=iters // 10),
        val_cfg=dict(type="ValLoop"),
        test_cfg=dict(type="TestLoop"),
        default_hooks=dict(
            timer=dict(type="IterTimerHook"),
            logger=dict(type="LoggerHook", interval=50, log_metric_by_epoch=False),
            param_scheduler=dict(type="ParamSchedulerHook"),
            checkpoint=dict(type="CheckpointHook", by_epoch=False, interval=iters // 10),
            sampler_seed=dict(type="DistSamplerSeedHook"),
            visualization=dict(type="SegVisualizationHook"),
        ),
        **runtime("SegLocalVisualizer"),
        log_processor=dict(by_epoch=False),
    )


def runtime(visualizer: str) -> dict[str, Any]:
    return dict(
        env_cfg=dict(
            cudnn_benchmark=True,
            mp_cfg=dict(mp_start_method="fork", opencv_num_threads=0),
            dist_cfg=dict(backend="nccl"),
        ),
        vis_backends=[dict(type="LocalVisBackend")],
        visualizer=dict(
            type=visualizer, vis_backends=[dict(type="LocalVisBackend")], name="visualizer"
        ),
        log_level="INFO",
        load_from=None,
        resume=False,
    )


def _seg(
    bb: Any,
    head: dict,
    data: dict,
    num_classes: int | None,
    crop_size: int,
    data_root: str | None,
    iters: int,
    neck: dict | None = None,
) -> dict[str, Any]:
    classes = num_classes or data["classes"]
    if len(bb.channels) < 2:
        raise BadInput("a segmentation config needs at least two backbone levels of stride >= 4")
    return dict(
        default_scope="mmseg",
        crop_size=(crop_size, crop_size),
        model=_segmentor(bb, head, crop_size, classes, neck),
        **_seg_data(data, data_root or data["root"], crop_size, data is ADE),
        **_seg_schedule(iters),
    )


def deeplabv3plus(
    bb: Any, num_classes: int | None = None, crop_size: int = 512, data_root: str | None = None
) -> dict[str, Any]:
    """DeepLabV3+ (depthwise-separable ASPP, stride-4 decoder skip) on VOC-style data, OS16."""
    last = len(bb.channels) - 1
    head = dict(
        type="DepthwiseSeparableASPPHead",
        in_channels=bb.channels[-1],
        in_index=last,
        channels=256,
        dilations=(1, 6, 12, 18),
        c1_in_channels=bb.channels[0],
        c1_channels=48,
        dropout_ratio=0.1,
    )
    return _seg(bb, head, VOC, num_classes, crop_size, data_root, 20000)


def aspp(
    bb: Any, num_classes: int | None = None, crop_size: int = 512, data_root: str | None = None
) -> dict[str, Any]:
    """DeepLabV3 ASPP head on ADE20K-style data (150 classes, reduce_zero_label), OS16."""
    head = dict(
        type="ASPPHead",
        in_channels=bb.channels[-1],
        in_index=len(bb.channels) - 1,
        channels=256,
        dilations=(1, 6, 12, 18),
        dropout_ratio=0.1,
    )
    return _seg(bb, head, ADE, num_classes, crop_size, data_root, 80000)


def upernet(
    bb: Any, num_classes: int | None = None, crop_size: int = 512, data_root: str | None = None
) -> dict[str, Any]:
    """UperNet (PPM + FPN over every backbone level) on ADE20K-style data. A ViT backbone's
    levels share one stride; mmseg's `MultiLevelNeck` (its ViT + UperNet configs) resamples them
    to strides 4, 8, 16 and 32 first, as the DNA family's ADE20K setting does."""
    neck = _vit_neck(bb)
    channels = neck["out_channels_list"] if neck else bb.channels
    head = dict(
        type="UPerHead",
        in_channels=channels,
        in_index=list(range(len(channels))),
        pool_scales=(1, 2, 3, 6),
        channels=256,
        dropout_ratio=0.1,
    )
    return _seg(bb, head, ADE, num_classes, crop_size, data_root, 80000, neck)


def _vit_neck(bb: Any) -> dict | None:
    """MultiLevelNeck for a backbone whose levels all have one stride (a ViT's blocks)."""
    if len(set(bb.strides)) != 1 or len(bb.strides) < 2:
        return None
    stride, count = bb.strides[0], len(bb.strides)
    targets = [4 * 2**i for i in range(count)]  # 4, 8, 16, 32 for four levels
    width = max(bb.channels)
    return dict(
        type="MultiLevelNeck",
        in_channels=bb.channels,
        out_channels=width,
        scales=[stride / t for t in targets],
        out_channels_list=[width] * count,
    )


BUILDERS = dict(deeplabv3plus=deeplabv3plus, aspp=aspp, upernet=upernet)
