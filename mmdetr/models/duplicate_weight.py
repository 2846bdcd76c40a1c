# Copyright (c) mmdetr contributors. All rights reserved.
"""A heavier no-object weight for would-be duplicates (training only).

DETR's set loss already tells a query that duplicates a matched one to
predict "no object": one-to-one matching leaves it unmatched. But it says
so with the weight of every other unmatched query, ``bg_cls_weight`` (the
paper's 0.1), most of which sit on background and are easy. Raising
``bg_cls_weight`` for all of them does remove duplicates, but mostly by
lowering every score.

``DETRHead(duplicate_cls_weight=w)`` gives the no-object term of an
unmatched prediction the weight ``w`` instead of ``bg_cls_weight`` when its
box overlaps a ground-truth box with IoU > ``duplicate_iou_thr``: the
predictions that would be drawn as a second box on an object. This is the
matching-side counterpart of DINO's contrastive denoising (Zhang et al.,
ICLR 2023), whose negative queries near each ground truth learn "no object"
to reject duplicates. The weights are a constant of the loss (no gradient
through the boxes' IoU), computed on the device without a host wait, and
the loss normaliser stays DETR's. Inference never reads them.

With ``duplicate_weight_layers='last'`` only the last decoder layer's loss
gets the weight; the other layers' auxiliary losses keep DETR's. Removing
duplicates is the last layer's job: inference returns its output, and its
self-attention sees what the other queries predicted in the layers before.
In the shapes demo, weight 2.0 on the last layer alone left 4 images with
a duplicate against 15 with it on every layer, at about the same AP
(docs/demo.md).
"""
from torch import Tensor
from mmdet.structures.bbox import bbox_overlaps

# DETRHead(duplicate_weight_layers=...): the decoder layers weighed
DUPLICATE_WEIGHT_LAYERS = ('all', 'last')


def duplicate_label_weights(bboxes: Tensor, gt_bboxes: Tensor,
                            labels: Tensor, num_classes: int,
                            bg_cls_weight: float, duplicate_cls_weight: float,
                            iou_thr: float) -> Tensor:
    """Per-prediction multipliers of the classification loss.

    The no-object class already carries ``bg_cls_weight`` in the loss's
    ``class_weight``, so an unmatched overlapping prediction gets
    ``duplicate_cls_weight / bg_cls_weight`` and every other prediction 1.

    Args:
        bboxes (Tensor): Absolute (x1, y1, x2, y2) predictions, shape
            (bs, num_query, 4).
        gt_bboxes (Tensor): Absolute (x1, y1, x2, y2) ground truths padded
            with zero boxes (which overlap nothing), shape (bs, max_gts, 4).
        labels (Tensor): Class targets, ``num_classes`` where unmatched,
            shape (bs, num_query).
        num_classes (int): Object classes, without background.
        bg_cls_weight (float): No-object weight of the loss, > 0.
        duplicate_cls_weight (float): No-object weight of would-be
            duplicates.
        iou_thr (float): IoU above which an unmatched prediction is one.

    Returns:
        Tensor: Shape (bs * num_query, ), no gradient.
    """
    bboxes = bboxes.detach()
    if gt_bboxes.size(1) == 0:
        return bboxes.new_ones(labels.numel())
    max_iou = bbox_overlaps(bboxes, gt_bboxes.to(bboxes.dtype)).amax(-1)
    duplicate = (labels == num_classes) & (max_iou > iou_thr)
    weights = bboxes.new_ones(labels.shape).masked_fill(
        duplicate, duplicate_cls_weight / bg_cls_weight)
    return weights.reshape(-1)
