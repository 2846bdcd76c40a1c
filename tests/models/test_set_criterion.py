# Copyright (c) mmdetr contributors. All rights reserved.
"""SetCriterion: what ``match`` packs for the losses is consistent with the
matching, and the losses follow the paper's normalisation."""
import pytest
import torch
from mmdet.structures.bbox import bbox_cxcywh_to_xyxy

from mmdetr.models import SetCriterion
from mmdetr.models.detr_head import DEFAULT_ASSIGNER

LOSSES = dict(
    loss_cls=dict(type='CrossEntropyLoss', bg_cls_weight=0.1,
                  use_sigmoid=False, loss_weight=1.0, class_weight=1.0),
    loss_bbox=dict(type='L1Loss', loss_weight=5.0),
    loss_iou=dict(type='GIoULoss', loss_weight=2.0))


def criterion(num_classes=4):
    return SetCriterion(num_classes, DEFAULT_ASSIGNER, **LOSSES)


def predictions(num_sets, bs, num_preds, gen, num_classes=4):
    cls = torch.randn(num_sets, bs, num_preds, num_classes + 1,
                      generator=gen)
    box = torch.rand(num_sets, bs, num_preds, 4, generator=gen) * 0.5 + 0.25
    return cls, box


def ground_truths(num_gts, sizes, gen, num_classes=4):
    boxes, labels, metas = [], [], []
    for n, (h, w) in zip(num_gts, sizes):
        xy = torch.rand(n, 2, generator=gen) * torch.tensor([w, h]) * 0.5
        wh = (torch.rand(n, 2, generator=gen) * 0.4 + 0.1) * torch.tensor(
            [w, h])
        boxes.append(torch.cat([xy, xy + wh], 1))
        labels.append(torch.randint(0, num_classes, (n, ), generator=gen))
        metas.append(dict(img_shape=(h, w)))
    return boxes, labels, metas


def test_match_packs_what_the_losses_need(gen):
    """Per set: the (image, prediction, ground truth) triples of the
    matches agree with ``gt_inds``, the class targets with the matched
    labels, the counts and normalisers with the number of matches."""
    num_gts = [2, 0, 4]
    crit = criterion()
    cls, box = predictions(2, 3, 5, gen)
    gt_bboxes, gt_labels, metas = ground_truths(
        num_gts, [(50, 60), (70, 80), (90, 40)], gen)
    matches = crit.match(cls, box, gt_bboxes, gt_labels, metas)
    assert len(matches) == 2 and matches.num_pos == [6, 6]
    for n in range(2):
        pos = torch.nonzero(matches.gt_inds[n])
        assert torch.equal(matches.pos_img[n], pos[:, 0])
        assert torch.equal(matches.pos_query[n], pos[:, 1])
        assert torch.equal(matches.pos_gt[n],
                           matches.gt_inds[n][pos[:, 0], pos[:, 1]] - 1)
        for i, q, j in zip(*(t.tolist() for t in (
                matches.pos_img[n], matches.pos_query[n], matches.pos_gt[n]))):
            assert matches.labels[n, i, q] == gt_labels[i][j]
            assert torch.equal(matches.gt_bboxes[i, j], gt_bboxes[i][j])
        unmatched = matches.gt_inds[n] == 0
        assert (matches.labels[n][unmatched] == 4).all()
        # paper: "no object" weighs bg_cls_weight in the class normaliser
        assert matches.cls_avg_factor[n] == pytest.approx(6 + 9 * 0.1)
        assert matches.box_avg_factor[n] == 6.0
    assert torch.equal(matches.factors[2], torch.tensor([40., 90., 40., 90.]))


def test_one_set_views_know_their_place(gen):
    crit = criterion()
    cls, box = predictions(3, 2, 4, gen)
    gt_bboxes, gt_labels, metas = ground_truths([1, 2], [(30, 40)] * 2, gen)
    matches = crit.match(cls, box, gt_bboxes, gt_labels, metas)
    sets = matches.sets()
    assert [s.first for s in sets] == [0, 1, 2]
    assert [s.is_last for s in sets] == [False, False, True]
    assert matches.is_last  # the whole contains the last set
    for n, one in enumerate(sets):
        assert torch.equal(one.gt_inds[0], matches.gt_inds[n])
        assert one.num_pos == [matches.num_pos[n]]


def test_losses_normalise_as_the_paper(gen):
    """Box losses are means over the matched boxes, the classification
    loss is normalised by the total class weight; no ground truth gives
    zero box losses and a positive classification loss."""
    crit = criterion()
    cls, box = predictions(1, 2, 6, gen)
    gt_bboxes, gt_labels, metas = ground_truths([3, 1], [(64, 48)] * 2, gen)
    matches = crit.match(cls, box, gt_bboxes, gt_labels, metas)
    loss_cls, loss_bbox, loss_iou = crit.loss(cls[0], box[0], matches)
    img, query, gt = matches.pos_img[0], matches.pos_query[0], \
        matches.pos_gt[0]
    factor = matches.factors[img]
    target = matches.gt_bboxes[img, gt] / factor
    pred_xyxy = bbox_cxcywh_to_xyxy(box[0][img, query])
    l1 = (box[0][img, query] - torch.cat(
        [(target[:, :2] + target[:, 2:]) / 2, target[:, 2:] - target[:, :2]],
        1)).abs().sum() / 4
    torch.testing.assert_close(loss_bbox, 5.0 * l1)
    assert pred_xyxy.shape == (4, 4) and loss_iou > 0 and loss_cls > 0

    empty = [torch.zeros(0, 4)] * 2, [torch.zeros(0, dtype=torch.long)] * 2
    matches = crit.match(cls, box, *empty, metas)
    loss_cls, loss_bbox, loss_iou = crit.loss(cls[0], box[0], matches)
    assert loss_cls > 0 and loss_bbox == 0 and loss_iou == 0
