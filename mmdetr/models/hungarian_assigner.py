# Copyright (c) mmdetr contributors. All rights reserved.
"""Hungarian matching (paper eq. 1): :class:`HungarianAssigner` and the
match costs it sums, :class:`ClassificationCost`, :class:`BBoxL1Cost` and
:class:`IoUCost`.

Each cost answers mmdet 3.x's call, ``cost(pred_instances, gt_instances,
img_meta)`` on one image (absolute (x1, y1, x2, y2) boxes, a
(num_preds, num_gts) matrix), and :meth:`BaseMatchCost.batched`, every
decoder layer and image of a batch against its :class:`SetTargets` in one
call, (num_layers, bs, num_preds, max_gts).
"""
from typing import List, Optional, Tuple, Union

import numpy as np
import torch
from mmdet.models.task_modules.assigners import AssignResult
from mmdet.structures.bbox import (bbox_cxcywh_to_xyxy, bbox_overlaps,
                                   bbox_xyxy_to_cxcywh)
from mmengine.structures import InstanceData
from scipy.optimize import linear_sum_assignment
from torch import Tensor

from mmdetr.models.set_targets import SetTargets
from mmdetr.registry import TASK_UTILS, build_task_util


class MatchCostsError(ValueError, AssertionError):
    """``match_costs`` is empty (mmdet's assigner asserts the same, so this
    is an ``AssertionError`` too)."""


@TASK_UTILS.register_module()
class HungarianAssigner:
    """Assign each ground truth to exactly one prediction by minimum total
    cost; the remaining predictions are "no object".

    The cost of a pair is the sum of the configured match costs. Steps:

    1. every prediction starts as "no object";
    2. compute the (num_preds, num_gts) cost matrix;
    3. solve it on the host with scipy's ``linear_sum_assignment``;
    4. matched predictions get their ground truth.

    With more ground truths than predictions only ``num_preds`` of them are
    matched. Two entry points: :meth:`assign`, mmdet 3.x's contract (one
    image, any registered cost, mask costs too), and :meth:`match`, every
    decoder layer and image of a batch with one cost computation, one copy
    of the costs to the host and one copy of the matches back.

    Args:
        match_costs (dict | list[dict]): Match cost configs, e.g.
            ``[dict(type='ClassificationCost', weight=1.),
            dict(type='BBoxL1Cost', weight=5., box_format='xywh'),
            dict(type='IoUCost', iou_mode='giou', weight=2.)]``.
    """

    def __init__(self, match_costs: Union[dict, List[dict]]) -> None:
        if isinstance(match_costs, dict):
            match_costs = [match_costs]
        if not match_costs:
            raise MatchCostsError('HungarianAssigner: match_costs is empty; '
                                  'give at least one match cost config')
        self.match_costs = [
            build_task_util(cfg) if isinstance(cfg, dict) else cfg
            for cfg in match_costs
        ]

    def assign(self, pred_instances: InstanceData,
               gt_instances: InstanceData, img_meta: Optional[dict] = None,
               **kwargs) -> AssignResult:
        """Match one image's predictions to its ground truths.

        Args:
            pred_instances (InstanceData): What the costs read, e.g.
                ``scores`` (num_preds, C), ``bboxes`` (num_preds, 4)
                absolute (x1, y1, x2, y2), or ``masks``.
            gt_instances (InstanceData): ``labels`` (num_gts, ) and what the
                costs read.
            img_meta (dict, optional): With ``img_shape`` (h, w).

        Returns:
            :obj:`AssignResult`: ``gt_inds`` 0 for "no object", else the
            1-based ground truth; ``labels`` -1 for "no object".
        """
        gt_labels = gt_instances.labels
        num_gts, num_preds = len(gt_instances), len(pred_instances)
        # 1. everything is "no object" unless matched below
        gt_inds = gt_labels.new_zeros((num_preds, ), dtype=torch.long)
        labels = gt_labels.new_full((num_preds, ), -1, dtype=torch.long)
        if num_gts > 0 and num_preds > 0:
            # 2. the costs, 3. solved on the host
            cost = sum(c(pred_instances, gt_instances, img_meta)
                       for c in self.match_costs)
            # a diverged model predicts NaN: match anyway, so that the
            # loss, not scipy, reports it
            rows, cols = linear_sum_assignment(np.nan_to_num(
                cost.detach().float().cpu().numpy(), nan=1e8, posinf=1e8,
                neginf=-1e8))
            # 4. the matched predictions' ground truths
            rows = torch.from_numpy(rows).to(gt_labels.device)
            cols = torch.from_numpy(cols).to(gt_labels.device)
            gt_inds[rows] = cols + 1
            labels[rows] = gt_labels[cols]
        return AssignResult(num_gts, gt_inds, None, labels=labels)

    @torch.no_grad()
    def match(self, pred_scores: Tensor, pred_boxes: Tensor,
              targets: SetTargets) -> List[Tuple[Tensor, Tensor, Tensor]]:
        """Match several sets of predictions (every decoder layer's) of
        every image of a batch.

        Args:
            pred_scores (Tensor): Class logits, has shape
                (num_sets, bs, num_preds, C).
            pred_boxes (Tensor): Normalised (cx, cy, w, h), has shape
                (num_sets, bs, num_preds, 4).
            targets (SetTargets): The batch's ground truths.

        Returns:
            list[tuple[Tensor, Tensor, Tensor]]: per set, the image,
            prediction and ground-truth index of every match, ascending by
            (image, prediction), on the predictions' device.
        """
        num_sets, bs, num_preds = pred_scores.shape[:3]
        if pred_boxes.shape[:3] != (num_sets, bs, num_preds) or \
                len(targets) != bs:
            raise ValueError(
                'HungarianAssigner: scores of shape '
                f'{tuple(pred_scores.shape)}, boxes of shape '
                f'{tuple(pred_boxes.shape)} and targets of {len(targets)} '
                'images')
        found = [[] for _ in range(num_sets)]
        if max(targets.num_gts, default=0) > 0:
            # 2. one cost tensor (num_sets, bs, num_preds, max_gts)
            if all(hasattr(c, 'batched') for c in self.match_costs):
                cost = sum(c.batched(pred_scores, pred_boxes, targets)
                           for c in self.match_costs)
            else:
                cost = self._costs_per_image(pred_scores, pred_boxes, targets)
            # 3. one copy to the host, scipy on each (set, image) without
            # the padding columns
            cost = np.nan_to_num(cost.float().cpu().numpy(), nan=1e8,
                                 posinf=1e8, neginf=-1e8)  # as in assign
            for n in range(num_sets):
                for i, num_gts in enumerate(targets.num_gts):
                    if num_gts > 0:
                        query, gt = linear_sum_assignment(
                            cost[n, i, :, :num_gts])
                        found[n].append(
                            np.stack([np.full_like(query, i), query, gt]))
        # 4. one copy of every match to the device, queued without waiting
        sizes = [sum(a.shape[1] for a in arrays) for arrays in found]
        every = np.concatenate(
            [a for arrays in found for a in arrays] or
            [np.zeros((3, 0), dtype=np.int64)], axis=1)
        every = torch.from_numpy(every).to(pred_scores.device,
                                           non_blocking=True)
        return [tuple(t) for t in every.split(sizes, dim=1)]

    def _costs_per_image(self, pred_scores: Tensor, pred_boxes: Tensor,
                         targets: SetTargets) -> Tensor:
        """The summed costs, padded as in :meth:`match`, of costs with only
        mmdet's one-image call: one (set, image) at a time."""
        corners = bbox_cxcywh_to_xyxy(pred_boxes) * targets.factors[:, None]
        cost = pred_scores.new_zeros(
            (*pred_scores.shape[:3], targets.labels.shape[1]))
        for i, n_gts in enumerate(targets.num_gts):
            gt = InstanceData(labels=targets.labels[i, :n_gts],
                              bboxes=targets.corners[i, :n_gts])
            for n in range(pred_scores.shape[0] if n_gts else 0):
                pred = InstanceData(scores=pred_scores[n, i],
                                    bboxes=corners[n, i])
                cost[n, i, :, :n_gts] = sum(
                    c(pred, gt, targets.img_metas[i])
                    for c in self.match_costs)
        return cost

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}(match_costs={self.match_costs})'


class BaseMatchCost:
    """A weighted pairwise cost.

    Args:
        weight (float): Multiplier of the cost. Defaults to 1.
    """

    def __init__(self, weight: float = 1.) -> None:
        self.weight = weight

    def __call__(self, pred_instances: InstanceData,
                 gt_instances: InstanceData,
                 img_meta: Optional[dict] = None) -> Tensor:
        """One image: (num_preds, num_gts)."""
        raise NotImplementedError

    def batched(self, pred_scores: Tensor, pred_boxes: Tensor,
                targets: SetTargets) -> Tensor:
        """Every set (decoder layer) and image of a batch.

        Args:
            pred_scores (Tensor): Logits, has shape
                (num_sets, bs, num_preds, C).
            pred_boxes (Tensor): Normalised (cx, cy, w, h), has shape
                (num_sets, bs, num_preds, 4).
            targets (SetTargets): The batch's ground truths.

        Returns:
            Tensor: has shape (num_sets, bs, num_preds, max_gts).
        """
        raise NotImplementedError

    def __repr__(self) -> str:
        args = ', '.join(f'{k}={v!r}' for k, v in vars(self).items())
        return f'{self.__class__.__name__}({args})'


@TASK_UTILS.register_module()
class ClassificationCost(BaseMatchCost):
    """Minus the softmax probability of the ground-truth class: the paper's
    ``1 - p`` without the constant 1, which does not change the matching."""

    def __call__(self, pred_instances, gt_instances, img_meta=None):
        probs = pred_instances.scores.softmax(-1)
        return -probs[:, gt_instances.labels] * self.weight

    def batched(self, pred_scores, pred_boxes, targets):
        probs = pred_scores.softmax(-1)
        # (num_sets, bs, num_preds, max_gts): each image's labels, the same
        # for every set and prediction
        index = targets.labels[:, None].expand(*probs.shape[:-1], -1)
        return -probs.gather(-1, index) * self.weight


@TASK_UTILS.register_module()
class BBoxL1Cost(BaseMatchCost):
    """L1 distance between boxes normalised by the image size.

    Args:
        weight (float): Defaults to 1.
        box_format (str): Compare boxes as (cx, cy, w, h), ``'xywh'``, what
            DETR regresses, or as corners, ``'xyxy'``. Defaults to 'xyxy'.
    """

    def __init__(self, weight: float = 1., box_format: str = 'xyxy') -> None:
        super().__init__(weight)
        if box_format not in ('xyxy', 'xywh'):
            raise ValueError("BBoxL1Cost: box_format must be 'xyxy' or "
                             f"'xywh', got {box_format!r}")
        self.box_format = box_format

    def __call__(self, pred_instances, gt_instances, img_meta=None):
        if img_meta is None or 'img_shape' not in img_meta:
            raise ValueError("BBoxL1Cost needs the image size: pass img_meta "
                             "with 'img_shape'")
        targets = SetTargets.build([gt_instances.bboxes],
                                   [gt_instances.labels], [img_meta])
        boxes = bbox_xyxy_to_cxcywh(pred_instances.bboxes / targets.factors)
        return self.batched(None, boxes[None, None], targets)[0, 0]

    def batched(self, pred_scores, pred_boxes, targets):
        if self.box_format == 'xywh':
            pred, gt = pred_boxes, targets.boxes
        else:
            pred = bbox_cxcywh_to_xyxy(pred_boxes)
            gt = targets.corners / targets.factors[:, None]
        return torch.cdist(pred, gt, p=1) * self.weight


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

    def __call__(self, pred_instances, gt_instances, img_meta=None):
        return -bbox_overlaps(pred_instances.bboxes, gt_instances.bboxes,
                              mode=self.iou_mode) * self.weight

    def batched(self, pred_scores, pred_boxes, targets):
        pred = bbox_cxcywh_to_xyxy(pred_boxes) * targets.factors[:, None]
        # bbox_overlaps wants the same leading dims on both sides
        gt = targets.corners.expand(pred.shape[0], -1, -1, -1)
        return -bbox_overlaps(pred, gt, mode=self.iou_mode) * self.weight
