# Copyright (c) mmdetr contributors. All rights reserved.
"""mmdet 2.x and 3.x checkpoints, converted, make mmdetr compute what mmdet
3.3's DETR computes; and mmdetr's, converted back, load into mmdet 3.3.

mmdet 2.x cannot be installed next to mmdet 3.3 (it needs mmcv 1.x), so its
checkpoints are made here by renaming a real mmdet 3.3 DETR state dict to
mmdet 2.x's documented key names (``bbox_head.transformer.{encoder,decoder}.
layers.i.{attentions.0|attentions.1|ffns.0|norms.k}``,
``bbox_head.transformer.decoder.post_norm``, ``bbox_head.input_proj``,
``bbox_head.query_embedding``): the two versions' DETRs compute the same
function, only the module tree moved.

Every tensor is random (LayerNorm and BN weights too, not ones), so a
converter that crossed two tensors of one shape would show.
"""

import pytest
import torch
from mmengine.registry import MODELS, DefaultScope

from helpers import (assert_same_losses, assert_same_predictions, make_batch,
                     mmdet2_state_dict, mmdet_cfg, mmdetr_cfg, randomize_)
from mmdetr.checkpoints.convert import convert_state_dict, detect_layout


def build(cfg):
    with DefaultScope.overwrite_default_scope('mmdet'):
        return MODELS.build(cfg)


@pytest.fixture(scope='module')
def mmdet3_model():
    torch.manual_seed(0)
    return randomize_(build(mmdet_cfg()), seed=1)


@pytest.fixture(scope='module')
def mmdetr_model():
    return build(mmdetr_cfg())


@pytest.mark.parametrize('layout', ['mmdet3', 'mmdet2'])
def test_mmdet_checkpoint_matches_mmdet(layout, mmdet3_model, mmdetr_model):
    """Two images of different sizes (padding masks on)."""
    source = mmdet3_model.state_dict()
    if layout == 'mmdet2':
        source = mmdet2_state_dict(source)
    assert detect_layout(source) == layout
    mmdetr_model.load_state_dict(
        convert_state_dict(source, layout), strict=True)
    data = make_batch(num_boxes=(2, 5), seed=7)
    assert_same_losses(mmdet3_model, mmdetr_model, data)
    assert_same_predictions(mmdet3_model, mmdetr_model, data)


def test_mmdetr_checkpoint_loads_into_mmdet3(mmdetr_model):
    randomize_(mmdetr_model, seed=3)
    mmdet3 = build(mmdet_cfg())
    mmdet3.load_state_dict(
        convert_state_dict(mmdetr_model.state_dict(), 'mmdetr', 'mmdet3'),
        strict=True)
    data = make_batch(num_boxes=(4, 0), seed=8)
    assert_same_losses(mmdet3, mmdetr_model, data)
    assert_same_predictions(mmdet3, mmdetr_model, data)
