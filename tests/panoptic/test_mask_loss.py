# Copyright (c) mmdetr contributors. All rights reserved.
"""DETR's mask losses: values worked out by hand, official normalisation
(number of boxes, mean over the padded canvas), matched selection."""
import math

import pytest
import torch

from mmdetr.panoptic import (DETRMaskLoss, dice_loss, matched_mask_targets,
                             sigmoid_focal_loss)
from mmdetr.registry import build_model


def test_focal_and_dice_at_zero_logits_by_hand():
    """Logit 0: p = 0.5 everywhere. Focal per pixel: ln 2 * 0.5^2 * alpha_t
    (0.25 on positives, 0.75 on negatives). Dice: 1 - (2*0.5*|T| + 1) /
    (0.5*N + |T| + 1)."""
    targets = torch.tensor([[1., 0., 0., 0.], [1., 1., 0., 0.]])
    logits = torch.zeros_like(targets)
    per_pos, per_neg = math.log(2) * 0.25 * 0.25, math.log(2) * 0.25 * 0.75
    focal = ((per_pos + 3 * per_neg) / 4 + (2 * per_pos + 2 * per_neg) / 4)
    dice = (1 - (1 + 1) / (2 + 1 + 1)) + (1 - (2 + 1) / (2 + 2 + 1))
    assert sigmoid_focal_loss(logits, targets, 2.0).item() == \
        pytest.approx(focal / 2)
    assert dice_loss(logits, targets, 2.0).item() == pytest.approx(dice / 2)
    # normalised by the number of boxes, not the number of masks
    assert sigmoid_focal_loss(logits, targets, 4.0).item() == \
        pytest.approx(focal / 4)


def test_confident_right_answers_cost_almost_nothing():
    targets = (torch.rand(3, 50, generator=torch.Generator().manual_seed(0))
               > 0.5).float()
    logits = (targets * 2 - 1) * 20
    assert sigmoid_focal_loss(logits, targets, 3.0) < 1e-12
    # dice keeps its +1 smoothing: small, not 0
    assert dice_loss(logits, targets, 3.0) < 0.05
    assert dice_loss(-logits, targets, 3.0) > 0.9


def test_matched_targets_are_padded_to_the_canvas_in_match_order():
    gt = [torch.ones(3, 6, 10, dtype=torch.bool),
          torch.ones(1, 12, 7, dtype=torch.bool)]
    gt[0][2, 0, 0] = False  # tells mask 2 from mask 1
    targets = matched_mask_targets(gt, torch.tensor([0, 0, 1]),
                                   torch.tensor([1, 2, 0]), (12, 20))
    assert targets.shape == (3, 12, 20) and targets.dtype == torch.float32
    assert targets[0, :6, :10].all() and targets[0].sum() == 60
    assert targets[1].sum() == 59 and targets[1, 0, 0] == 0
    assert targets[2, :, :7].all() and targets[2].sum() == 84
    with pytest.raises(ValueError, match='do not fit the canvas'):
        matched_mask_targets(gt, torch.tensor([0]), torch.tensor([0]),
                             (10, 20))


def test_loss_upsamples_predictions_to_the_canvas_and_counts_padding():
    """Official: predictions at stride 4 are upsampled (bilinear) to the
    targets' padded size and every canvas pixel counts, padding too."""
    loss = build_model(dict(type='DETRMaskLoss'))
    assert isinstance(loss, DETRMaskLoss)
    # a constant prediction upsamples to the same constant
    preds = torch.full((1, 2, 3), 0.7)
    targets = torch.zeros(1, 8, 12)
    targets[0, :4, :6] = 1
    out = loss(preds, targets, num_boxes=1.0)
    flat_logits = torch.full((1, 96), 0.7)
    assert out['loss_mask'].item() == pytest.approx(
        sigmoid_focal_loss(flat_logits, targets.flatten(1), 1.0).item())
    assert out['loss_dice'].item() == pytest.approx(
        dice_loss(flat_logits, targets.flatten(1), 1.0).item())
    # more padding (zeros) on the canvas changes the focal mean
    wider = torch.zeros(1, 8, 24)
    wider[0, :4, :6] = 1
    assert loss(preds, wider, 1.0)['loss_mask'] != out['loss_mask']


def test_loss_weights_and_empty_matches():
    loss = DETRMaskLoss(loss_weight_focal=2.0, loss_weight_dice=0.5)
    preds = torch.randn(2, 4, 4, requires_grad=True)
    targets = (torch.rand(2, 16, 16) > 0.5).float()
    out = loss(preds, targets, 2.0)
    base = DETRMaskLoss()(preds, targets, 2.0)
    assert out['loss_mask'].item() == pytest.approx(
        2 * base['loss_mask'].item())
    assert out['loss_dice'].item() == pytest.approx(
        0.5 * base['loss_dice'].item())
    (out['loss_mask'] + out['loss_dice']).backward()
    assert preds.grad.abs().sum() > 0
    empty = loss(preds[:0], targets[:0], 1.0)
    assert empty['loss_mask'].item() == 0 and empty['loss_dice'].item() == 0
    assert empty['loss_mask'].requires_grad
    with pytest.raises(ValueError, match='2 predicted masks for 1 targets'):
        loss(preds, targets[:1], 1.0)


def test_padded_batch_of_two_matches_the_official_reference(gen):
    from references.reference_panoptic import official_mask_losses
    preds = torch.randn(2, 6, 5, 7, generator=gen)
    gt = [torch.rand(3, 20, 28, generator=gen) > 0.5,
          torch.rand(2, 16, 22, generator=gen) > 0.5]
    indices = [(torch.tensor([4, 1]), torch.tensor([2, 0])),
               (torch.tensor([0, 5]), torch.tensor([1, 0]))]
    num_boxes = 5.0  # every ground truth of the batch, matched or not
    pos_img = torch.tensor([0, 0, 1, 1])
    pos_query = torch.cat([q for q, _ in indices])
    pos_gt = torch.cat([g for _, g in indices])
    ours = DETRMaskLoss()(preds[pos_img, pos_query],
                          matched_mask_targets(gt, pos_img, pos_gt, (20, 28)),
                          num_boxes)
    ref = official_mask_losses(preds, gt, indices, num_boxes)
    assert ours['loss_mask'].item() == pytest.approx(ref['loss_mask'],
                                                     rel=1e-5)
    assert ours['loss_dice'].item() == pytest.approx(ref['loss_dice'],
                                                     rel=1e-5)
