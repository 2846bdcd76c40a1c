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
import re

import pytest
import torch
from mmengine.registry import MODELS, DefaultScope

from helpers import make_batch, mmdet_cfg, mmdetr_cfg
from mmdetr.utils.convert import convert_state_dict, detect_layout
from test_parity_mmdet import assert_same_losses, assert_same_predictions

# mmdet 3.x key -> mmdet 2.x key (mmdet 2.28 with mmcv 1.x); the rest
# (backbone, bbox_head.fc_cls / reg_ffn / fc_reg) is named alike
_TO_MMDET2 = [
    (r'^neck\.convs\.0\.conv\.', 'bbox_head.input_proj.'),
    (r'^query_embedding\.', 'bbox_head.query_embedding.'),
    (r'^decoder\.post_norm\.', 'bbox_head.transformer.decoder.post_norm.'),
    (r'^(encoder|decoder)\.layers\.(\d+)\.self_attn\.',
     r'bbox_head.transformer.\1.layers.\2.attentions.0.'),
    (r'^decoder\.layers\.(\d+)\.cross_attn\.',
     r'bbox_head.transformer.decoder.layers.\1.attentions.1.'),
    (r'^(encoder|decoder)\.layers\.(\d+)\.ffn\.',
     r'bbox_head.transformer.\1.layers.\2.ffns.0.'),
    (r'^(encoder|decoder)\.layers\.(\d+)\.norms\.',
     r'bbox_head.transformer.\1.layers.\2.norms.'),
]


def mmdet2_state_dict(mmdet3_state_dict):
    """An mmdet 3.x DETR state dict under mmdet 2.x's keys."""
    out = {}
    for key, value in mmdet3_state_dict.items():
        for pattern, repl in _TO_MMDET2:
            key, n = re.subn(pattern, repl, key)
            if n:
                break
        out[key] = value
    return out


def build(cfg):
    with DefaultScope.overwrite_default_scope('mmdet'):
        return MODELS.build(cfg)


def randomize_(model, seed):
    """Perturb every 1-D float tensor (norm weights, biases, BN statistics)
    and keep BN variances positive; weight matrices are already random."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for key, value in model.state_dict().items():
            if not value.is_floating_point():
                continue
            if key.endswith('running_var'):
                value.copy_(torch.rand(value.shape, generator=gen) + 0.5)
            elif value.dim() == 1:
                value.add_(torch.randn(value.shape, generator=gen) * 0.1)
    return model


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
