# Copyright (c) mmdetr contributors. All rights reserved.
"""mmdet 2.x's match costs and ``HungarianAssigner``, on mmdetr's classes.

mmdet 2.x built its assigner as ``HungarianAssigner(cls_cost=..., reg_cost=
..., iou_cost=...)``, called each cost with the tensors its formula needs,
and the assigner with normalised (cx, cy, w, h) boxes::

    ClassificationCost()(cls_pred, gt_labels)        # -softmax[:, labels] * w
    BBoxL1Cost()(bbox_pred_cxcywh_norm, gt_xyxy_norm) # L1 in box_format
    IoUCost()(bboxes_xyxy, gt_bboxes_xyxy)            # -IoU * w
    assigner.assign(bbox_pred, cls_pred, gt_bboxes, gt_labels, img_meta)

The classes here are mmdetr's (subclasses of :mod:`mmdetr.models`' costs
and assigner, the same numbers for mmdet 3.x's calls) that also answer
those calls with 2.x's numbers. A config in 2.x's form builds them through
mmdetr's registries (:func:`register_adapters`).
"""
import copy
from typing import List, Optional

import torch
from mmdet.models.task_modules.assigners.match_cost import \
    FocalLossCost as _Mmdet3FocalLossCost
from mmdet.structures.bbox import bbox_cxcywh_to_xyxy, bbox_xyxy_to_cxcywh
from mmengine.structures import InstanceData
from torch import Tensor

from mmdetr.models import hungarian_assigner
from mmdetr.registry import build_task_util, register_config_adapter

# mmdet 2.x HungarianAssigner defaults
MMDET2_ASSIGNER_DEFAULTS = dict(
    cls_cost=dict(type='ClassificationCost', weight=1.),
    reg_cost=dict(type='BBoxL1Cost', weight=1.0),
    iou_cost=dict(type='IoUCost', iou_mode='giou', weight=1.0))


def translate_assigner_costs(cls_cost: Optional[dict] = None,
                             reg_cost: Optional[dict] = None,
                             iou_cost: Optional[dict] = None) -> List[dict]:
    """``match_costs`` for mmdet 2.x's ``HungarianAssigner(cls_cost=,
    reg_cost=, iou_cost=)``; a missing cost takes 2.x's default.

    The order (classification, L1, IoU) is 2.x's, so the assigner's
    ``cls_cost`` / ``reg_cost`` / ``iou_cost`` are ``match_costs[0..2]``.
    """
    given = dict(cls_cost=cls_cost, reg_cost=reg_cost, iou_cost=iou_cost)
    return [
        copy.deepcopy(MMDET2_ASSIGNER_DEFAULTS[k] if v is None else v)
        for k, v in given.items()
    ]


class ClassificationCost(hungarian_assigner.ClassificationCost):
    """Also ``cost(cls_pred, gt_labels)``: minus the softmax probability of
    each ground truth's class, (num_query, num_gt)."""

    def __call__(self, pred_instances, gt_instances, img_meta=None):
        if isinstance(pred_instances, Tensor):
            pred_instances = InstanceData(scores=pred_instances)
            gt_instances = InstanceData(labels=gt_instances)
        return super().__call__(pred_instances, gt_instances, img_meta)


class BBoxL1Cost(hungarian_assigner.BBoxL1Cost):
    """Also ``cost(bbox_pred, gt_bboxes)`` with normalised (cx, cy, w, h)
    predictions and normalised (x1, y1, x2, y2) ground truths, compared in
    ``box_format`` (one of them converted), (num_query, num_gt)."""

    def __call__(self, pred_instances, gt_instances, img_meta=None):
        if not isinstance(pred_instances, Tensor):
            return super().__call__(pred_instances, gt_instances, img_meta)
        pred, target = pred_instances, gt_instances
        if self.box_format == 'xywh':
            target = bbox_xyxy_to_cxcywh(target)
        else:
            pred = bbox_cxcywh_to_xyxy(pred)
        return torch.cdist(pred, target, p=1) * self.weight


class IoUCost(hungarian_assigner.IoUCost):
    """Also ``cost(bboxes, gt_bboxes)`` with absolute (x1, y1, x2, y2)
    boxes: minus their (generalised) IoU, (num_query, num_gt)."""

    def __call__(self, pred_instances, gt_instances, img_meta=None):
        if isinstance(pred_instances, Tensor):
            pred_instances = InstanceData(bboxes=pred_instances)
            gt_instances = InstanceData(bboxes=gt_instances)
        return super().__call__(pred_instances, gt_instances, img_meta)


class FocalLossCost(_Mmdet3FocalLossCost):
    """mmdet 3.x's ``FocalLossCost``, also answering 2.x's call
    ``cost(cls_pred, gt_labels)`` (or mask logits with ``binary_input``)."""

    def __call__(self, pred_instances, gt_instances, img_meta=None,
                 **kwargs) -> Tensor:
        if isinstance(pred_instances, Tensor):
            if self.binary_input:
                return self._mask_focal_loss_cost(pred_instances,
                                                  gt_instances)
            return self._focal_loss_cost(pred_instances, gt_instances)
        return super().__call__(pred_instances, gt_instances, img_meta,
                                **kwargs)


_MMDET2_COSTS = {
    cls.__name__: cls
    for cls in (ClassificationCost, BBoxL1Cost, IoUCost, FocalLossCost)
}


def build_match_cost(cfg: dict, default_args: Optional[dict] = None):
    """mmdet 2.x's builder: a match cost that also answers 2.x's tensor
    call where 2.x had one (the four above); any other registered cost as
    mmdetr's registry builds it."""
    cfg = dict(cfg)
    name = str(cfg.get('type', ''))
    if name.startswith('mmdetr.'):
        name = name[len('mmdetr.'):]
    if name in _MMDET2_COSTS:
        cfg.pop('type')
        return _MMDET2_COSTS[name](**cfg, **(default_args or {}))
    return build_task_util(cfg, default_args=default_args)


class HungarianAssigner(hungarian_assigner.HungarianAssigner):
    """mmdetr's assigner in mmdet 2.x's form too.

    ``HungarianAssigner(cls_cost=..., reg_cost=..., iou_cost=...)`` (2.x's
    defaults for those not given, kept as ``cls_cost`` / ``reg_cost`` /
    ``iou_cost``), or ``match_costs`` as mmdet 3.x; and
    ``assign(bbox_pred, cls_pred, gt_bboxes, gt_labels, img_meta)`` with
    normalised (cx, cy, w, h) ``bbox_pred`` runs the same matching as the
    3.x call. Its costs answer 2.x's tensor calls (:func:`build_match_cost`).
    """

    def __init__(self,
                 match_costs=None,
                 cls_cost: Optional[dict] = None,
                 reg_cost: Optional[dict] = None,
                 iou_cost: Optional[dict] = None) -> None:
        mmdet2_form = match_costs is None
        if mmdet2_form:
            match_costs = translate_assigner_costs(cls_cost, reg_cost,
                                                   iou_cost)
        elif not (cls_cost is None and reg_cost is None and iou_cost is None):
            raise ValueError(
                'HungarianAssigner: give either match_costs or mmdet 2.x\'s '
                'cls_cost/reg_cost/iou_cost, not both')
        if isinstance(match_costs, dict):
            match_costs = [match_costs]
        super().__init__([
            build_match_cost(cfg) if isinstance(cfg, dict) else cfg
            for cfg in match_costs
        ])
        if mmdet2_form:
            self.cls_cost, self.reg_cost, self.iou_cost = self.match_costs

    def assign(self, pred_instances, gt_instances, img_meta=None, *args,
               **kwargs):
        """mmdet 3.x's call, or 2.x's ``assign(bbox_pred, cls_pred,
        gt_bboxes, gt_labels, img_meta, gt_bboxes_ignore=None, eps=1e-7)``
        (see :func:`mmdet2_assign`)."""
        if isinstance(pred_instances, Tensor):
            return mmdet2_assign(super().assign, pred_instances,
                                 gt_instances, img_meta, *args, **kwargs)
        return super().assign(pred_instances, gt_instances, img_meta,
                              **kwargs)


def mmdet2_assign(assign,
                  bbox_pred: Tensor,
                  cls_pred: Tensor,
                  gt_bboxes: Tensor,
                  gt_labels: Tensor,
                  img_meta: Optional[dict] = None,
                  gt_bboxes_ignore: Optional[Tensor] = None,
                  eps: float = 1e-7):
    """mmdet 2.x's ``HungarianAssigner.assign`` through the 3.x call.

    Args:
        assign (callable): The 3.x ``assign(pred_instances, gt_instances,
            img_meta)``.
        bbox_pred (Tensor): Normalised (cx, cy, w, h), has shape
            (num_query, 4).
        cls_pred (Tensor): Logits, has shape (num_query, C).
        gt_bboxes (Tensor): Absolute (x1, y1, x2, y2), shape (num_gt, 4).
        gt_labels (Tensor): has shape (num_gt, ).
        img_meta (dict): Has ``img_shape`` (h, w) or (h, w, c).
        gt_bboxes_ignore (None): Not supported, as in 2.x.
        eps (float): Unused; 2.x's signature has it.

    Returns:
        :obj:`AssignResult`: as the 3.x call's.
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
    return assign(pred_instances, gt_instances, img_meta)


def _mmdet2_assigner(cfg: dict) -> Optional[dict]:
    """A ``HungarianAssigner`` config in 2.x's form builds the class
    above."""
    if not any(k in cfg for k in ('cls_cost', 'reg_cost', 'iou_cost')) \
            and 'match_costs' in cfg:
        return None
    return dict(cfg, type=HungarianAssigner)


def register_adapters() -> None:
    """Have mmdetr's registries build 2.x-form assigner configs (also one
    without arguments, 2.x's defaults) as :class:`HungarianAssigner`."""
    register_config_adapter('HungarianAssigner', _mmdet2_assigner)
