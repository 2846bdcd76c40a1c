# Copyright (c) mmdetr contributors. All rights reserved.
"""mmdet 2.x's tensor calls of the match costs and the assigner.

mmdet 2.x called each cost with the tensors its formula needs, and the
assigner with normalised (cx, cy, w, h) boxes::

    ClassificationCost()(cls_pred, gt_labels)        # -softmax[:, labels] * w
    BBoxL1Cost()(bbox_pred_cxcywh_norm, gt_xyxy_norm) # L1 in box_format
    IoUCost()(bboxes_xyxy, gt_bboxes_xyxy)            # -IoU * w
    assigner.assign(bbox_pred, cls_pred, gt_bboxes, gt_labels, img_meta)

mmdetr's classes take instances (mmdet 3.x's form); the functions here
answer the 2.x calls with 2.x's numbers, and :class:`FocalLossCost` adds the
same to mmdet 3.x's focal cost, which 2.x configs name in ``cls_cost``.
"""
from typing import Optional

import torch
from mmdet.models.task_modules.assigners.match_cost import \
    FocalLossCost as _Mmdet3FocalLossCost
from mmdet.structures.bbox import bbox_cxcywh_to_xyxy, bbox_xyxy_to_cxcywh
from mmengine.structures import InstanceData
from torch import Tensor

from mmdetr.registry import TASK_UTILS


def mmdet2_cost_call(cost, pred: Tensor, target: Tensor) -> Tensor:
    """A match cost called as in mmdet 2.x; see the module docstring.

    Args:
        cost: One of mmdetr's ``ClassificationCost``, ``BBoxL1Cost``,
            ``IoUCost``.
        pred (Tensor): Logits (num_query, C), normalised (cx, cy, w, h)
            boxes (num_query, 4) for ``BBoxL1Cost``, or absolute
            (x1, y1, x2, y2) boxes (num_query, 4) for ``IoUCost``.
        target (Tensor): Labels (num_gt, ), normalised (x1, y1, x2, y2)
            for ``BBoxL1Cost``, absolute (x1, y1, x2, y2) for ``IoUCost``.

    Returns:
        Tensor: has shape (num_query, num_gt).
    """
    # told apart by what they have, not by class: mmdetr.models imports this
    # layer, so it cannot import mmdetr.models back
    if hasattr(cost, 'box_format'):  # BBoxL1Cost
        # 2.x compares in box_format: the prediction is (cx, cy, w, h), the
        # ground truth (x1, y1, x2, y2); one of them is converted
        if cost.box_format == 'xywh':
            target = bbox_xyxy_to_cxcywh(target)
        else:
            pred = bbox_cxcywh_to_xyxy(pred)
        return torch.cdist(pred, target, p=1) * cost.weight
    if hasattr(cost, 'compute'):  # ClassificationCost, IoUCost
        # their formulas take 2.x's arguments as they are
        return cost.compute(pred, target)
    raise TypeError(f'{type(cost).__name__} has no mmdet 2.x tensor call; '
                    'call it with (pred_instances, gt_instances, img_meta)')


def mmdet2_assign(assigner,
                  bbox_pred: Tensor,
                  cls_pred: Tensor,
                  gt_bboxes: Tensor,
                  gt_labels: Tensor,
                  img_meta: Optional[dict] = None,
                  gt_bboxes_ignore: Optional[Tensor] = None,
                  eps: float = 1e-7):
    """mmdet 2.x's ``HungarianAssigner.assign`` through the 3.x form.

    Args:
        assigner (HungarianAssigner): mmdetr's assigner.
        bbox_pred (Tensor): Normalised (cx, cy, w, h), has shape
            (num_query, 4).
        cls_pred (Tensor): Logits, has shape (num_query, C).
        gt_bboxes (Tensor): Absolute (x1, y1, x2, y2), shape (num_gt, 4).
        gt_labels (Tensor): has shape (num_gt, ).
        img_meta (dict): Has ``img_shape`` (h, w) or (h, w, c).
        gt_bboxes_ignore (None): Not supported, as in 2.x.
        eps (float): Unused; 2.x's signature has it.

    Returns:
        :obj:`AssignResult`: as :meth:`HungarianAssigner.assign`.
    """
    if gt_bboxes_ignore is not None:
        raise NotImplementedError(
            'HungarianAssigner.assign: gt_bboxes_ignore is not supported '
            '(mmdet 2.x did not support it either)')
    if img_meta is None or 'img_shape' not in img_meta:
        raise KeyError("HungarianAssigner.assign: img_meta needs 'img_shape' "
                       'to scale the normalised bbox_pred')
    img_h, img_w = img_meta['img_shape'][:2]
    factor = bbox_pred.new_tensor([img_w, img_h, img_w, img_h])
    pred_instances = InstanceData(
        scores=cls_pred, bboxes=bbox_cxcywh_to_xyxy(bbox_pred) * factor)
    gt_instances = InstanceData(bboxes=gt_bboxes, labels=gt_labels)
    return assigner.assign(pred_instances, gt_instances, img_meta)


@TASK_UTILS.register_module()
class FocalLossCost(_Mmdet3FocalLossCost):
    """mmdet 3.x's ``FocalLossCost`` that also answers 2.x's tensor call
    ``FocalLossCost()(cls_pred, gt_labels)``.

    Called with instances it is mmdet 3.x's class unchanged.
    """

    def __call__(self, pred_instances, gt_instances, img_meta=None,
                 **kwargs) -> Tensor:
        if isinstance(pred_instances, Tensor):
            if self.binary_input:
                return self._mask_focal_loss_cost(pred_instances,
                                                  gt_instances)
            return self._focal_loss_cost(pred_instances, gt_instances)
        return super().__call__(pred_instances, gt_instances, img_meta,
                                **kwargs)
