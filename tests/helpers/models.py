# Copyright (c) mmdetr contributors. All rights reserved.
"""Tiny DETR configs for mmdetr and for mmdet 3.x, and builders that build
them the way a runner does.

Nothing is downloaded; every model is randomly initialised. ``mmdetr_cfg``
and ``mmdet_cfg`` describe the same architecture, so the parity tests can
give both the same weights (through the converter) and compare outputs.
"""
import copy

from mmengine.registry import DefaultScope

import mmdetr  # noqa: F401  registers mmdetr's components

TINY = dict(
    depth=18, embed_dims=64, num_heads=4, ffn=128, enc=2, dec=2, queries=20,
    num_classes=5, dropout=0.0)


def _backbone(depth):
    return dict(
        type='ResNet',
        depth=depth,
        num_stages=4,
        out_indices=(3, ),
        frozen_stages=1,
        norm_cfg=dict(type='BN', requires_grad=False),
        norm_eval=True,
        style='pytorch',
        init_cfg=None)


_PREPROCESSOR = dict(
    type='DetDataPreprocessor',
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    bgr_to_rgb=True,
    pad_size_divisor=1)

_LOSSES = dict(
    loss_cls=dict(
        type='CrossEntropyLoss',
        bg_cls_weight=0.1,
        use_sigmoid=False,
        loss_weight=1.0,
        class_weight=1.0),
    loss_bbox=dict(type='L1Loss', loss_weight=5.0),
    loss_iou=dict(type='GIoULoss', loss_weight=2.0))

#: the speed parts the shipped configs turn on (configs/_base_/models)
SPEEDUPS = [
    dict(type='FrozenBatchNorms'),
    dict(type='ChannelsLast'),
    dict(type='FusedAttention'),
    dict(type='FastDropout'),
    dict(type='AutocastWeightCache'),
]

_TRAIN_CFG = dict(
    assigner=dict(
        type='HungarianAssigner',
        match_costs=[
            dict(type='ClassificationCost', weight=1.),
            dict(type='BBoxL1Cost', weight=5.0, box_format='xywh'),
            dict(type='IoUCost', iou_mode='giou', weight=2.0)
        ]))


def mmdetr_cfg(**overrides):
    """Model config of a tiny mmdetr DETR (``_scope_='mmdetr'``)."""
    a = dict(TINY, **overrides)
    in_channels = 512 if a['depth'] in (18, 34) else 2048
    return dict(
        _scope_='mmdetr',
        type='DETR',
        data_preprocessor=copy.deepcopy(_PREPROCESSOR),
        backbone=_backbone(a['depth']),
        bbox_head=dict(
            type='DETRHead',
            num_classes=a['num_classes'],
            in_channels=in_channels,
            num_query=a['queries'],
            transformer=dict(
                type='DetrTransformer',
                embed_dims=a['embed_dims'],
                num_heads=a['num_heads'],
                num_encoder_layers=a['enc'],
                num_decoder_layers=a['dec'],
                feedforward_channels=a['ffn'],
                dropout=a['dropout'],
                normalize_before=a.get('normalize_before', False)),
            positional_encoding=a.get(
                'positional_encoding',
                dict(
                    type='SinePositionalEncoding',
                    num_feats=a['embed_dims'] // 2,
                    normalize=True)),
            **copy.deepcopy(_LOSSES)),
        train_cfg=copy.deepcopy(_TRAIN_CFG),
        test_cfg=dict(max_per_img=a['queries']),
        speedups=copy.deepcopy(a.get('speedups', SPEEDUPS)))


def mmdet_cfg(**overrides):
    """The same architecture as mmdet 3.x's own DETR config."""
    a = dict(TINY, **overrides)
    in_channels = 512 if a['depth'] in (18, 34) else 2048
    d = a['embed_dims']

    def attn():
        return dict(
            embed_dims=d,
            num_heads=a['num_heads'],
            dropout=a['dropout'],
            batch_first=True)

    def ffn():
        return dict(
            embed_dims=d,
            feedforward_channels=a['ffn'],
            num_fcs=2,
            ffn_drop=a['dropout'],
            act_cfg=dict(type='ReLU', inplace=True))

    return dict(
        type='DETR',
        num_queries=a['queries'],
        data_preprocessor=copy.deepcopy(_PREPROCESSOR),
        backbone=_backbone(a['depth']),
        neck=dict(
            type='ChannelMapper',
            in_channels=[in_channels],
            kernel_size=1,
            out_channels=d,
            act_cfg=None,
            norm_cfg=None,
            num_outs=1),
        encoder=dict(
            num_layers=a['enc'],
            layer_cfg=dict(self_attn_cfg=attn(), ffn_cfg=ffn())),
        decoder=dict(
            num_layers=a['dec'],
            layer_cfg=dict(
                self_attn_cfg=attn(), cross_attn_cfg=attn(), ffn_cfg=ffn()),
            return_intermediate=True),
        positional_encoding=dict(num_feats=d // 2, normalize=True),
        bbox_head=dict(
            type='DETRHead',
            num_classes=a['num_classes'],
            embed_dims=d,
            **copy.deepcopy(_LOSSES)),
        train_cfg=copy.deepcopy(_TRAIN_CFG),
        test_cfg=dict(max_per_img=a['queries']))


def build_mmdetr(cfg=None, scope='mmdet', **overrides):
    """Build mmdetr's DETR the way a runner does: from mmengine's root
    registry with the default scope set (mmdet's, by default)."""
    from mmengine.registry import MODELS
    cfg = cfg or mmdetr_cfg(**overrides)
    with DefaultScope.overwrite_default_scope(scope):
        model = MODELS.build(copy.deepcopy(cfg))
    model.init_weights()
    return model


def build_mmdet(**overrides):
    """Build mmdet 3.x's own DETR (the reference)."""
    from mmdet.registry import MODELS
    with DefaultScope.overwrite_default_scope('mmdet'):
        model = MODELS.build(mmdet_cfg(**overrides))
    model.init_weights()
    return model
