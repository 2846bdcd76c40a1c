# Copyright (c) mmdetr contributors. All rights reserved.
"""DuplicateWeightDETRHead(duplicate_cls_weight=w): a heavier "no object"
weight for unmatched predictions on a ground truth; training only."""
import pytest
import torch
import torch.nn.functional as F

from helpers import (assert_identical_predictions, build_mmdetr, count_step,
                     make_batch, mmdetr_cfg, preprocess)
from mmdetr.extras.duplicate_weight import duplicate_label_weights
from mmdetr.models import SetTargets

BG = 0.1


def weighted_cfg(weight=1.0, iou_thr=0.5, layers='all', **overrides):
    cfg = mmdetr_cfg(**overrides)
    cfg['bbox_head']['loss_cls']['bg_cls_weight'] = BG
    cfg['bbox_head']['type'] = 'DuplicateWeightDETRHead'
    cfg['bbox_head']['duplicate_cls_weight'] = weight
    cfg['bbox_head']['duplicate_iou_thr'] = iou_thr
    cfg['bbox_head']['duplicate_weight_layers'] = layers
    return cfg


def plain_cfg():
    cfg = mmdetr_cfg()
    cfg['bbox_head']['loss_cls']['bg_cls_weight'] = BG
    return cfg


def one_object_case(head):
    """One 100 x 100 image with one object, three predictions: one on the
    object (matched), one shifted by 10 px (IoU 0.6, a would-be
    duplicate), one elsewhere (IoU 0)."""
    num_query = 3
    head.num_query = num_query
    scores = torch.zeros(1, num_query, head.cls_out_channels)
    scores[0, :, 0] = torch.tensor([4.0, 3.0, 0.0])  # class 0
    scores[0, :, -1] = torch.tensor([1.0, 1.0, 2.0])  # no object
    # normalised (cx, cy, w, h)
    boxes = torch.tensor([[[0.40, 0.40, 0.40, 0.40],
                           [0.50, 0.40, 0.40, 0.40],
                           [0.85, 0.85, 0.10, 0.10]]])
    gt_bboxes = [torch.tensor([[20.0, 20.0, 60.0, 60.0]])]
    gt_labels = [torch.tensor([0])]
    metas = [dict(img_shape=(100, 100), batch_input_shape=(100, 100))]
    return scores, boxes, gt_bboxes, gt_labels, metas


def label_weights(head, scores, boxes, gt_bboxes, gt_labels, metas):
    """The head's label weights of one layer's predictions."""
    targets = SetTargets.build(gt_bboxes, gt_labels, metas)
    indices = head.assigner.match(scores[None], boxes[None], targets)
    return head.label_weights(boxes[None], indices, targets)[0]


@pytest.mark.parametrize('weight', [0.5, 2.0])
def test_loss_weighs_the_overlapping_unmatched_prediction(weight):
    torch.manual_seed(0)
    head = build_mmdetr(weighted_cfg(weight)).bbox_head
    scores, boxes, gt_bboxes, gt_labels, metas = one_object_case(head)
    losses, _ = head.loss(scores[None], boxes[None],
                          SetTargets.build(gt_bboxes, gt_labels, metas))
    loss_cls = losses['loss_cls']
    bg = head.num_classes
    ce = F.cross_entropy(scores[0], torch.tensor([0, bg, bg]),
                         reduction='none')
    # matched 1, duplicate w, background query bg; DETR's normaliser
    expected = (ce[0] + weight * ce[1] + BG * ce[2]) / (1 + 2 * BG)
    torch.testing.assert_close(loss_cls, expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(label_weights(head, scores, boxes, gt_bboxes,
                                             gt_labels, metas),
                               torch.tensor([1.0, weight / BG, 1.0]))


def test_threshold_decides_what_is_a_duplicate():
    torch.manual_seed(0)
    head = build_mmdetr(weighted_cfg(2.0, iou_thr=0.7)).bbox_head
    scores, boxes, gt_bboxes, gt_labels, metas = one_object_case(head)
    # IoU 0.6 < 0.7: DETR's weights
    assert torch.equal(
        label_weights(head, scores, boxes, gt_bboxes, gt_labels, metas),
        torch.ones(3))


def test_label_weights_without_ground_truth_are_ones():
    boxes = torch.rand(2, 4, 4) * 10
    boxes[..., 2:] += boxes[..., :2]
    labels = torch.full((2, 4), 3)
    weights = duplicate_label_weights(boxes, torch.zeros(2, 0, 4), labels, 3,
                                      BG, 1.0, 0.5)
    assert torch.equal(weights, torch.ones(8))


def losses_with_and_without(weight, iou_thr=0.5, layers='all'):
    """Losses of one batch, same weights: the head with
    ``duplicate_cls_weight=weight`` and plain DETR (no-object ``BG``)."""
    torch.manual_seed(0)
    model = build_mmdetr(weighted_cfg(weight, iou_thr, layers))
    plain = build_mmdetr(plain_cfg())
    plain.load_state_dict(model.state_dict(), strict=True)
    data = make_batch(num_boxes=(2, 5))
    model.train()
    plain.train()
    ours = model(**preprocess(model, data, True), mode='loss')
    ref = plain(**preprocess(plain, data, True), mode='loss')
    assert ours.keys() == ref.keys()
    return ours, ref


def test_weight_equal_to_bg_weight_is_detr_loss_bit_for_bit():
    ours, ref = losses_with_and_without(BG)
    for key in ref:
        assert torch.equal(ours[key], ref[key]), key


def test_heavier_weight_changes_only_the_class_losses():
    ours, ref = losses_with_and_without(5.0, iou_thr=0.0)
    for key in ref:
        if key.endswith('loss_cls'):
            assert ours[key] > ref[key], key
        else:
            assert torch.equal(ours[key], ref[key]), key


def test_last_layer_only_leaves_the_other_layers_as_detr():
    ours, ref = losses_with_and_without(5.0, iou_thr=0.0, layers='last')
    every_layer, _ = losses_with_and_without(5.0, iou_thr=0.0)
    assert any(key.startswith('d0.') for key in ref)
    for key in ref:
        if key == 'loss_cls':  # the last layer's: weighed as with 'all'
            assert ours[key] > ref[key]
            assert torch.equal(ours[key], every_layer[key])
        else:  # the other layers' and every box loss: DETR's
            assert torch.equal(ours[key], ref[key]), key


def test_inference_is_plain_detr_bit_for_bit():
    torch.manual_seed(0)
    model = build_mmdetr(weighted_cfg(2.0))
    plain = build_mmdetr(plain_cfg())
    result = plain.load_state_dict(model.state_dict(), strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    assert_identical_predictions(plain, model, make_batch(num_boxes=(2, 3)))


def test_adds_no_host_sync():
    counter, _ = count_step(build_mmdetr(weighted_cfg(2.0)))
    assert counter.counts == {'to_host': 2}, counter.events
    assert counter.copies == {'to_device': 1}, counter.events


@pytest.mark.parametrize('key,bad', [('duplicate_cls_weight', 0),
                                     ('duplicate_cls_weight', -1.0),
                                     ('duplicate_cls_weight', '2'),
                                     ('duplicate_iou_thr', 1.0),
                                     ('duplicate_iou_thr', -0.1),
                                     ('duplicate_weight_layers', 'first')])
def test_bad_settings_are_named(key, bad):
    cfg = weighted_cfg(2.0)
    cfg['bbox_head'][key] = bad
    with pytest.raises(ValueError, match=key):
        build_mmdetr(cfg)


def test_needs_a_no_object_weight():
    cfg = weighted_cfg(2.0)
    cfg['bbox_head']['loss_cls']['bg_cls_weight'] = 0
    with pytest.raises(ValueError, match='duplicate_cls_weight.*bg_cls'):
        build_mmdetr(cfg)
