# upernet on dnatool arch 'dna-vit-example': backbone levels [3, 4, 5, 6], channels [256, 320, 384, 448], strides [16, 16, 16, 16].
# Written by dnatool (mmseg config).

custom_imports = dict(imports=['dnatool.backbones.openmmlab'], allow_failed_imports=False)
default_scope = 'mmseg'
crop_size = (512, 512)
model = dict(
    type='EncoderDecoder',
    data_preprocessor=dict(
        type='SegDataPreProcessor',
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        bgr_to_rgb=True,
        pad_val=0,
        seg_pad_val=255,
        size=(512, 512),
    ),
    backbone=dict(
        type='dnatool.DNABackbone',
        arch=dict(
            format='dnatool.arch',
            version=1,
            name='dna-vit-example',
            resolution=224,
            num_classes=1000,
            in_chans=3,
            stem=24,
            head=1280,
            act='gelu',
            arch_def=[
                ['cn_r1_k3_s2_e1_c48'],
                ['cn_r1_k3_s2_e1_c96'],
                ['pe_r1_k2_s2_c224'],
                ['vt_r1_k1_s1_e4_c256_h8', 'vt_r1_k1_s1_e4_c256_h8', 'vt_r1_k1_s1_e4_c256_h8'],
                [
                    'vt_r1_k1_s1_e4_c320_h10',
                    'vt_r1_k1_s1_e4_c320_h10',
                    'vt_r1_k1_s1_e4_c320_h10',
                    'vt_r1_k1_s1_e4_c320_h10',
                ],
                [
                    'vt_r1_k1_s1_e3.5_c384_h12',
                    'vt_r1_k1_s1_e3.5_c384_h12',
                    'vt_r1_k1_s1_e3.5_c384_h12',
                    'vt_r1_k1_s1_e3.5_c384_h12',
                ],
                ['vt_r1_k1_s1_e3_c448_h14', 'vt_r1_k1_s1_e3_c448_h14', 'vt_r1_k1_s1_e3_c448_h14'],
            ],
            meta=dict(
                space='dna-vit',
                choices=[[7, [3, 3, 3]], [47, [3, 3, 3, 3]], [54, [2, 2, 2, 2]], [29, [1, 1, 1]]],
            ),
        ),
        out_indices=(3, 4, 5, 6),
        frozen_stages=-1,
        norm_eval=False,
    ),
    neck=dict(
        type='MultiLevelNeck',
        in_channels=[256, 320, 384, 448],
        out_channels=448,
        scales=[4.0, 2.0, 1.0, 0.5],
    ),
    decode_head=dict(
        type='UPerHead',
        in_channels=[448, 448, 448, 448],
        in_index=[0, 1, 2, 3],
        pool_scales=(1, 2, 3, 6),
        channels=256,
        dropout_ratio=0.1,
        num_classes=150,
        norm_cfg=dict(type='SyncBN', requires_grad=True),
        align_corners=False,
        loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0),
    ),
    auxiliary_head=dict(
        type='FCNHead',
        in_channels=448,
        in_index=2,
        channels=128,
        num_convs=1,
        concat_input=False,
        dropout_ratio=0.1,
        num_classes=150,
        norm_cfg=dict(type='SyncBN', requires_grad=True),
        align_corners=False,
        loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=0.4),
    ),
    train_cfg=dict(),
    test_cfg=dict(mode='whole'),
)
train_dataloader = dict(
    batch_size=4,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(
        type='ADE20KDataset',
        data_root='data/ade/ADEChallengeData2016',
        data_prefix=dict(img_path='images/training', seg_map_path='annotations/training'),
        pipeline=[
            dict(type='LoadImageFromFile'),
            dict(type='LoadAnnotations', reduce_zero_label=True),
            dict(type='RandomResize', scale=(2048, 512), ratio_range=(0.5, 2.0), keep_ratio=True),
            dict(type='RandomCrop', crop_size=(512, 512), cat_max_ratio=0.75),
            dict(type='RandomFlip', prob=0.5),
            dict(type='PhotoMetricDistortion'),
            dict(type='PackSegInputs'),
        ],
    ),
)
val_dataloader = dict(
    batch_size=1,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type='ADE20KDataset',
        data_root='data/ade/ADEChallengeData2016',
        data_prefix=dict(img_path='images/validation', seg_map_path='annotations/validation'),
        pipeline=[
            dict(type='LoadImageFromFile'),
            dict(type='Resize', scale=(2048, 512), keep_ratio=True),
            dict(type='LoadAnnotations', reduce_zero_label=True),
            dict(type='PackSegInputs'),
        ],
    ),
)
test_dataloader = dict(
    batch_size=1,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type='ADE20KDataset',
        data_root='data/ade/ADEChallengeData2016',
        data_prefix=dict(img_path='images/validation', seg_map_path='annotations/validation'),
        pipeline=[
            dict(type='LoadImageFromFile'),
            dict(type='Resize', scale=(2048, 512), keep_ratio=True),
            dict(type='LoadAnnotations', reduce_zero_label=True),
            dict(type='PackSegInputs'),
        ],
    ),
)
val_evaluator = dict(type='IoUMetric', iou_metrics=['mIoU'])
test_evaluator = dict(type='IoUMetric', iou_metrics=['mIoU'])
optim_wrapper = dict(
    type='OptimWrapper',
    clip_grad=None,
    optimizer=dict(type='SGD', lr=0.01, momentum=0.9, weight_decay=0.0005),
)
param_scheduler = [dict(type='PolyLR', eta_min=0.0001, power=0.9, begin=0, end=80000, by_epoch=False)]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=80000, val_interval=8000)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=50, log_metric_by_epoch=False),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=8000),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    visualization=dict(type='SegVisualizationHook'),
)
env_cfg = dict(
    cudnn_benchmark=True,
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
    dist_cfg=dict(backend='nccl'),
)
vis_backends = [dict(type='LocalVisBackend')]
visualizer = dict(type='SegLocalVisualizer', vis_backends=[dict(type='LocalVisBackend')], name='visualizer')
log_level = 'INFO'
load_from = None
resume = False
log_processor = dict(by_epoch=False)
