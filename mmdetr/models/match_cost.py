# Copyright (c) mmdetr contributors. All rights reserved.
"""Pairwise costs between predictions and ground truths for Hungarian
matching.

Each cost is called like mmdet 3.x's: ``cost(pred_instances, gt_instances,
img_meta)`` returns a (num_preds, num_gts) matrix, with

- ``pred_instances.scores``: class logits, shape (num_preds, num_classes+1),
- ``pred_instances.bboxes``: absolute (x1, y1, x2, y2), shape (num_preds, 4),
- ``gt_instances.labels`` / ``gt_instances.bboxes`` likewise,
- ``img_meta['img_shape']``: (h, w) of the image the boxes live in.

The work is done by ``compute``, which takes plain tensors with any leading
batch dimensions on the predictions, so one call can score every image and
every decoder layer of a batch at once.
"""
from typing import Optional

import torch
from mmdet.structures.bbox import bbox_overlaps, bbox_xyxy_to_cxcywh
from torch import Tensor

from mmdetr.registry import TASK_UTILS


def image_size_factor(img_meta: dict, like: Tensor) -> Tensor:
    """(w, h, w, h) of ``img_meta['img_shape']`` as a tensor like ``like``."""
    img_h, img_w = img_meta['img_shape'][:2]
    return like.new_tensor([img_w, img_h, img_w, img_h])


class BaseMatchCost:
    """A weighted cost; subclasses implement ``compute``.

    Args:
        weight (float): Multiplier of the cost. Defaults to 1.
    """

    def __init__(self, weight: float = 1.) -> None:
        self.weight = weight

    def __call__(self, pred_instances, gt_instances,
                 img_meta: Optional[dict] = None) -> Tensor:
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
            gt_labels (Tensor): Class indices, has shape (num_gts, ).

        Returns:
            Tensor: has shape (..., num_preds, num_gts).
        """
        return -cls_scores.softmax(-1)[..., gt_labels] * self.weight

    def __call__(self, pred_instances, gt_instances, img_meta=None) -> Tensor:
        return self.compute(pred_instances.scores, gt_instances.labels)


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
                (num_gts, 4).

        Returns:
            Tensor: has shape (..., num_preds, num_gts).
        """
        if self.box_format == 'xywh':
            pred_bboxes = bbox_xyxy_to_cxcywh(pred_bboxes)
            gt_bboxes = bbox_xyxy_to_cxcywh(gt_bboxes)
        return torch.cdist(pred_bboxes, gt_bboxes, p=1) * self.weight

    def __call__(self, pred_instances, gt_instances, img_meta=None) -> Tensor:
        factor = image_size_factor(img_meta, gt_instances.bboxes)
        return self.compute(pred_instances.bboxes / factor,
                            gt_instances.bboxes / factor)

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
                (num_gts, 4).

        Returns:
            Tensor: has shape (..., num_preds, num_gts).
        """
        gt_bboxes = gt_bboxes.expand(*pred_bboxes.shape[:-2], -1, -1)
        overlaps = bbox_overlaps(
            pred_bboxes, gt_bboxes, mode=self.iou_mode, is_aligned=False)
        return -overlaps * self.weight

    def __call__(self, pred_instances, gt_instances, img_meta=None) -> Tensor:
        return self.compute(pred_instances.bboxes, gt_instances.bboxes)

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(weight={self.weight}, '
                f'iou_mode={self.iou_mode!r})')

