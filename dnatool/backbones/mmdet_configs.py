"""mmdet 3.x configs (RetinaNet, Faster R-CNN; FPN on COCO) around `dnatool.DNABackbone`.

Follows mmdet's `_base_` files (`retinanet_r50_fpn`, `faster-rcnn_r50_fpn`, `coco_detection`,
`schedule_1x`), with the FPN `in_channels`, anchor strides and RoI feature strides computed from
the backbone levels. With a checkpoint (`init_cfg` Pretrained), as mmdet's ResNet configs: stem
and first stage frozen, BatchNorm in eval. Without one the backbone starts from random weights, so
every stage trains and BatchNorm keeps updating (freezing a random stem would cripple the detector).
"""

from __future__ import annotations

from typing import Any

from dnatool.backbones.configs import backbone_dict
from dnatool.backbones.mmseg_configs import SEG_MEAN, SEG_STD, runtime
from dnatool.errors import BadInput

COCO_ROOT = "data/coco/"
DELTA = dict(type="DeltaXYWHBBoxCoder", target_means=[0.0] * 4, target_stds=[1.0] * 4)


def _fpn_strides(bb: Any, start_level: int, num_outs: int = 5) -> list[int]:
    """Strides of the FPN outputs: the backbone's from `start_level`, then doubling (extra convs)."""
    strides = bb.strides[start_level:]
    if any(b != 2 * a for a, b in zip(strides, strides[1:], strict=False)):
        hint = (
            " (a ViT's blocks share its token grid's stride; its dense-prediction config is "
            "`--kind upernet`, which puts mmseg's MultiLevelNeck before the head)"
            if len(set(bb.strides)) == 1
            else ""
        )
        raise BadInput(f"FPN needs levels that double in stride, got strides {bb.strides}{hint}")
    return [strides[0] * 2**i for i in range(num_outs)]


def _freezing(bb: Any) -> dict[str, Any]:
    """mmdet's pretrained-backbone freezing only when there are weights to keep."""
    if bb.checkpoint:
        return dict(frozen_stages=1, norm_eval=True)
    return dict(frozen_stages=-1, norm_eval=False)


def _detector(
    kind: str, bb: Any, neck: dict, heads: dict, size_divisor: int = 32
) -> dict[str, Any]:
    return dict(
        type=kind,
        data_preprocessor=dict(
            type="DetDataPreprocessor",
            mean=SEG_MEAN,
            std=SEG_STD,
            bgr_to_rgb=True,
            pad_size_divisor=size_divisor,
        ),
        backbone=backbone_dict(bb, **_freezing(bb)),
        neck=neck,
        **heads,
    )


def retinanet(
    bb: Any,
    num_classes: int | None = None,
    crop_size: int | None = None,
    data_root: str | None = None,
) -> dict[str, Any]:
    """RetinaNet + FPN (P3..P7 from the stride-8 level on, extra convs on the input)."""
    start = next((i for i, s in enumerate(bb.strides) if s >= 8), None)
    if start is None or len(bb.channels) - start < 2:
        raise BadInput("RetinaNet needs at least two backbone levels of stride >= 8")
    neck = dict(
        type="FPN",
        in_channels=bb.channels,
        out_channels=256,
        start_level=start,
        add_extra_convs="on_input",
        num_outs=5,
    )
    head = dict(
        type="RetinaHead",
        num_classes=num_classes or 80,
        in_channels=256,
        stacked_convs=4,
        feat_channels=256,
        anchor_generator=dict(
            type="AnchorGenerator",
            octave_base_scale=4,
            scales_per_octave=3,
            ratios=[0.5, 1.0, 2.0],
            strides=_fpn_strides(bb, start),
        ),
        bbox_coder=DELTA,
        loss_cls=dict(type="FocalLoss", use_sigmoid=True, gamma=2.0, alpha=0.25, loss_weight=1.0),
        loss_bbox=dict(type="L1Loss", loss_weight=1.0),
    )
    train_cfg = dict(
        assigner=dict(
            type="MaxIoUAssigner",
            pos_iou_thr=0.5,
            neg_iou_thr=0.4,
            min_pos_iou=0,
            ignore_iof_thr=-1,
        ),
        sampler=dict(type="PseudoSampler"),
        allowed_border=-1,
        pos_weight=-1,
        debug=False,
    )
    test_cfg = dict(
        nms_pre=1000,
        min_bbox_size=0,
        score_thr=0.05,
        nms=dict(type="nms", iou_threshold=0.5),
        max_per_img=100,
    )
    model = _detector(
        "RetinaNet", bb, neck, dict(bbox_head=head, train_cfg=train_cfg, test_cfg=test_cfg)
    )
    return _det(model, data_root, lr=0.01)


def faster_rcnn(
    bb: Any,
    num_classes: int | None = None,
    crop_size: int | None = None,
    data_root: str | None = None,
) -> dict[str, Any]:
    """Faster R-CNN + FPN over every backbone level (RPN P2..P6, RoIAlign on the first four)."""
    strides = _fpn_strides(bb, 0)
    neck = dict(type="FPN", in_channels=bb.channels, out_channels=256, num_outs=5)
    rpn = dict(
        type="RPNHead",
        in_channels=256,
        feat_channels=256,
        anchor_generator=dict(
            type="AnchorGenerator", scales=[8], ratios=[0.5, 1.0, 2.0], strides=strides
        ),
        bbox_coder=DELTA,
        loss_cls=dict(type="CrossEntropyLoss", use_sigmoid=True, loss_weight=1.0),
        loss_bbox=dict(type="L1Loss", loss_weight=1.0),
    )
    roi = dict(
        type="StandardRoIHead",
        bbox_roi_extractor=dict(
            type="SingleRoIExtractor",
            out_channels=256,
            roi_layer=dict(type="RoIAlign", output_size=7, sampling_ratio=0),
            featmap_strides=strides[: min(4, len(bb.channels))],
        ),
        bbox_head=dict(
            type="Shared2FCBBoxHead",
            in_channels=256,
            fc_out_channels=1024,
            roi_feat_size=7,
            num_classes=num_classes or 80,
            reg_class_agnostic=False,
            bbox_coder={**DELTA, "target_stds": [0.1, 0.1, 0.2, 0.2]},
            loss_cls=dict(type="CrossEntropyLoss", use_sigmoid=False, loss_weight=1.0),
            loss_bbox=dict(type="L1Loss", loss_weight=1.0),
        ),
    )
    heads = dict(rpn_head=rpn, roi_head=roi, train_cfg=_rcnn_train_cfg(), test_cfg=_rcnn_test_cfg())
    return _det(_detector("FasterRCNN", bb, neck, heads), data_root, lr=0.02)


def _sampler(num: int, pos_fraction: float, gt: bool) -> dict[str, Any]:
    return dict(
        type="RandomSampler",
        num=num,
        pos_fraction=pos_fraction,
        neg_pos_ub=-1,
        add_gt_as_proposals=gt,
    )


def _assigner(pos: float, neg: float, min_pos: float, low_quality: bool) -> dict[str, Any]:
    return dict(
        type="MaxIoUAssigner",
        pos_iou_thr=pos,
        neg_iou_thr=neg,
        min_pos_iou=min_pos,
        match_low_quality=low_quality,
        ignore_iof_thr=-1,
    )


def _rcnn_train_cfg() -> dict[str, Any]:
    return dict(
        rpn=dict(
            assigner=_assigner(0.7, 0.3, 0.3, True),
            sampler=_sampler(256, 0.5, False),
            allowed_border=-1,
            pos_weight=-1,
            debug=False,
        ),
        rpn_proposal=dict(
            nms_pre=2000, max_per_img=1000, nms=dict(type="nms", iou_threshold=0.7), min_bbox_size=0
        ),
        rcnn=dict(
            assigner=_assigner(0.5, 0.5, 0.5, False),
            sampler=_sampler(512, 0.25, True),
            pos_weight=-1,
            debug=False,
        ),
    )


def _rcnn_test_cfg() -> dict[str, Any]:
    return dict(
        rpn=dict(
            nms_pre=1000, max_per_img=1000, nms=dict(type="nms", iou_threshold=0.7), min_bbox_size=0
        ),
        rcnn=dict(score_thr=0.05, nms=dict(type="nms", iou_threshold=0.5), max_per_img=100),
    )


def _det(model: dict, data_root: str | None, lr: float) -> dict[str, Any]:
    root = data_root or COCO_ROOT
    return dict(
        default_scope="mmdet",
        model=model,
        **_coco(root),
        optim_wrapper=dict(
            type="OptimWrapper",
            clip_grad=None,
            optimizer=dict(type="SGD", lr=lr, momentum=0.9, weight_decay=0.0001),
        ),
        param_scheduler=[
            dict(type="LinearLR", start_factor=0.001, by_epoch=False, begin=0, end=500),
            dict(type="MultiStepLR", begin=0, end=12, by_epoch=True, milestones=[8, 11], gamma=0.1),
        ],
        train_cfg=dict(type="EpochBasedTrainLoop", max_epochs=12, val_interval=1),
        val_cfg=dict(type="ValLoop"),
        test_cfg=dict(type="TestLoop"),
        auto_scale_lr=dict(enable=False, base_batch_size=16),
        default_hooks=dict(
            timer=dict(type="IterTimerHook"),
            logger=dict(type="LoggerHook", interval=50),
            param_scheduler=dict(type="ParamSchedulerHook"),
            checkpoint=dict(type="CheckpointHook", interval=1),
            sampler_seed=dict(type="DistSamplerSeedHook"),
            visualization=dict(type="DetVisualizationHook"),
        ),
        **runtime("DetLocalVisualizer"),
        log_processor=dict(type="LogProcessor", window_size=50, by_epoch=True),
    )


def _coco(root: str) -> dict[str, Any]:
    train_pipeline = [
        dict(type="LoadImageFromFile"),
        dict(type="LoadAnnotations", with_bbox=True),
        dict(type="Resize", scale=(1333, 800), keep_ratio=True),
        dict(type="RandomFlip", prob=0.5),
        dict(type="PackDetInputs"),
    ]
    test_pipeline = [
        dict(type="LoadImageFromFile"),
        dict(type="Resize", scale=(1333, 800), keep_ratio=True),
        dict(type="LoadAnnotations", with_bbox=True),
        dict(
            type="PackDetInputs",
            meta_keys=("img_id", "img_path", "ori_shape", "img_shape", "scale_factor"),
        ),
    ]
    train = dict(
        batch_size=2,
        num_workers=2,
        persistent_workers=True,
        sampler=dict(type="DefaultSampler", shuffle=True),
        batch_sampler=dict(type="AspectRatioBatchSampler"),
        dataset=dict(
            type="CocoDataset",
            data_root=root,
            ann_file="annotations/instances_train2017.json",
            data_prefix=dict(img="train2017/"),
            filter_cfg=dict(filter_empty_gt=True, min_size=32),
            pipeline=train_pipeline,
        ),
    )
    val = dict(
        batch_size=1,
        num_workers=2,
        persistent_workers=True,
        drop_last=False,
        sampler=dict(type="DefaultSampler", shuffle=False),
        dataset=dict(
            type="CocoDataset",
            data_root=root,
            ann_file="annotations/instances_val2017.json",
            data_prefix=dict(img="val2017/"),
            test_mode=True,
            pipeline=test_pipeline,
        ),
    )
    evaluator = dict(
        type="CocoMetric",
        ann_file=root + "annotations/instances_val2017.json",
        metric="bbox",
        format_only=False,
    )
    return dict(
        train_dataloader=train,
        val_dataloader=val,
        test_dataloader=val,
        val_evaluator=evaluator,
        test_evaluator=evaluator,
    )


BUILDERS = dict(retinanet=retinanet, faster_rcnn=faster_rcnn)
