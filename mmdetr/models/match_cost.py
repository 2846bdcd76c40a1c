# Copyright (c) mmdetr contributors. All rights reserved.
"""Pairwise costs between predictions and ground truths for Hungarian
matching.

Each cost is called like mmdet 3.x's: ``cost(pred_instances, gt_instances,
img_meta)`` returns a (num_preds, num_gts) matrix, with

- ``pred_instances.scores``: class logits, shape (num_preds, num_classes+1),
- ``pred_instances.bboxes``: absolute (x1, y1, x2, y2), shape (num_preds, 4),
- ``gt_instances.labels`` / ``gt_instances.bboxes`` likewise,
- ``img_meta['img_shape']``: (h, w) of the image the boxes live in.

``__call__`` unpacks the instances into :meth:`BaseMatchCost.batched`, which
takes plain tensors with leading batch dimensions that broadcast, e.g.
predictions (num_layers, bs, num_preds, ...) against ground truths padded to
(bs, num_gts, ...): one call scores every image and every decoder layer of a
batch, and one image is the case without batch dimensions. The formula of
each cost is its ``compute``.
"""
from typing import Optional

import torch
from mmdet.structures.bbox import bbox_overlaps, bbox_xyxy_to_cxcywh
from torch import Tensor

from mmdetr.models.set_criterion import image_size_factors
from mmdetr.registry import TASK_UTILS


class BaseMatchCost:
    """A weighted cost; subclasses implement ``compute``.

    Args:
        weight (float): Multiplier of the cost. Defaults to 1.
    """

    def __init__(self, weight: float = 1.) -> None:
        self.weight = weight

    def __call__(self, pred_instances, gt_instances,
                 img_meta: Optional[dict] = None) -> Tensor:
        """Cost of one image, shape (num_preds, num_gts)."""
        factor = None if img_meta is None else image_size_factors(
            [img_meta], gt_instances.bboxes)[0]
        return self.batched(pred_instances.scores, pred_instances.bboxes,
                            gt_instances.labels, gt_instances.bboxes, factor)

    def batched(self, pred_scores: Tensor, pred_bboxes: Tensor,
                gt_labels: Tensor, gt_bboxes: Tensor,
                factor: Optional[Tensor]) -> Tensor:
        """Cost of every prediction against every ground truth.

        Leading dimensions (written ``...``) broadcast between predictions
        and ground truths.

        Args:
            pred_scores (Tensor): Class logits, has shape
                (..., num_preds, num_classes + 1).
            pred_bboxes (Tensor): Absolute (x1, y1, x2, y2), has shape
                (..., num_preds, 4).
            gt_labels (Tensor): has shape (..., num_gts).
            gt_bboxes (Tensor): Absolute (x1, y1, x2, y2), has shape
                (..., num_gts, 4).
            factor (Tensor, optional): Image sizes (w, h, w, h), has shape
                (..., 1, 4) or (4, ); None where no image size is known.

        Returns:
            Tensor: has shape (..., num_preds, num_gts).
        """
        raise NotImplementedError

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}(weight={self.weight})'


@TASK_UTILS.register_module()
class ClassificationCost(BaseMatchCost):
    """Minus the softmax probability of the ground-truth class.

    The paper's ``1 - p`` without the constant 1, which does not change the
    matching.
    """

    def compute(self, cls_scores: Tensor, gt_labels: Tensor) -> Tensor:
        """
        Args:
            cls_scores (Tensor): Logits, has shape (..., num_preds, C).
            gt_labels (Tensor): Class indices, has shape (num_gts, ) or
                (..., num_gts) with leading dims that broadcast.

        Returns:
            Tensor: has shape (..., num_preds, num_gts).
        """
        probs = cls_scores.softmax(-1)
        # gather works for per-image labels too: index[..., q, j] is the
        # label of ground truth j whatever the query q
        index = gt_labels.unsqueeze(-2)
        shape = torch.broadcast_shapes(probs.shape[:-1], index.shape[:-1])
        index = index.expand(*shape, gt_labels.shape[-1])
        probs = probs.expand(*shape, probs.shape[-1])
        return -probs.gather(-1, index) * self.weight

    def batched(self, pred_scores, pred_bboxes, gt_labels, gt_bboxes,
                factor=None) -> Tensor:
        return self.compute(pred_scores, gt_labels)


@TASK_UTILS.register_module()
class BBoxL1Cost(BaseMatchCost):
    """L1 distance between boxes normalised by the image size.

    Args:
        weight (float): Defaults to 1.
        box_format (str): Compare boxes as 'xyxy' corners or as 'xywh'
            (cx, cy, w, h), the latter being what DETR regresses.
            Defaults to 'xyxy'.
    """

    def __init__(self, weight: float = 1., box_format: str = 'xyxy') -> None:
        super().__init__(weight)
        if box_format not in ('xyxy', 'xywh'):
            raise ValueError("BBoxL1Cost: box_format must be 'xyxy' or "
                             f"'xywh', got {box_format!r}")
        self.box_format = box_format

    def compute(self, pred_bboxes: Tensor, gt_bboxes: Tensor) -> Tensor:
        """
        Args:
            pred_bboxes (Tensor): Normalised (x1, y1, x2, y2), has shape
                (..., num_preds, 4).
            gt_bboxes (Tensor): Normalised (x1, y1, x2, y2), has shape
                (num_gts, 4) or (..., num_gts, 4) with leading dims that
                broadcast.

        Returns:
            Tensor: has shape (..., num_preds, num_gts).
        """
        if self.box_format == 'xywh':
            pred_bboxes = bbox_xyxy_to_cxcywh(pred_bboxes)
            gt_bboxes = bbox_xyxy_to_cxcywh(gt_bboxes)
        return torch.cdist(pred_bboxes, gt_bboxes, p=1) * self.weight

    def batched(self, pred_scores, pred_bboxes, gt_labels, gt_bboxes,
                factor=None) -> Tensor:
        if factor is None:
            raise ValueError('BBoxL1Cost needs the image size: pass img_meta '
                             "with 'img_shape'")
        return self.compute(pred_bboxes / factor, gt_bboxes / factor)

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(weight={self.weight}, '
                f'box_format={self.box_format!r})')


@TASK_UTILS.register_module()
class IoUCost(BaseMatchCost):
    """Minus the (generalised) IoU of absolute boxes.

    Args:
        iou_mode (str): 'giou' (DETR's) or 'iou'. Defaults to 'giou'.
        weight (float): Defaults to 1.
    """

    def __init__(self, iou_mode: str = 'giou', weight: float = 1.) -> None:
        super().__init__(weight)
        if iou_mode not in ('iou', 'giou'):
            raise ValueError("IoUCost: iou_mode must be 'iou' or 'giou', "
                             f'got {iou_mode!r}')
        self.iou_mode = iou_mode

    def compute(self, pred_bboxes: Tensor, gt_bboxes: Tensor) -> Tensor:
        """
        Args:
            pred_bboxes (Tensor): Absolute (x1, y1, x2, y2), has shape
                (..., num_preds, 4).
            gt_bboxes (Tensor): Absolute (x1, y1, x2, y2), has shape
                (num_gts, 4) or (..., num_gts, 4) with leading dims that
                broadcast.

        Returns:
            Tensor: has shape (..., num_preds, num_gts).
        """
        # bbox_overlaps wants equal batch dims on both sides
        shape = torch.broadcast_shapes(pred_bboxes.shape[:-2],
                                       gt_bboxes.shape[:-2])
        overlaps = bbox_overlaps(
            pred_bboxes.expand(*shape, *pred_bboxes.shape[-2:]),
            gt_bboxes.expand(*shape, *gt_bboxes.shape[-2:]),
            mode=self.iou_mode,
            is_aligned=False)
        return -overlaps * self.weight

    def batched(self, pred_scores, pred_bboxes, gt_labels, gt_bboxes,
                factor=None) -> Tensor:
        return self.compute(pred_bboxes, gt_bboxes)

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(weight={self.weight}, '
                f'iou_mode={self.iou_mode!r})')
