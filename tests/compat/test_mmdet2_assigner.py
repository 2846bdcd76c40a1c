# Copyright (c) mmdetr contributors. All rights reserved.
"""mmdet 2.x's HungarianAssigner and match-cost calls, checked
against the 2.x formulas written out here, and mmdet 2.x's import paths."""
import pytest
import torch
from mmengine.structures import InstanceData
from scipy.optimize import linear_sum_assignment

from mmdetr.compat import (BBoxL1Cost, ClassificationCost,
                           HungarianAssigner, IoUCost)


def cxcywh_to_xyxy(b):
    cx, cy, w, h = b.unbind(-1)
    return torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], -1)


def xyxy_to_cxcywh(b):
    x1, y1, x2, y2 = b.unbind(-1)
    return torch.stack([(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1], -1)


def pairwise_iou(a, b, giou):
    """(generalised) IoU of every box of ``a`` with every box of ``b``,
    written out, in float64."""
    a, b = a.double()[:, None], b.double()[None]
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    iw = (torch.minimum(a[..., 2], b[..., 2]) -
          torch.maximum(a[..., 0], b[..., 0])).clamp(min=0)
    ih = (torch.minimum(a[..., 3], b[..., 3]) -
          torch.maximum(a[..., 1], b[..., 1])).clamp(min=0)
    inter = iw * ih
    union = area_a + area_b - inter
    iou = inter / union
    if not giou:
        return iou
    ew = torch.maximum(a[..., 2], b[..., 2]) - torch.minimum(
        a[..., 0], b[..., 0])
    eh = torch.maximum(a[..., 3], b[..., 3]) - torch.minimum(
        a[..., 1], b[..., 1])
    enclose = ew * eh
    return iou - (enclose - union) / enclose


def random_case(gen, num_query=12, num_gt=4, num_classes=6, h=40, w=60):
    bbox_pred = torch.rand(num_query, 4, generator=gen) * 0.5 + 0.2
    cls_pred = torch.randn(num_query, num_classes + 1, generator=gen)
    xy = torch.rand(num_gt, 2, generator=gen) * torch.tensor([w / 2, h / 2])
    wh = (torch.rand(num_gt, 2, generator=gen) * 0.4 + 0.1) * torch.tensor(
        [w, h])
    gt_bboxes = torch.cat([xy, xy + wh], 1)
    gt_labels = torch.randint(0, num_classes, (num_gt, ), generator=gen)
    return bbox_pred, cls_pred, gt_bboxes, gt_labels, dict(img_shape=(h, w,
                                                                      3))


def test_mmdet2_costs_give_mmdet2_numbers(gen):
    bbox_pred, cls_pred, gt_bboxes, gt_labels, meta = random_case(gen)
    h, w = meta['img_shape'][:2]
    factor = torch.tensor([w, h, w, h], dtype=torch.float32)
    norm_gt = gt_bboxes / factor
    # ClassificationCost: -softmax[:, labels] * weight
    expected = -cls_pred.softmax(-1)[:, gt_labels] * 1.5
    torch.testing.assert_close(
        ClassificationCost(weight=1.5)(cls_pred, gt_labels), expected)
    # BBoxL1Cost: normalised cxcywh prediction against normalised xyxy gt,
    # compared in box_format
    l1 = (cxcywh_to_xyxy(bbox_pred)[:, None] - norm_gt[None]).abs().sum(-1)
    torch.testing.assert_close(BBoxL1Cost(weight=5.)(bbox_pred, norm_gt),
                               l1 * 5)
    l1 = (bbox_pred[:, None] - xyxy_to_cxcywh(norm_gt)[None]).abs().sum(-1)
    torch.testing.assert_close(
        BBoxL1Cost(weight=5., box_format='xywh')(bbox_pred, norm_gt), l1 * 5)
    # IoUCost: -iou * weight on absolute xyxy
    boxes = cxcywh_to_xyxy(bbox_pred) * factor
    for mode in ('iou', 'giou'):
        expected = -pairwise_iou(boxes, gt_bboxes, mode == 'giou') * 2
        torch.testing.assert_close(
            IoUCost(iou_mode=mode, weight=2.)(boxes, gt_bboxes),
            expected.float(), rtol=1e-5, atol=1e-5)


def test_focal_loss_cost_answers_mmdet2_call_and_instances(gen):
    from mmdetr.core.bbox.match_costs import FocalLossCost
    cls_pred = torch.randn(7, 4, generator=gen)
    labels = torch.tensor([0, 3, 1])
    cost = FocalLossCost(weight=2., alpha=0.25, gamma=2)
    p = cls_pred.sigmoid()
    neg = -(1 - p + 1e-12).log() * 0.75 * p**2
    pos = -(p + 1e-12).log() * 0.25 * (1 - p)**2
    expected = (pos[:, labels] - neg[:, labels]) * 2
    torch.testing.assert_close(cost(cls_pred, labels), expected)
    torch.testing.assert_close(
        cost(InstanceData(scores=cls_pred), InstanceData(labels=labels)),
        expected)


def test_mmdet2_constructor_defaults_and_attributes():
    assigner = HungarianAssigner()
    assert [type(c) for c in assigner.match_costs] == [
        ClassificationCost, BBoxL1Cost, IoUCost]
    assert assigner.cls_cost is assigner.match_costs[0]
    assert (assigner.cls_cost.weight, assigner.reg_cost.weight,
            assigner.iou_cost.weight) == (1., 1., 1.)
    assert assigner.reg_cost.box_format == 'xyxy'
    assert assigner.iou_cost.iou_mode == 'giou'
    assigner = HungarianAssigner(
        iou_cost=dict(type='IoUCost', iou_mode='iou', weight=3.))
    assert assigner.iou_cost.iou_mode == 'iou'
    assert assigner.iou_cost.weight == 3.
    assert assigner.cls_cost.weight == 1.
    with pytest.raises(ValueError, match='not both'):
        HungarianAssigner([dict(type='ClassificationCost')],
                          cls_cost=dict(type='ClassificationCost'))


@pytest.mark.parametrize('box_format', ['xyxy', 'xywh'])
def test_mmdet2_call_matches_the_mmdet2_algorithm_and_the_3x_call(
        gen, box_format):
    costs = dict(
        cls_cost=dict(type='ClassificationCost', weight=1.),
        reg_cost=dict(type='BBoxL1Cost', weight=5., box_format=box_format),
        iou_cost=dict(type='IoUCost', iou_mode='giou', weight=2.))
    assigner2 = HungarianAssigner(**costs)
    assigner3 = HungarianAssigner(list(costs.values()))
    for _ in range(5):
        bbox_pred, cls_pred, gt_bboxes, gt_labels, meta = random_case(gen)
        h, w = meta['img_shape'][:2]
        factor = torch.tensor([w, h, w, h], dtype=torch.float32)
        # 2.x's algorithm, written out
        norm_gt = gt_bboxes / factor
        if box_format == 'xywh':
            reg = (bbox_pred[:, None] -
                   xyxy_to_cxcywh(norm_gt)[None]).abs().sum(-1)
        else:
            reg = (cxcywh_to_xyxy(bbox_pred)[:, None] -
                   norm_gt[None]).abs().sum(-1)
        cost = (-cls_pred.softmax(-1)[:, gt_labels] + 5 * reg -
                2 * pairwise_iou(cxcywh_to_xyxy(bbox_pred) * factor,
                                 gt_bboxes, True))
        rows, cols = linear_sum_assignment(cost.numpy())
        expected = torch.zeros(len(bbox_pred), dtype=torch.long)
        expected[rows] = torch.from_numpy(cols) + 1

        result2 = assigner2.assign(bbox_pred, cls_pred, gt_bboxes, gt_labels,
                                   meta)
        result3 = assigner3.assign(
            InstanceData(scores=cls_pred,
                         bboxes=cxcywh_to_xyxy(bbox_pred) * factor),
            InstanceData(bboxes=gt_bboxes, labels=gt_labels), meta)
        assert torch.equal(result2.gt_inds, expected)
        assert torch.equal(result3.gt_inds, expected)
        assert torch.equal(result2.labels, result3.labels)
        matched = expected > 0
        assert torch.equal(result2.labels[matched],
                           gt_labels[expected[matched] - 1])
        assert torch.all(result2.labels[~matched] == -1)
        assert result2.num_gts == len(gt_bboxes)


def test_mmdet2_call_without_ground_truth(gen):
    bbox_pred, cls_pred, _, _, meta = random_case(gen)
    result = HungarianAssigner().assign(bbox_pred, cls_pred,
                                        torch.zeros(0, 4),
                                        torch.zeros(0, dtype=torch.long),
                                        meta)
    assert torch.all(result.gt_inds == 0) and torch.all(result.labels == -1)
    assert result.num_gts == 0


def test_mmdet2_call_with_focal_cost_and_errors(gen):
    bbox_pred, cls_pred, gt_bboxes, gt_labels, meta = random_case(gen)
    assigner = HungarianAssigner(cls_cost=dict(type='FocalLossCost',
                                               weight=2.))
    assert type(assigner.cls_cost).__name__ == 'FocalLossCost'
    result = assigner.assign(bbox_pred, cls_pred, gt_bboxes, gt_labels, meta)
    assert (result.gt_inds > 0).sum() == len(gt_bboxes)
    with pytest.raises(NotImplementedError, match='gt_bboxes_ignore'):
        assigner.assign(bbox_pred, cls_pred, gt_bboxes, gt_labels, meta,
                        gt_bboxes[:1])
    with pytest.raises(KeyError, match='img_shape'):
        assigner.assign(bbox_pred, cls_pred, gt_bboxes, gt_labels, {})


def test_mmdet2_import_paths_give_mmdetr_classes():
    from mmdetr import models
    from mmdetr.compat import DETRHead
    from mmdetr.core.bbox.assigners import HungarianAssigner as A
    from mmdetr.core.bbox.match_costs import build_match_cost
    assert A is HungarianAssigner
    assert issubclass(A, models.HungarianAssigner)
    assert issubclass(DETRHead, models.DETRHead)
    cost = build_match_cost(dict(type='BBoxL1Cost', weight=5.))
    assert type(cost) is BBoxL1Cost and cost.weight == 5.
    assert isinstance(cost, models.BBoxL1Cost)
    # a cost mmdet 2.x did not have a class of its own for: the registry's
    dice = build_match_cost(dict(type='DiceCost'))
    assert type(dice).__name__ == 'DiceCost'


def test_mmdet2_assigner_configs_build_the_mmdet2_class():
    """Through mmdetr's registry (as a head builds its assigner): the 2.x
    form (or no arguments: 2.x's defaults) builds mmdet 2.x's class, the 3.x
    form the core's."""
    from mmdetr import models
    from mmdetr.registry import build_task_util
    two = build_task_util(dict(type='HungarianAssigner',
                               cls_cost=dict(type='ClassificationCost')))
    assert type(two) is HungarianAssigner and two.cls_cost.weight == 1.
    assert type(build_task_util(dict(type='HungarianAssigner'))) is \
        HungarianAssigner
    three = build_task_util(dict(type='mmdetr.HungarianAssigner',
                                 match_costs=[dict(type='IoUCost')]))
    assert type(three) is models.HungarianAssigner
