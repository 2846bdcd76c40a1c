# Copyright (c) mmdetr contributors. All rights reserved.
"""HungarianAssigner: ``assign`` with mmdet 3.x's contract for any match
cost, and ``match``, the batched matching of every layer and image."""
import itertools

import numpy as np
import pytest
import torch
from mmengine.structures import InstanceData

from mmdetr.models import HungarianAssigner
from mmdetr.models.hungarian_assigner import solve_assignment
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


@pytest.mark.parametrize('num_preds,num_gts', [(5, 3), (4, 4), (3, 5)])
def test_solver_finds_the_optimum(num_preds, num_gts, gen):
    for _ in range(5):
        cost = torch.rand(num_preds, num_gts, generator=gen)
        rows, cols = solve_assignment(cost.numpy())
        assert len(rows) == min(num_preds, num_gts)
        assert len(set(rows)) == len(rows) and len(set(cols)) == len(cols)
        total = cost[rows, cols].sum().item()
        assert total == pytest.approx(brute_force_min(cost.tolist()))


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


def test_missing_scipy_gives_install_hint(monkeypatch):
    import mmdetr.models.hungarian_assigner as mod
    monkeypatch.setattr(mod, 'linear_sum_assignment', None)
    with pytest.raises(ImportError, match='pip install scipy'):
        solve_assignment(torch.zeros(2, 2).numpy())


def batch_of_instances(num_sets, num_preds, num_gts_list, gen, sizes,
                       num_classes=4):
    """Predictions for ``num_sets`` decoder layers of a batch, as the set
    criterion hands them to ``match``, and each image's ground truths."""
    scores = torch.randn(num_sets, len(num_gts_list), num_preds,
                         num_classes + 1, generator=gen)
    bboxes, gt_labels, gt_bboxes, metas = [], [], [], []
    for (h, w), num_gts in zip(sizes, num_gts_list):
        xy = torch.rand(num_sets, num_preds, 2, generator=gen) * 0.6
        wh = torch.rand(num_sets, num_preds, 2, generator=gen) * 0.3 + 0.05
        factor = torch.tensor([w, h, w, h], dtype=torch.float32)
        bboxes.append(torch.cat([xy, xy + wh], -1) * factor)
        gxy = torch.rand(num_gts, 2, generator=gen) * 0.6
        gwh = torch.rand(num_gts, 2, generator=gen) * 0.3 + 0.05
        gt_bboxes.append(torch.cat([gxy, gxy + gwh], -1) * factor)
        gt_labels.append(
            torch.randint(0, num_classes, (num_gts, ), generator=gen))
        metas.append(dict(img_shape=(h, w)))
    return scores, torch.stack(bboxes, 1), gt_labels, gt_bboxes, metas


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
    ground truths than the 6 predictions."""
    num_gts = [0, 2, 6, 9, 4]
    sizes = [(120, 160), (300, 200), (64, 64), (480, 640), (100, 333)]
    scores, bboxes, gt_labels, gt_bboxes, metas = batch_of_instances(
        3, 6, num_gts, gen, sizes)
    assigner = HungarianAssigner(costs)
    gt_inds = assigner.match(scores, bboxes, gt_labels, gt_bboxes, metas)
    assert gt_inds.shape == (3, 5, 6) and gt_inds.dtype == np.int64
    for n in range(3):
        for i in range(5):
            pred = InstanceData(scores=scores[n, i], bboxes=bboxes[n, i])
            gt = InstanceData(labels=gt_labels[i], bboxes=gt_bboxes[i])
            want, labels = reference_assign(assigner.match_costs, pred, gt,
                                            metas[i])
            assert torch.equal(torch.from_numpy(gt_inds[n, i]), want)
            single = assigner.assign(pred, gt, metas[i])
            assert torch.equal(single.gt_inds, want)
            assert torch.equal(single.labels, labels)
            assert single.num_gts == num_gts[i]
            assert (want > 0).sum().item() == min(6, num_gts[i])
    # the layers really differ, so equality above is not by accident
    assert not (gt_inds[0, 3] == gt_inds[1, 3]).all()


def test_batch_matching_without_any_ground_truth(gen):
    scores, bboxes, gt_labels, gt_bboxes, metas = batch_of_instances(
        2, 5, [0, 0], gen, [(50, 60), (70, 80)])
    gt_inds = HungarianAssigner(COSTS).match(scores, bboxes, gt_labels,
                                             gt_bboxes, metas)
    assert gt_inds.shape == (2, 2, 5) and (gt_inds == 0).all()


def test_batch_matching_with_mmdet_costs(gen):
    """Costs without ``batched`` (mmdet's own) still work, scored image by
    image into the same padded costs, with the answer of the per-image
    reference and of mmdetr's costs."""
    from mmdet.models.task_modules.assigners import match_cost as mmdet_costs
    scores, bboxes, gt_labels, gt_bboxes, metas = batch_of_instances(
        2, 5, [3, 7], gen, [(50, 60), (70, 80)])
    theirs = HungarianAssigner([
        mmdet_costs.ClassificationCost(weight=1.),
        mmdet_costs.BBoxL1Cost(weight=5., box_format='xywh'),
        mmdet_costs.IoUCost(iou_mode='giou', weight=2.)
    ])
    expected = HungarianAssigner(COSTS).match(scores, bboxes, gt_labels,
                                              gt_bboxes, metas)
    got = theirs.match(scores, bboxes, gt_labels, gt_bboxes, metas)
    assert (got == expected).all()
    for n in range(2):
        for i in range(2):
            want, _ = reference_assign(
                theirs.match_costs,
                InstanceData(scores=scores[n, i], bboxes=bboxes[n, i]),
                InstanceData(labels=gt_labels[i], bboxes=gt_bboxes[i]),
                metas[i])
            assert torch.equal(torch.from_numpy(got[n, i]), want)


def test_batch_matching_checks_lengths(gen):
    scores, bboxes, gt_labels, gt_bboxes, metas = batch_of_instances(
        1, 5, [1, 2], gen, [(50, 60), (70, 80)])
    with pytest.raises(ValueError, match='2 images but 1 label lists'):
        HungarianAssigner(COSTS).match(scores, bboxes, gt_labels[:1],
                                       gt_bboxes, metas)


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
