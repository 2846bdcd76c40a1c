# Copyright (c) mmdetr contributors. All rights reserved.
import pytest
import torch
from mmengine.structures import InstanceData

from mmdetr.models import BBoxL1Cost, ClassificationCost, IoUCost

IMG_META = dict(img_shape=(100, 200))  # h, w


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
    cost = ClassificationCost(weight=2.)(pred, gt, IMG_META)
    p = torch.softmax(pred.scores, -1)
    for i in range(2):
        for j in range(2):
            assert cost[i, j] == pytest.approx(-2 * p[i, gt.labels[j]].item())


@pytest.mark.parametrize('box_format', ['xyxy', 'xywh'])
def test_bbox_l1_cost_on_normalised_boxes(box_format):
    pred, gt = instances()
    cost = BBoxL1Cost(weight=5., box_format=box_format)(pred, gt, IMG_META)

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
    cost = IoUCost(iou_mode=mode, weight=2.)(pred, gt, IMG_META)
    for i in range(2):
        for j in range(2):
            iou, g = giou(pred.bboxes[i].tolist(), gt.bboxes[j].tolist())
            expected = -2 * (g if mode == 'giou' else iou)
            assert cost[i, j].item() == pytest.approx(expected, abs=1e-6)
    assert cost[0, 0].item() == pytest.approx(-2.)  # identical boxes


def test_costs_accept_batched_predictions():
    """compute() takes leading batch dims: one call for many images."""
    pred, gt = instances()
    scores = torch.stack([pred.scores, pred.scores.flip(0)])
    boxes = torch.stack([pred.bboxes, pred.bboxes.flip(0)])
    for cost, args in [
        (ClassificationCost(), (scores, gt.labels)),
        (BBoxL1Cost(), (boxes / 100, gt.bboxes / 100)),
        (IoUCost(), (boxes, gt.bboxes)),
    ]:
        out = cost.compute(*args)
        assert out.shape == (2, 2, 2)
        single = cost.compute(args[0][1], args[1])
        torch.testing.assert_close(out[1], single)


def test_bad_cost_options_are_named():
    with pytest.raises(ValueError, match='box_format'):
        BBoxL1Cost(box_format='cxcy')
    with pytest.raises(ValueError, match='iou_mode'):
        IoUCost(iou_mode='diou')


def test_costs_broadcast_per_image_ground_truths():
    """batched() scores (layers, images, preds) against ground truths padded
    per image (images, gts), each image in its own size: block i equals the
    one-image call for image i."""
    gen = torch.Generator().manual_seed(0)
    sizes = [(100, 200), (300, 120)]
    scores = torch.randn(3, 2, 4, 6, generator=gen)
    boxes = torch.rand(3, 2, 4, 2, generator=gen) * 50
    boxes = torch.cat([boxes, boxes + 10 + torch.rand(3, 2, 4, 2,
                                                      generator=gen) * 40], -1)
    gt_boxes = torch.rand(2, 5, 2, generator=gen) * 50
    gt_boxes = torch.cat([gt_boxes, gt_boxes + 20], -1)
    gt_labels = torch.randint(0, 5, (2, 5), generator=gen)
    factor = torch.tensor([[[w, h, w, h]] for h, w in sizes],
                          dtype=torch.float32)
    for cost in (ClassificationCost(weight=2.),
                 BBoxL1Cost(weight=5., box_format='xywh'),
                 IoUCost(iou_mode='giou', weight=2.)):
        out = cost.batched(scores, boxes, gt_labels, gt_boxes, factor)
        assert out.shape == (3, 2, 4, 5)
        for n in range(3):
            for i, (h, w) in enumerate(sizes):
                single = cost(
                    InstanceData(scores=scores[n, i], bboxes=boxes[n, i]),
                    InstanceData(labels=gt_labels[i], bboxes=gt_boxes[i]),
                    dict(img_shape=(h, w)))
                torch.testing.assert_close(out[n, i], single, rtol=0,
                                           atol=0)
