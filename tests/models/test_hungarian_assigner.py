# Copyright (c) mmdetr contributors. All rights reserved.
"""HungarianAssigner: ``assign`` with mmdet 3.x's contract for any match
cost, and ``match``, the batched matching of every layer and image."""
import itertools

import pytest
import torch
from mmdet.structures.bbox import bbox_cxcywh_to_xyxy
from mmengine.structures import InstanceData

from mmdetr.models import (BBoxL1Cost, ClassificationCost, HungarianAssigner,
                           IoUCost, SetTargets)
from references.reference_matching import reference_assign

COSTS = [
    dict(type='ClassificationCost', weight=1.),
    dict(type='BBoxL1Cost', weight=5.0, box_format='xywh'),
    dict(type='IoUCost', iou_mode='giou', weight=2.0)
]
IMG_META = dict(img_shape=(120, 160))


def random_instances(num_preds, num_gts, gen, num_classes=4):
    def boxes(n):
        xy = torch.rand(n, 2, generator=gen) * 80
        return torch.cat([xy, xy + 5 + torch.rand(n, 2, generator=gen) * 60],
                         1)

    pred = InstanceData(
        scores=torch.randn(num_preds, num_classes + 1, generator=gen),
        bboxes=boxes(num_preds))
    gt = InstanceData(
        bboxes=boxes(num_gts),
        labels=torch.randint(0, num_classes, (num_gts, ), generator=gen))
    return pred, gt


def brute_force_min(cost):
    """Minimum total cost over all injective maps gts -> preds."""
    cost = torch.as_tensor(cost).tolist()
    num_preds, num_gts = len(cost), len(cost[0])
    k = min(num_preds, num_gts)
    best = float('inf')
    if num_gts <= num_preds:
        for rows in itertools.permutations(range(num_preds), num_gts):
            best = min(best, sum(cost[r][c] for c, r in enumerate(rows)))
    else:
        for cols in itertools.permutations(range(num_gts), k):
            best = min(best, sum(cost[r][c] for r, c in enumerate(cols)))
    return best


def test_assigner_minimises_the_summed_costs(gen):
    assigner = HungarianAssigner(match_costs=COSTS)
    pred, gt = random_instances(6, 3, gen)
    result = assigner.assign(pred, gt, IMG_META)
    cost = sum(c(pred, gt, IMG_META) for c in assigner.match_costs)
    matched = (result.gt_inds > 0).nonzero().squeeze(1)
    assert len(matched) == 3
    total = cost[matched, result.gt_inds[matched] - 1].sum().item()
    assert total == pytest.approx(brute_force_min(cost.tolist()), abs=1e-5)
    assert torch.equal(result.labels[matched],
                       gt.labels[result.gt_inds[matched] - 1])
    assert (result.labels[result.gt_inds == 0] == -1).all()


def test_no_ground_truth_makes_everything_background(gen):
    pred, gt = random_instances(5, 0, gen)
    result = HungarianAssigner(COSTS).assign(pred, gt, IMG_META)
    assert result.num_gts == 0
    assert (result.gt_inds == 0).all() and (result.labels == -1).all()


def test_more_ground_truths_than_predictions(gen):
    pred, gt = random_instances(3, 7, gen)
    result = HungarianAssigner(COSTS).assign(pred, gt, IMG_META)
    assert (result.gt_inds > 0).all()  # every prediction is used
    assert len(set(result.gt_inds.tolist())) == 3


def test_single_cost_dict_and_empty_list():
    assert len(HungarianAssigner(dict(type='ClassificationCost'))
               .match_costs) == 1
    with pytest.raises(ValueError, match='match_costs'):
        HungarianAssigner([])
    with pytest.raises(AssertionError):  # as mmdet's assigner
        HungarianAssigner([])


def test_nan_costs_still_match(gen):
    """A diverged model predicts NaN: the matching still answers (the loss
    then reports the NaN)."""
    pred, gt = random_instances(4, 2, gen)
    pred.scores[0] = float('nan')
    result = HungarianAssigner(COSTS).assign(pred, gt, IMG_META)
    assert (result.gt_inds > 0).sum() == 2


def batch_of_instances(num_sets, num_preds, num_gts_list, gen, sizes,
                       num_classes=4):
    """Predictions for ``num_sets`` decoder layers of a batch, as the head
    hands them to ``match`` (normalised (cx, cy, w, h)), and the batch's
    targets."""
    scores = torch.randn(num_sets, len(num_gts_list), num_preds,
                         num_classes + 1, generator=gen)
    boxes = torch.cat([
        torch.rand(num_sets, len(num_gts_list), num_preds, 2, generator=gen) *
        0.6 + 0.2,
        torch.rand(num_sets, len(num_gts_list), num_preds, 2, generator=gen) *
        0.3 + 0.05
    ], -1)
    gt_labels, gt_bboxes, metas = [], [], []
    for (h, w), num_gts in zip(sizes, num_gts_list):
        factor = torch.tensor([w, h, w, h], dtype=torch.float32)
        gxy = torch.rand(num_gts, 2, generator=gen) * 0.6
        gwh = torch.rand(num_gts, 2, generator=gen) * 0.3 + 0.05
        gt_bboxes.append(torch.cat([gxy, gxy + gwh], -1) * factor)
        gt_labels.append(
            torch.randint(0, num_classes, (num_gts, ), generator=gen))
        metas.append(dict(img_shape=(h, w)))
    return scores, boxes, SetTargets.build(gt_bboxes, gt_labels, metas)


def as_gt_inds(matches, bs, num_preds):
    """``match``'s (image, prediction, ground truth) triples of every set
    as (num_sets, bs, num_preds) 1-based ground truths, 0: "no object"."""
    gt_inds = torch.zeros(len(matches), bs, num_preds, dtype=torch.long)
    for n, (img, query, gt) in enumerate(matches):
        gt_inds[n, img, query] = gt + 1
    return gt_inds


def one_image(scores, boxes, targets, n, i):
    """Set n of image i as mmdet's assign takes it (absolute boxes)."""
    num_gts = targets.num_gts[i]
    pred = InstanceData(
        scores=scores[n, i],
        bboxes=bbox_cxcywh_to_xyxy(boxes[n, i]) * targets.factors[i])
    gt = InstanceData(labels=targets.labels[i, :num_gts],
                      bboxes=targets.corners[i, :num_gts])
    return pred, gt, targets.img_metas[i]


@pytest.mark.parametrize('costs', [
    COSTS,
    [dict(type='BBoxL1Cost', weight=1.0, box_format='xyxy'),
     dict(type='IoUCost', iou_mode='iou', weight=3.0)],
])
def test_batch_matching_equals_per_image_reference(costs, gen):
    """One batched ``match`` for 3 layers x 5 images gives, for every
    (layer, image), what the per-image reference
    (tests/references/reference_matching.py) and ``assign`` give for that
    image alone; the images have no ground truth, fewer, as many, and more
    ground truths than the 6 predictions. The matches come ascending by
    (image, prediction)."""
    num_gts = [0, 2, 6, 9, 4]
    sizes = [(120, 160), (300, 200), (64, 64), (480, 640), (100, 333)]
    scores, boxes, targets = batch_of_instances(3, 6, num_gts, gen, sizes)
    assigner = HungarianAssigner(costs)
    matches = assigner.match(scores, boxes, targets)
    assert len(matches) == 3
    for img, query, gt in matches:
        assert img.dtype == query.dtype == gt.dtype == torch.long
        order = img * 6 + query
        assert torch.equal(order, order.sort().values)
    gt_inds = as_gt_inds(matches, 5, 6)
    for n in range(3):
        for i in range(5):
            pred, gt, meta = one_image(scores, boxes, targets, n, i)
            want, labels = reference_assign(assigner.match_costs, pred, gt,
                                            meta)
            assert torch.equal(gt_inds[n, i], want)
            single = assigner.assign(pred, gt, meta)
            assert torch.equal(single.gt_inds, want)
            assert torch.equal(single.labels, labels)
            assert single.num_gts == num_gts[i]
            assert (want > 0).sum().item() == min(6, num_gts[i])
    # the layers really differ, so equality above is not by accident
    assert not (gt_inds[0, 3] == gt_inds[1, 3]).all()


def test_batch_matching_without_any_ground_truth(gen):
    scores, boxes, targets = batch_of_instances(2, 5, [0, 0], gen,
                                                [(50, 60), (70, 80)])
    matches = HungarianAssigner(COSTS).match(scores, boxes, targets)
    assert len(matches) == 2
    assert all(len(t) == 0 for triple in matches for t in triple)


def test_batch_matching_with_mmdet_costs(gen):
    """Costs without ``batched`` (mmdet's own) still work, scored image by
    image into the same padded costs, with the answer of the per-image
    reference and of mmdetr's costs."""
    from mmdet.models.task_modules.assigners import match_cost as mmdet_costs
    scores, boxes, targets = batch_of_instances(2, 5, [3, 7], gen,
                                                [(50, 60), (70, 80)])
    theirs = HungarianAssigner([
        mmdet_costs.ClassificationCost(weight=1.),
        mmdet_costs.BBoxL1Cost(weight=5., box_format='xywh'),
        mmdet_costs.IoUCost(iou_mode='giou', weight=2.)
    ])
    expected = as_gt_inds(
        HungarianAssigner(COSTS).match(scores, boxes, targets), 2, 5)
    got = as_gt_inds(theirs.match(scores, boxes, targets), 2, 5)
    assert torch.equal(got, expected)
    for n in range(2):
        for i in range(2):
            want, _ = reference_assign(theirs.match_costs,
                                       *one_image(scores, boxes, targets, n,
                                                  i))
            assert torch.equal(got[n, i], want)


def test_batch_matching_checks_lengths(gen):
    scores, boxes, targets = batch_of_instances(1, 5, [1, 2], gen,
                                                [(50, 60), (70, 80)])
    with pytest.raises(ValueError, match='targets of 2 images'):
        HungarianAssigner(COSTS).match(scores[:, :1], boxes[:, :1], targets)


@pytest.mark.parametrize('cost', [
    dict(type='DiceCost'),
    dict(type='CrossEntropyLossCost'),
    dict(type='FocalLossCost', binary_input=True),
])
def test_assign_takes_any_registered_cost_mask_costs_too(cost, gen):
    """mmdet 3.x's contract: ``assign`` calls each cost with the instances;
    mask costs read ``masks`` (no boxes at all)."""
    gt = InstanceData(labels=torch.tensor([1, 20]),
                      masks=torch.randint(0, 2, (2, 10, 10), generator=gen))
    pred = InstanceData(scores=torch.rand(4, 25, generator=gen),
                        masks=torch.rand(4, 10, 10, generator=gen))
    assigner = HungarianAssigner(cost)
    result = assigner.assign(pred, gt, img_meta=dict(img_shape=(10, 10)))
    matched = result.gt_inds > 0
    assert matched.sum() == 2 and (result.labels[matched] > -1).all()
    want, _ = reference_assign(assigner.match_costs, pred, gt,
                               dict(img_shape=(10, 10)))
    assert torch.equal(result.gt_inds, want)
    empty = InstanceData(labels=torch.zeros(0, dtype=torch.long),
                         masks=torch.zeros(0, 10, 10, dtype=torch.long))
    result = assigner.assign(pred, empty, img_meta=None)
    assert (result.gt_inds == 0).all() and (result.labels == -1).all()


def test_l1_cost_without_image_size_is_named(gen):
    pred, gt = random_instances(4, 2, gen)
    with pytest.raises(ValueError, match='img_shape'):
        HungarianAssigner(COSTS).assign(pred, gt, None)


# ------------------------------------------------------------ match costs
COST_META = dict(img_shape=(100, 200))  # h, w


def instances():
    pred = InstanceData(
        scores=torch.tensor([[2., 0., -1.], [0., 1., 0.]]),
        bboxes=torch.tensor([[0., 0., 100., 50.], [50., 50., 150., 100.]]))
    gt = InstanceData(
        labels=torch.tensor([1, 0]),
        bboxes=torch.tensor([[0., 0., 100., 50.], [100., 0., 200., 100.]]))
    return pred, gt


def test_classification_cost_is_minus_softmax_probability():
    pred, gt = instances()
    cost = ClassificationCost(weight=2.)(pred, gt, COST_META)
    p = torch.softmax(pred.scores, -1)
    for i in range(2):
        for j in range(2):
            assert cost[i, j] == pytest.approx(-2 * p[i, gt.labels[j]].item())


@pytest.mark.parametrize('box_format', ['xyxy', 'xywh'])
def test_bbox_l1_cost_on_normalised_boxes(box_format):
    pred, gt = instances()
    cost = BBoxL1Cost(weight=5., box_format=box_format)(pred, gt, COST_META)

    def norm(b):
        x1, y1, x2, y2 = b[0] / 200, b[1] / 100, b[2] / 200, b[3] / 100
        if box_format == 'xywh':
            return [(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1]
        return [x1, y1, x2, y2]

    for i in range(2):
        for j in range(2):
            a, b = norm(pred.bboxes[i].tolist()), norm(gt.bboxes[j].tolist())
            expected = 5 * sum(abs(u - v) for u, v in zip(a, b))
            assert cost[i, j].item() == pytest.approx(expected, abs=1e-6)


def giou(a, b):
    ix1, iy1 = max(a[0], b[0]), max(a[1], b[1])
    ix2, iy2 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(ix2 - ix1, 0) * max(iy2 - iy1, 0)
    area = lambda r: (r[2] - r[0]) * (r[3] - r[1])  # noqa: E731
    union = area(a) + area(b) - inter
    ex = (max(a[2], b[2]) - min(a[0], b[0])) * (max(a[3], b[3]) - min(a[1], b[1]))
    return inter / union, inter / union - (ex - union) / ex


@pytest.mark.parametrize('mode', ['iou', 'giou'])
def test_iou_cost_is_minus_overlap(mode):
    pred, gt = instances()
    cost = IoUCost(iou_mode=mode, weight=2.)(pred, gt, COST_META)
    for i in range(2):
        for j in range(2):
            iou, g = giou(pred.bboxes[i].tolist(), gt.bboxes[j].tolist())
            expected = -2 * (g if mode == 'giou' else iou)
            assert cost[i, j].item() == pytest.approx(expected, abs=1e-6)
    assert cost[0, 0].item() == pytest.approx(-2.)  # identical boxes


def test_bad_cost_options_are_named():
    with pytest.raises(ValueError, match='box_format'):
        BBoxL1Cost(box_format='cxcy')
    with pytest.raises(ValueError, match='iou_mode'):
        IoUCost(iou_mode='diou')


def test_batched_costs_are_the_one_image_costs_of_each_image(gen):
    """``batched`` scores (layers, images, predictions) against the
    targets, each image in its own size: block (n, i) is the one-image call
    (mmdet's, absolute boxes) on set n of image i; the class and IoU costs
    bit for bit, the L1 cost (which the one-image call normalises there and
    back) to float rounding."""
    scores, boxes, targets = batch_of_instances(3, 4, [5, 2], gen,
                                                [(100, 200), (300, 120)])
    for cost, exact in ((ClassificationCost(weight=2.), True),
                        (BBoxL1Cost(weight=5., box_format='xywh'), False),
                        (BBoxL1Cost(weight=5., box_format='xyxy'), False),
                        (IoUCost(iou_mode='giou', weight=2.), True)):
        out = cost.batched(scores, boxes, targets)
        assert out.shape == (3, 2, 4, 5)
        for n in range(3):
            for i, num_gts in enumerate(targets.num_gts):
                single = cost(*one_image(scores, boxes, targets, n, i))
                torch.testing.assert_close(
                    out[n, i, :, :num_gts], single,
                    **(dict(rtol=0, atol=0) if exact else {}))
