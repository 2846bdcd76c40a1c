# Copyright (c) mmdetr contributors. All rights reserved.
"""mmdetr's DETR computes what mmdet 3.3's DETR computes, given the same
weights (converted with the checkpoint converter) and the same batch."""
import pytest
import torch

from helpers import (assert_same_losses, assert_same_predictions, build_mmdet,
                     build_mmdetr, make_batch)
from mmdetr.checkpoints.convert import convert_state_dict


def paired_models(**arch):
    torch.manual_seed(0)
    ref = build_mmdet(**arch)
    ours = build_mmdetr(**arch)
    missing, unexpected = ours.load_state_dict(
        convert_state_dict(ref.state_dict(), 'mmdet3'), strict=True)
    assert not missing and not unexpected
    return ref, ours


@pytest.mark.parametrize('num_boxes', [(0, 7), (1, 30)])
def test_tiny_detr_matches_mmdet(num_boxes):
    ref, ours = paired_models()
    data = make_batch(num_boxes=num_boxes, seed=sum(num_boxes))
    losses = assert_same_losses(ref, ours, data)
    # the 2+2-layer model reports 3 loss terms per decoder layer
    assert len(losses) == 6 and 'd0.loss_cls' in losses
    assert_same_predictions(ref, ours, data)


def test_more_boxes_than_queries_matches_mmdet():
    ref, ours = paired_models(queries=5)
    losses = assert_same_losses(ref, ours,
                                make_batch(num_boxes=(9, 2), seed=3))
    assert all(torch.isfinite(v) for v in losses.values())


def test_parity_fails_when_a_weight_is_misplaced():
    """The parity check is sharp: swapping two decoder layers' FFNs breaks
    it."""
    ref, ours = paired_models()
    layers = ours.bbox_head.transformer.decoder_layers
    w0 = layers[0].linear1.weight.data.clone()
    layers[0].linear1.weight.data.copy_(layers[1].linear1.weight.data)
    layers[1].linear1.weight.data.copy_(w0)
    with pytest.raises(AssertionError):
        assert_same_predictions(ref, ours, make_batch(num_boxes=(1, 3)))


@pytest.mark.slow
def test_full_size_r50_detr_matches_mmdet():
    """R50, 256 dims, 6+6 layers, 100 queries, 80 classes."""
    arch = dict(depth=50, embed_dims=256, num_heads=8, ffn=2048, enc=6,
                dec=6, queries=100, num_classes=80)
    ref, ours = paired_models(**arch)
    data = make_batch(
        sizes=((320, 416), (384, 288)), num_boxes=(1, 12), num_classes=80,
        seed=5)
    assert_same_losses(ref, ours, data)
    assert_same_predictions(ref, ours, data)
