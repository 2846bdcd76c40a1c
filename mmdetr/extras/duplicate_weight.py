# Copyright (c) mmdetr contributors. All rights reserved.
"""A heavier "no object" weight for would-be duplicates (training only).

DETR's set loss already tells a query that duplicates a matched one to
predict "no object": one-to-one matching leaves it unmatched. But it says
so with the weight of every other unmatched query, ``bg_cls_weight`` (the
paper's 0.1), most of which sit on background and are easy. Raising
``bg_cls_weight`` for all of them does remove duplicates, but mostly by
lowering every score.

``DuplicateWeightDETRHead(duplicate_cls_weight=w)`` gives the no-object term of an
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
"""
from typing import List, Optional

import torch
from mmdet.structures.bbox import bbox_cxcywh_to_xyxy, bbox_overlaps
from torch import Tensor

from mmdetr.models.detr_head import DETRHead
from mmdetr.models.set_targets import SetTargets
from mmdetr.registry import MODELS

#: DuplicateWeightDETRHead(duplicate_weight_layers=...): the layers weighed
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


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@MODELS.register_module()
class DuplicateWeightDETRHead(DETRHead):
    """:class:`DETRHead` whose unmatched predictions that overlap a ground
    truth learn "no object" with their own weight (training only; see the
    module docstring). Inference is DETRHead's.

    Args:
        duplicate_cls_weight (float): "No object" weight of unmatched
            predictions whose box overlaps a ground truth with IoU >
            ``duplicate_iou_thr``, instead of ``bg_cls_weight``; > 0.
        duplicate_iou_thr (float): IoU above which an unmatched prediction
            is a would-be duplicate, in [0, 1). Defaults to 0.5.
        duplicate_weight_layers (str): Which decoder layers' losses get the
            weight: ``'all'``, or ``'last'``, the layer whose predictions
            inference returns (the others keep DETR's weights). Defaults to
            ``'all'``.
        **kwargs: :class:`DETRHead`'s; ``loss_cls`` must be the softmax
            cross-entropy with ``bg_cls_weight`` > 0.
    """

    def __init__(self,
                 duplicate_cls_weight: float,
                 duplicate_iou_thr: float = 0.5,
                 duplicate_weight_layers: str = 'all',
                 **kwargs) -> None:
        super().__init__(**kwargs)
        name = type(self).__name__
        if duplicate_weight_layers not in DUPLICATE_WEIGHT_LAYERS:
            raise ValueError(
                f'{name}: duplicate_weight_layers must be one of '
                f'{DUPLICATE_WEIGHT_LAYERS}, got {duplicate_weight_layers!r}')
        if not _is_number(duplicate_cls_weight) or \
                not duplicate_cls_weight > 0:
            raise ValueError(f'{name}: duplicate_cls_weight must be a number '
                             f'> 0, got {duplicate_cls_weight!r}')
        bg_cls_weight = self.bg_cls_weight
        if self.use_sigmoid or not bg_cls_weight:
            raise ValueError(
                f'{name}: duplicate_cls_weight needs the softmax '
                'classification loss with loss_cls.bg_cls_weight > 0, got '
                f'use_sigmoid={self.use_sigmoid}, bg_cls_weight='
                f'{bg_cls_weight!r}')
        if not _is_number(duplicate_iou_thr) or \
                not 0 <= duplicate_iou_thr < 1:
            raise ValueError(f'{name}: duplicate_iou_thr must be in [0, 1), '
                             f'got {duplicate_iou_thr!r}')
        self.duplicate_cls_weight = duplicate_cls_weight
        self.duplicate_iou_thr = duplicate_iou_thr
        self.duplicate_weight_layers = duplicate_weight_layers

    def label_weights(self, all_bbox_preds: Tensor, indices: list,
                      targets: SetTargets) -> List[Optional[Tensor]]:
        """Heavier on would-be duplicates, on the layers configured;
        ``all_bbox_preds`` (num_layers, bs, num_query, 4) normalised
        (cx, cy, w, h)."""
        weights = [None] * len(indices)
        layers = range(len(indices)) if self.duplicate_weight_layers == \
            'all' else [len(indices) - 1]
        for n in layers:
            bbox_preds = all_bbox_preds[n]
            img, query, gt = indices[n]
            labels = torch.full(bbox_preds.shape[:2], self.num_classes,
                                dtype=torch.long, device=bbox_preds.device)
            labels[img, query] = targets.labels[img, gt]
            weights[n] = duplicate_label_weights(
                bbox_cxcywh_to_xyxy(bbox_preds) * targets.factors[:, None],
                targets.corners, labels, self.num_classes,
                self.bg_cls_weight, self.duplicate_cls_weight,
                self.duplicate_iou_thr)
        return weights
