# DETR with a ResNet-50 backbone (C5, stride 32): 6+6 transformer layers,
# 256 dims, 8 heads, FFN 2048, dropout 0.1, 100 queries, post-norm.
# Costs: class 1, L1 5, GIoU 2; losses: CE 1 (no-object 0.1), L1 5, GIoU 2.
model = dict(
    _scope_='mmdetr',  # mmdetr's DETR, head, assigner ... (not mmdet's)
    type='DETR',
    data_preprocessor=dict(
        type='DetDataPreprocessor',
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        bgr_to_rgb=True,
        pad_size_divisor=1),
    backbone=dict(
        type='ResNet',
        depth=50,
        num_stages=4,
        out_indices=(3, ),
        frozen_stages=1,
        norm_cfg=dict(type='BN', requires_grad=False),
        norm_eval=True,
        style='pytorch',
        init_cfg=dict(type='Pretrained', checkpoint='torchvision://resnet50')),
    bbox_head=dict(
        type='DETRHead',
        num_classes=80,
        in_channels=2048,
        num_query=100,
        transformer=dict(
            type='DetrTransformer',
            embed_dims=256,
            num_heads=8,
            num_encoder_layers=6,
            num_decoder_layers=6,
            feedforward_channels=2048,
            dropout=0.1,
            normalize_before=False,
            return_intermediate=True),
        positional_encoding=dict(
            type='SinePositionalEncoding', num_feats=128, normalize=True),
        loss_cls=dict(
            type='CrossEntropyLoss',
            bg_cls_weight=0.1,
            use_sigmoid=False,
            loss_weight=1.0,
            class_weight=1.0),
        loss_bbox=dict(type='L1Loss', loss_weight=5.0),
        loss_iou=dict(type='GIoULoss', loss_weight=2.0)),
    train_cfg=dict(
        assigner=dict(
            type='HungarianAssigner',
            match_costs=[
                dict(type='ClassificationCost', weight=1.),
                dict(type='BBoxL1Cost', weight=5.0, box_format='xywh'),
                dict(type='IoUCost', iou_mode='giou', weight=2.0)
            ])),
    test_cfg=dict(max_per_img=100),
    # how, not what, it computes (mmdetr.speed): frozen BatchNorms folded
    # into the convolutions, a channels-last backbone, attention dropout in
    # one pass on a CPU, dropout noise from fewer random numbers on a CPU,
    # cast weights kept under autocast inference;
    # speedups=[] is DETR in plain PyTorch
    speedups=[
        dict(type='FrozenBatchNorms'),
        dict(type='ChannelsLast'),
        dict(type='FusedAttention'),
        dict(type='FastDropout'),
        dict(type='AutocastWeightCache'),
    ])
