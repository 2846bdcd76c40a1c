# Copyright (c) mmdetr contributors. All rights reserved.
"""mmdetr/checkpoints/convert.py: layout tables, detection, round trips and the
official checkpoint's content changes."""
import re

import pytest
import torch
from mmdet.datasets import CocoDataset
from mmengine.registry import MODELS, DefaultScope

from helpers import mmdet2_state_dict, mmdet_cfg, mmdetr_cfg
from mmdetr.checkpoints.convert import (COCO_CATEGORY_IDS, LAYOUTS,
                                        CheckpointLayoutError,
                                        convert_state_dict, detect_layout)
from references.reference_detr import (OFFICIAL_COCO_NAMES,
                                       official_state_dict)


def build(cfg):
    """A model as the runner builds it (mmdet's default scope); weights are
    torch's initialisation, which is random enough for key tests."""
    with DefaultScope.overwrite_default_scope('mmdet'):
        return MODELS.build(cfg)


def random_state_dict(model, seed=0):
    """The model's keys, every floating tensor replaced by random values, so
    that no two tensors of one shape are equal (as LayerNorm weights are)."""
    gen = torch.Generator().manual_seed(seed)
    return {
        k: torch.randn(v.shape, generator=gen) if v.is_floating_point() else v
        for k, v in model.state_dict().items()
    }


@pytest.fixture(scope='module')
def mmdetr_sd():
    return random_state_dict(build(mmdetr_cfg()), seed=1)


@pytest.fixture(scope='module')
def mmdet3_sd():
    return random_state_dict(build(mmdet_cfg()), seed=2)


def assert_identical(a, b):
    assert list(a) == list(b)
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_mmdetr_to_mmdet3_and_back_is_identity(mmdetr_sd):
    mmdet3 = convert_state_dict(mmdetr_sd, 'mmdetr', 'mmdet3')
    assert set(mmdet3) == set(build(mmdet_cfg()).state_dict())
    assert_identical(convert_state_dict(mmdet3, 'mmdet3', 'mmdetr'),
                     mmdetr_sd)


def test_mmdet3_to_mmdetr_and_back_is_identity(mmdet3_sd):
    ours = convert_state_dict(mmdet3_sd, 'mmdet3', 'mmdetr')
    assert set(ours) == set(build(mmdetr_cfg()).state_dict())
    assert_identical(convert_state_dict(ours, 'mmdetr', 'mmdet3'), mmdet3_sd)


def test_every_layout_is_detected(mmdetr_sd, mmdet3_sd):
    official = official_state_dict(depth=18, d=64, ffn=128, enc=2, dec=2)
    mmdet2 = mmdet2_state_dict(mmdet3_sd)
    assert detect_layout(official) == 'official'
    assert detect_layout(mmdet2) == 'mmdet2'
    assert detect_layout(mmdet3_sd) == 'mmdet3'
    assert detect_layout(mmdetr_sd) == 'mmdetr'
    notes = []
    convert_state_dict(mmdet2, 'auto', notes=notes)
    assert notes == ['detected layout: mmdet2 (mmdet 2.x DETR)']


def test_pre_norm_and_learned_encoding_keys_are_mmdetr_keys():
    sd = build(
        mmdetr_cfg(
            normalize_before=True,
            positional_encoding=dict(
                type='LearnedPositionalEncoding', num_feats=32))).state_dict()
    assert any('encoder_norm' in k for k in sd)
    assert detect_layout(sd) == 'mmdetr'
    # mmdet 3.x's DETR has no pre-norm variant: refused, naming the keys
    with pytest.raises(CheckpointLayoutError, match='encoder_norm'):
        convert_state_dict(sd, 'mmdetr', 'mmdet3')


def test_unknown_and_ambiguous_layouts_are_refused(mmdet3_sd):
    odd = dict(mmdet3_sd)
    odd['neck.extra.weight'] = torch.zeros(1)
    odd['head.foo'] = torch.zeros(1)
    with pytest.raises(CheckpointLayoutError) as e:
        detect_layout(odd)
    assert 'Closest is mmdet3' in str(e.value)
    assert 'neck.extra.weight' in str(e.value) and 'head.foo' in str(e.value)
    with pytest.raises(CheckpointLayoutError, match='head.foo'):
        convert_state_dict(odd, 'mmdet3')
    # a bare backbone fits mmdet2, mmdet3 and mmdetr alike
    backbone = {k: v for k, v in mmdet3_sd.items() if k.startswith('backbone')}
    with pytest.raises(CheckpointLayoutError, match='several layouts'):
        detect_layout(backbone)
    with pytest.raises(CheckpointLayoutError, match='no weights'):
        detect_layout({})
    with pytest.raises(CheckpointLayoutError, match='unknown source layout'):
        convert_state_dict(mmdet3_sd, 'mmdet4')
    with pytest.raises(CheckpointLayoutError, match='cannot convert to'):
        convert_state_dict(mmdet3_sd, 'mmdet3', 'official')


def test_templates_have_the_same_placeholders_on_both_sides():
    for layout in LAYOUTS.values():
        for ours, theirs in layout.rules:
            assert sorted(re.findall(r'\{\w\}', ours)) == sorted(
                re.findall(r'\{\w\}', theirs)), (layout.name, ours)
            # and every mmdetr template is one of mmdetr's own
            assert (ours, ours) in LAYOUTS['mmdetr'].rules


def test_coco_category_ids_are_mmdets_classes_in_order():
    assert len(COCO_CATEGORY_IDS) == 80
    assert [OFFICIAL_COCO_NAMES[i] for i in COCO_CATEGORY_IDS
            ] == list(CocoDataset.METAINFO['classes'])


def test_official_classifier_rows_and_frozen_bn_buffers():
    official = official_state_dict(depth=18, d=64, ffn=128, enc=2, dec=2)
    notes = []
    ours = convert_state_dict(official, 'official', notes=notes)
    keep = list(COCO_CATEGORY_IDS) + [91]
    assert torch.equal(ours['bbox_head.fc_cls.weight'],
                       official['class_embed.weight'][keep])
    assert torch.equal(ours['bbox_head.fc_cls.bias'],
                       official['class_embed.bias'][keep])
    # every frozen BN gets num_batches_tracked = 0, right after its stats
    num_bn = sum(k.endswith('running_var') for k in official)
    tracked = [k for k in ours if k.endswith('num_batches_tracked')]
    assert len(tracked) == num_bn == 20
    assert all(ours[k].dtype == torch.long and ours[k] == 0 for k in tracked)
    keys = list(ours)
    assert keys[keys.index('backbone.bn1.running_var') +
                1] == 'backbone.bn1.num_batches_tracked'
    assert any('80 COCO classes' in n for n in notes)
    assert any('num_batches_tracked=0 to 20' in n for n in notes)
    # renamed tensors are the official ones (the strict load and the
    # numbers are tested with the model in test_convert_official.py)
    assert torch.equal(
        ours['bbox_head.transformer.decoder_layers.1.cross_attn.'
             'in_proj_weight'],
        official['transformer.decoder.layers.1.multihead_attn.'
                 'in_proj_weight'])


def test_official_classifier_of_another_size_is_kept():
    official = official_state_dict(depth=18, d=64, ffn=128, enc=2, dec=2,
                                   num_logits=4)
    notes = []
    ours = convert_state_dict(official, 'official', notes=notes)
    assert torch.equal(ours['bbox_head.fc_cls.weight'],
                       official['class_embed.weight'])
    assert any('4 logits' in n and 'num_classes=3' in n for n in notes)
