# Copyright (c) mmdetr contributors. All rights reserved.
import itertools

import pytest
import torch
from mmengine.structures import InstanceData

from mmdetr.models import HungarianAssigner
from mmdetr.models.hungarian_assigner import solve_assignment

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
        rows, cols = solve_assignment(cost)
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


def test_missing_scipy_gives_install_hint(monkeypatch):
    import mmdetr.models.hungarian_assigner as mod
    monkeypatch.setattr(mod, 'linear_sum_assignment', None)
    with pytest.raises(ImportError, match='pip install scipy'):
        solve_assignment(torch.zeros(2, 2))
