# Copyright (c) mmdetr contributors. All rights reserved.
"""mmdetr's DETR computes what mmdet 3.3's DETR computes, given the same
weights (converted with the checkpoint converter) and the same batch."""
import pytest
import torch
from scipy.optimize import linear_sum_assignment

from helpers import build_mmdet, build_mmdetr, make_batch, preprocess
from mmdetr.utils.convert import convert_state_dict


def paired_models(**arch):
    torch.manual_seed(0)
    ref = build_mmdet(**arch)
    ours = build_mmdetr(**arch)
    missing, unexpected = ours.load_state_dict(
        convert_state_dict(ref.state_dict(), 'mmdet3'), strict=True)
    assert not missing and not unexpected
    return ref, ours


def assert_same_predictions(ref, ours, data):
    """Raw outputs of every decoder layer agree, and so do the detections.

    Detections are compared as sets: with random weights many queries score
    within 1e-7 of each other, so the order of near-ties may differ; each of
    ours is paired with a reference detection (Hungarian matching on the
    differences) and every pair must agree.
    """
    ref.eval()
    ours.eval()
    with torch.no_grad():
        inputs = preprocess(ref, data, False)
        ref_cls, ref_box = ref(**inputs, mode='tensor')
        our_cls, our_box = ours(**inputs, mode='tensor')
        torch.testing.assert_close(our_cls[-1], ref_cls, rtol=1e-4,
                                   atol=1e-4)
        torch.testing.assert_close(our_box[-1], ref_box, rtol=1e-4,
                                   atol=1e-4)
        ref_out = ref.test_step(data)
        our_out = ours.test_step(data)
    for r, o in zip(ref_out, our_out):
        r, o = r.pred_instances, o.pred_instances
        assert len(o) == len(r) > 0
        torch.testing.assert_close(o.scores, r.scores, rtol=1e-4, atol=1e-5)
        cost = (torch.cdist(o.bboxes, r.bboxes, p=1) +
                1e4 * (o.scores[:, None] - r.scores[None]).abs() +
                1e4 * (o.labels[:, None] != r.labels[None]))
        rows, cols = linear_sum_assignment(cost.numpy())
        assert torch.equal(o.labels[rows], r.labels[cols])
        torch.testing.assert_close(
            o.bboxes[rows], r.bboxes[cols], rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(
            o.scores[rows], r.scores[cols], rtol=1e-4, atol=1e-5)


def assert_same_losses(ref, ours, data):
    ref.train()
    ours.train()
    ref_losses = ref(**preprocess(ref, data, True), mode='loss')
    our_losses = ours(**preprocess(ours, data, True), mode='loss')
    assert set(our_losses) == set(ref_losses)
    for key, value in ref_losses.items():
        torch.testing.assert_close(
            our_losses[key], value, rtol=1e-4, atol=1e-6, msg=key)
    return our_losses


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
