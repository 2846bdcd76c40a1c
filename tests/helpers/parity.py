# Copyright (c) mmdetr contributors. All rights reserved.
"""Comparisons of mmdetr's DETR with a reference model (mmdet 3.3's) on the
same batch: raw outputs, detections and every loss term."""
import copy

import torch
from scipy.optimize import linear_sum_assignment

from .batches import preprocess


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


def assert_identical_predictions(ref, ours, data):
    """``predict`` of the two models gives bit-identical detections (models
    with the same inference computation, e.g. one with training-only
    parts)."""
    ref.eval()
    ours.eval()
    inputs = preprocess(ref, data, False)
    ref_out = ref.predict(inputs['inputs'],
                          copy.deepcopy(inputs['data_samples']))
    our_out = ours.predict(inputs['inputs'],
                           copy.deepcopy(inputs['data_samples']))
    assert len(our_out) == len(ref_out) > 0
    for r, o in zip(ref_out, our_out):
        assert len(o.pred_instances) > 0
        for key in ('bboxes', 'scores', 'labels'):
            assert torch.equal(o.pred_instances[key], r.pred_instances[key])


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
