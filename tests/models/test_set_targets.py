# Copyright (c) mmdetr contributors. All rights reserved.
"""SetTargets: a batch's ground truths built once, in the forms the
matching and the losses read."""
import pytest
import torch
from mmdet.structures.bbox import bbox_cxcywh_to_xyxy

from mmdetr.models import SetTargets


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


def test_targets_hold_each_image_padded_in_both_box_forms(gen):
    """Per image: the labels and corner boxes as given, the (cx, cy, w, h)
    boxes normalised by the image's own size (a round trip gives the
    corners back), zero padding after ``num_gts``."""
    boxes, labels, metas = ground_truths([2, 0, 4],
                                         [(50, 60), (70, 80), (90, 40)], gen)
    targets = SetTargets.build(boxes, labels, metas)
    assert len(targets) == 3 and targets.num_gts == [2, 0, 4]
    assert targets.labels.shape == (3, 4)
    assert targets.boxes.shape == targets.corners.shape == (3, 4, 4)
    assert torch.equal(targets.factors[2], torch.tensor([40., 90., 40., 90.]))
    for i, n in enumerate(targets.num_gts):
        assert torch.equal(targets.labels[i, :n], labels[i])
        assert torch.equal(targets.corners[i, :n], boxes[i])
        torch.testing.assert_close(
            bbox_cxcywh_to_xyxy(targets.boxes[i, :n]) * targets.factors[i],
            boxes[i])
        assert (targets.boxes[i, :n] <= 1).all()
        assert (targets.corners[i, n:] == 0).all()
        assert (targets.boxes[i, n:] == 0).all()
    assert targets.img_metas == metas


def test_a_batch_without_ground_truths(gen):
    targets = SetTargets.build([torch.zeros(0, 4)] * 2,
                               [torch.zeros(0, dtype=torch.long)] * 2,
                               [dict(img_shape=(8, 8))] * 2)
    assert targets.num_gts == [0, 0] and targets.boxes.shape == (2, 0, 4)


def test_bad_input_is_named(gen):
    boxes, labels, metas = ground_truths([2, 3], [(50, 60)] * 2, gen)
    with pytest.raises(ValueError, match='2 box lists, 1 label lists'):
        SetTargets.build(boxes, labels[:1], metas)
    with pytest.raises(ValueError, match='image 1 has 2 labels'):
        SetTargets.build(boxes, [labels[0], labels[1][:2]], metas)
    with pytest.raises(KeyError, match='img_shape'):
        SetTargets.build(boxes, labels, [dict(), dict()])
