# Copyright (c) mmdetr contributors. All rights reserved.
"""mmdet 2.x model dicts build mmdetr's DETR: the 2.x
transformer spec and assigner map onto today's classes; what cannot be
expressed fails naming the field and the value."""
import copy

import pytest
import torch
from mmengine.config import Config

from helpers import (ROOT, build_mmdetr, make_batch, mmdetr_cfg,
                      preprocess)
from mmdetr.compat import DETRHead, Mmdet2ConfigError, translate_transformer


def mmdet2_transformer(embed_dims=256, num_heads=8, ffn=2048, enc=6, dec=6,
                       dropout=0.1, pre_norm=False, attn_as_list=True):
    """The ``transformer`` of mmdet 2.28's detr_r50_8x2_150e_coco.py, with
    its sizes as arguments."""

    def attn():
        return dict(type='MultiheadAttention', embed_dims=embed_dims,
                    num_heads=num_heads, dropout=dropout)

    enc_order = ('norm', 'self_attn', 'norm', 'ffn') if pre_norm else (
        'self_attn', 'norm', 'ffn', 'norm')
    dec_order = ('norm', 'self_attn', 'norm', 'cross_attn', 'norm',
                 'ffn') if pre_norm else ('self_attn', 'norm', 'cross_attn',
                                          'norm', 'ffn', 'norm')
    return dict(
        type='Transformer',
        encoder=dict(
            type='DetrTransformerEncoder',
            num_layers=enc,
            transformerlayers=dict(
                type='BaseTransformerLayer',
                attn_cfgs=[attn()] if attn_as_list else attn(),
                feedforward_channels=ffn,
                ffn_dropout=dropout,
                operation_order=enc_order)),
        decoder=dict(
            type='DetrTransformerDecoder',
            return_intermediate=True,
            num_layers=dec,
            transformerlayers=dict(
                type='DetrTransformerDecoderLayer',
                attn_cfgs=attn(),
                feedforward_channels=ffn,
                ffn_dropout=dropout,
                operation_order=dec_order)))


def mmdet2_model(depth=50, num_classes=80, num_query=100, **transformer):
    """mmdet 2.28's DETR model dict (verbatim apart from the sizes), with
    ``_scope_='mmdetr'`` and the 3.x data_preprocessor 2.x did not have."""
    embed_dims = transformer.get('embed_dims', 256)
    return dict(
        _scope_='mmdetr',
        type='DETR',
        data_preprocessor=dict(
            type='DetDataPreprocessor',
            mean=[123.675, 116.28, 103.53],
            std=[58.395, 57.12, 57.375],
            bgr_to_rgb=True,
            pad_size_divisor=1),
        backbone=dict(
            type='ResNet',
            depth=depth,
            num_stages=4,
            out_indices=(3, ),
            frozen_stages=1,
            norm_cfg=dict(type='BN', requires_grad=False),
            norm_eval=True,
            style='pytorch',
            init_cfg=None),
        bbox_head=dict(
            type='DETRHead',
            num_classes=num_classes,
            num_query=num_query,
            in_channels=512 if depth in (18, 34) else 2048,
            transformer=mmdet2_transformer(**transformer),
            positional_encoding=dict(
                type='SinePositionalEncoding',
                num_feats=embed_dims // 2,
                normalize=True),
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
                cls_cost=dict(type='ClassificationCost', weight=1.),
                reg_cost=dict(
                    type='BBoxL1Cost', weight=5.0, box_format='xywh'),
                iou_cost=dict(type='IoUCost', iou_mode='giou', weight=2.0))),
        test_cfg=dict(max_per_img=num_query))


TINY2 = dict(depth=18, num_classes=5, num_query=20, embed_dims=64,
             num_heads=4, ffn=128, enc=2, dec=2, dropout=0.0)


def shapes(model):
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


@pytest.mark.slow
def test_r50_model_dict_of_mmdet2_has_mmdetr_parameter_layout():
    """Build only: configs/mmdet2_model_detr_r50_8x2_150e_coco.py (mmdet
    2.28's model dict verbatim) and configs/detr_r50_8x2_150e_coco.py give
    the same parameter names and shapes."""
    theirs = Config.fromfile(
        f'{ROOT}/configs/mmdet2_model_detr_r50_8x2_150e_coco.py').model
    assert theirs.bbox_head.transformer.type == 'Transformer'
    assert 'cls_cost' in theirs.train_cfg.assigner
    ours = Config.fromfile(f'{ROOT}/configs/detr_r50_8x2_150e_coco.py').model
    # nothing downloaded: no pretrained backbone
    theirs.backbone.init_cfg = ours.backbone.init_cfg = None
    theirs = build_mmdetr(theirs.to_dict())
    assert shapes(theirs) == shapes(build_mmdetr(ours.to_dict()))
    assert type(theirs.bbox_head.transformer).__name__ == 'DetrTransformer'
    assigner = theirs.bbox_head.assigner
    assert type(assigner).__module__.startswith('mmdetr.')
    assert [type(c).__name__ for c in assigner.match_costs] == [
        'ClassificationCost', 'BBoxL1Cost', 'IoUCost']
    assert assigner.reg_cost.box_format == 'xywh'
    assert assigner.iou_cost.weight == 2.0


def test_tiny_mmdet2_dict_loads_mmdetr_weights_and_gives_same_outputs():
    """One state dict loads strictly into both models; losses and
    detections agree. Built under mmdet's default scope, as a runner with
    mmdet's configs does (FACTS.md, trap 4)."""
    scope = 'mmdet'
    a = dict(TINY2)
    ours = build_mmdetr(mmdetr_cfg(), scope=scope)
    theirs = build_mmdetr(mmdet2_model(**a), scope=scope)
    theirs.load_state_dict(ours.state_dict(), strict=True)
    ours.load_state_dict(theirs.state_dict(), strict=True)
    data = make_batch(num_boxes=(3, 7))
    for model in (ours, theirs):
        model.train()
    losses = [
        m(**preprocess(m, data, True), mode='loss') for m in (ours, theirs)
    ]
    assert losses[0].keys() == losses[1].keys()
    for key in losses[0]:
        torch.testing.assert_close(losses[1][key], losses[0][key], msg=key)
    assert losses[0]['loss_bbox'] > 0
    for model in (ours, theirs):
        model.eval()
    preds = [m(**preprocess(m, data, False), mode='predict')
             for m in (ours, theirs)]
    for p_ours, p_theirs in zip(*preds):
        torch.testing.assert_close(p_theirs.pred_instances.bboxes,
                                   p_ours.pred_instances.bboxes)
        torch.testing.assert_close(p_theirs.pred_instances.scores,
                                   p_ours.pred_instances.scores)


def test_head_takes_its_config_dict_with_type_as_mmdet2():
    cfg = mmdet2_model(**TINY2)['bbox_head']
    assert cfg['type'] == 'DETRHead'
    head = DETRHead(**copy.deepcopy(cfg))
    t = head.transformer
    assert (t.embed_dims, len(t.encoder_layers), len(t.decoder_layers)) == (
        64, 2, 2)
    assert t.return_intermediate and t.encoder_norm is None
    assert head.assigner.match_costs  # the head default assigner


def test_translation_of_mmdet2_forms():
    """attn_cfgs as list or dict, ffn_cfgs or the older layer arguments,
    post- and pre-norm orders."""
    base = translate_transformer(mmdet2_transformer(dropout=0.1))
    assert base == dict(
        type='DetrTransformer', num_encoder_layers=6, num_decoder_layers=6,
        return_intermediate=True, embed_dims=256, num_heads=8,
        feedforward_channels=2048, dropout=0.1, activation='relu',
        normalize_before=False)
    assert translate_transformer(mmdet2_transformer(
        dropout=0.1, attn_as_list=False)) == base
    pre = translate_transformer(mmdet2_transformer(pre_norm=True))
    assert pre['normalize_before'] is True
    # the same layer written with ffn_cfgs (mmcv >= 1.3.x's form) and GELU
    spec = mmdet2_transformer(dropout=0.1)
    for seq in (spec['encoder'], spec['decoder']):
        layer = seq['transformerlayers']
        del layer['feedforward_channels'], layer['ffn_dropout']
        layer['ffn_cfgs'] = dict(
            type='FFN', embed_dims=256, feedforward_channels=2048,
            num_fcs=2, ffn_drop=0.1, act_cfg=dict(type='GELU'))
    assert translate_transformer(spec) == dict(base, activation='gelu')
    # list of per-layer dicts, return_intermediate off, decoder only final
    spec = mmdet2_transformer(enc=2, dec=3)
    layer = spec['decoder'].pop('transformerlayers')
    spec['decoder']['transformerlayers'] = [layer] * 3
    spec['decoder']['return_intermediate'] = False
    out = translate_transformer(spec)
    assert (out['num_encoder_layers'], out['num_decoder_layers'],
            out['return_intermediate']) == (2, 3, False)


def _edit(path, value):
    """mmdet2_transformer() with the item at ``path`` set to ``value``."""
    spec = mmdet2_transformer()
    node = spec
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return spec


ENC = ('encoder', 'transformerlayers')
DEC = ('decoder', 'transformerlayers')


@pytest.mark.parametrize('path,value,field,shown', [
    (ENC + ('operation_order', ), ('self_attn', 'ffn', 'norm', 'norm'),
     'encoder.transformerlayers[0].operation_order',
     "('self_attn', 'ffn', 'norm', 'norm')"),
    (DEC + ('attn_cfgs', ), dict(type='MultiScaleDeformableAttention',
                                 embed_dims=256, num_heads=8),
     'decoder.transformerlayers[0].attn_cfgs[0].type',
     "'MultiScaleDeformableAttention'"),
    (DEC + ('attn_cfgs', ), dict(type='MultiheadAttention', embed_dims=256,
                                 num_heads=8, dropout=0.1, batch_first=True),
     'decoder.transformerlayers[0].attn_cfgs[0].batch_first', 'True'),
    (ENC + ('ffn_dropout', ), 0.2,
     'encoder.transformerlayers[0].ffn_dropout', '0.2'),
    (ENC + ('act_cfg', ), dict(type='GELU'),
     'encoder.transformerlayers[0].act_cfg', "'GELU'"),
    (ENC + ('norm_cfg', ), dict(type='BN'),
     'encoder.transformerlayers[0].norm_cfg', "'BN'"),
    (('decoder', 'post_norm_cfg'), None, 'decoder.post_norm_cfg', 'None'),
    (('decoder', 'type'), 'DeformableDetrTransformerDecoder',
     'decoder.type', "'DeformableDetrTransformerDecoder'"),
    (ENC + ('ffn_num_fcs', ), 3,
     'encoder.transformerlayers[0].ffn_cfgs.num_fcs', '3'),
    (ENC + ('with_cp', ), True, 'encoder.transformerlayers[0].with_cp',
     'True'),
])
def test_inexpressible_spec_fails_naming_field_and_value(
        path, value, field, shown):
    with pytest.raises(Mmdet2ConfigError) as e:
        translate_transformer(_edit(path, value))
    msg = str(e.value)
    assert f'transformer.{field}=' in msg and shown in msg, msg


def test_encoder_and_decoder_must_agree():
    spec = mmdet2_transformer()
    spec['encoder'] = mmdet2_transformer(ffn=1024)['encoder']
    with pytest.raises(Mmdet2ConfigError, match='feedforward_channels'):
        translate_transformer(spec)
    with pytest.raises(Mmdet2ConfigError, match='normalize_before'):
        spec = mmdet2_transformer()
        spec['encoder'] = mmdet2_transformer(pre_norm=True)['encoder']
        translate_transformer(spec)


def test_head_error_for_bad_spec_names_the_field():
    cfg = mmdet2_model(**TINY2)['bbox_head']
    cfg['transformer']['decoder']['transformerlayers']['operation_order'] = (
        'cross_attn', 'norm', 'self_attn', 'norm', 'ffn', 'norm')
    with pytest.raises(Mmdet2ConfigError, match='operation_order'):
        DETRHead(**cfg)


def test_mmdet2_checkpoint_through_converter_runs_in_mmdet2_built_model():
    """The whole 2.x path: weights in mmdet 2.x's key layout, converted,
    load strictly into the model built from the 2.x dict and give the
    outputs of mmdet 3.3's own DETR with the same weights."""
    from helpers import (assert_same_losses, assert_same_predictions,
                         build_mmdet, mmdet2_state_dict, randomize_)
    from mmdetr.checkpoints import convert_state_dict
    reference = randomize_(build_mmdet(), seed=1)
    weights = mmdet2_state_dict(reference.state_dict())
    model = build_mmdetr(mmdet2_model(**TINY2))
    model.load_state_dict(convert_state_dict(weights, 'auto'), strict=True)
    data = make_batch(num_boxes=(2, 5), seed=7)
    assert_same_losses(reference, model, data)
    assert_same_predictions(reference, model, data)
