# Copyright (c) mmdetr contributors. All rights reserved.
"""One-to-one matching of predictions to ground truths (paper eq. 1)."""
from typing import List, Optional, Sequence, Union

import numpy as np
import torch
from mmdet.models.task_modules.assigners import AssignResult
from mmengine.structures import InstanceData
from torch import Tensor

from mmdetr.models.set_criterion import image_size_factors, pad_ground_truths
from mmdetr.registry import TASK_UTILS, build_task_util

try:
    from scipy.optimize import linear_sum_assignment
except ImportError:  # pragma: no cover - scipy is an install requirement
    linear_sum_assignment = None


class MatchCostsError(ValueError, AssertionError):
    """``match_costs`` is empty (mmdet's assigner asserts the same, so this
    is an ``AssertionError`` too)."""


def solve_assignment(cost: np.ndarray):
    """Minimum-cost one-to-one assignment of a (num_preds, num_gts) matrix.

    Returns:
        tuple[np.ndarray, np.ndarray]: matched row (prediction) and column
        (ground truth) indices, ``min(num_preds, num_gts)`` of each.
    """
    if linear_sum_assignment is None:
        raise ImportError('HungarianAssigner needs scipy: '
                          '`pip install scipy` (it is in requirements/).')
    if not np.isfinite(cost).all():
        # a diverged model predicts NaN; match anyway so that the loss, not
        # scipy, reports it (training then stops naming the iteration)
        cost = np.nan_to_num(cost, nan=1e8, posinf=1e8, neginf=-1e8)
    return linear_sum_assignment(cost)


@TASK_UTILS.register_module()
class HungarianAssigner:
    """Assign each ground truth to exactly one prediction by minimum total
    cost; the remaining predictions are "no object".

    The cost of a pair is the sum of the configured match costs. Steps:

    1. every prediction starts as "no object" (``gt_inds == 0``);
    2. compute the (num_preds, num_gts) cost matrix;
    3. solve it on the CPU with scipy's ``linear_sum_assignment``;
    4. matched predictions get their ground truth (1-based) and its label.

    With more ground truths than predictions only ``num_preds`` of them are
    matched.

    Two entry points:

    - :meth:`assign` (mmdet 3.x's contract): one image, any registered match
      cost (box, class or mask costs such as mmdet's ``DiceCost``), each
      called as ``cost(pred_instances, gt_instances, img_meta)``;
    - :meth:`match` (what DETR's set loss calls): several sets of box
      predictions (decoder layers) of every image of a batch, with one cost
      computation and one copy of the costs to the host, when every cost
      has a batched form (``batched``, as mmdetr's box and class costs);
      otherwise it scores one (set, image) pair at a time.

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

    def assign(self,
               pred_instances: InstanceData,
               gt_instances: InstanceData,
               img_meta: Optional[dict] = None,
               **kwargs) -> AssignResult:
        """Match one image's predictions to its ground truths.

        Args:
            pred_instances (InstanceData): What the costs read, e.g.
                ``scores`` (num_preds, C) logits, ``bboxes`` (num_preds, 4)
                absolute x1y1x2y2, or ``masks``.
            gt_instances (InstanceData): ``labels`` (num_gts, ) and what the
                costs read (``bboxes``, ``masks``).
            img_meta (dict, optional): Has ``img_shape`` (h, w), for costs
                that normalise boxes.

        Returns:
            :obj:`AssignResult`: ``gt_inds`` is 0 for "no object" and the
            1-based ground-truth index otherwise; ``labels`` is -1 for "no
            object".
        """
        gt_labels = gt_instances.labels
        num_gts, num_preds = len(gt_instances), len(pred_instances)
        device = gt_labels.device
        gt_inds = torch.zeros(num_preds, dtype=torch.long, device=device)
        labels = torch.full((num_preds, ), -1, dtype=torch.long,
                            device=device)
        if num_gts > 0 and num_preds > 0:
            cost = sum(c(pred_instances, gt_instances, img_meta)
                       for c in self.match_costs)
            rows, cols = solve_assignment(cost.detach().float().cpu().numpy())
            rows = torch.from_numpy(rows).to(device)
            cols = torch.from_numpy(cols).to(device)
            gt_inds[rows] = cols + 1
            labels[rows] = gt_labels[cols]
        return AssignResult(num_gts, gt_inds, None, labels=labels)

    def match(self, pred_scores: Tensor, pred_bboxes: Tensor,
              gt_labels_list: Sequence[Tensor],
              gt_bboxes_list: Sequence[Tensor],
              img_metas: Sequence[dict]) -> np.ndarray:
        """Match several sets of predictions (e.g. every decoder layer's) of
        every image of a batch.

        The ground truths are padded to the batch's largest count, the costs
        of all (set, image) pairs computed at once and copied to the host
        once; scipy solves each pair on its own block (the padding columns
        sliced off).

        Args:
            pred_scores (Tensor): Class logits, has shape
                (num_sets, bs, num_preds, C).
            pred_bboxes (Tensor): Absolute (x1, y1, x2, y2), has shape
                (num_sets, bs, num_preds, 4).
            gt_labels_list (list[Tensor]): Per image, shape (num_gts_i, ).
            gt_bboxes_list (list[Tensor]): Per image, absolute
                (x1, y1, x2, y2) of shape (num_gts_i, 4).
            img_metas (list[dict]): Per image, with ``img_shape`` (h, w).

        Returns:
            np.ndarray: int64 (num_sets, bs, num_preds), on the host: the
            1-based matched ground truth, 0 for "no object".
        """
        num_sets, bs, num_preds = pred_scores.shape[:3]
        if not (len(gt_labels_list) == len(gt_bboxes_list) == len(img_metas)
                == bs == pred_bboxes.shape[1]):
            raise ValueError(
                'HungarianAssigner: got predictions for '
                f'{bs} images but {len(gt_labels_list)} label lists, '
                f'{len(gt_bboxes_list)} box lists, {len(img_metas)} metas')
        num_gts = [len(labels) for labels in gt_labels_list]
        # 1. everything is "no object" unless matched below
        gt_inds = np.zeros((num_sets, bs, num_preds), dtype=np.int64)
        if max(num_gts, default=0) == 0 or num_preds == 0:
            return gt_inds
        # 2. one cost tensor (num_sets, bs, num_preds, max_gts)
        cost = self.cost_matrix(pred_scores, pred_bboxes, gt_labels_list,
                                gt_bboxes_list, img_metas)
        # 3. one copy to the host, then scipy per (set, image)
        cost = cost.float().cpu().numpy()
        for n in range(num_sets):
            for i in range(bs):
                if num_gts[i] > 0:
                    rows, cols = solve_assignment(cost[n, i, :, :num_gts[i]])
                    gt_inds[n, i, rows] = cols + 1
        return gt_inds

    def cost_matrix(self, pred_scores: Tensor, pred_bboxes: Tensor,
                    gt_labels_list: Sequence[Tensor],
                    gt_bboxes_list: Sequence[Tensor],
                    img_metas: Sequence[dict]) -> Tensor:
        """Summed match costs of every set, image, prediction and ground
        truth, the ground truths padded to the batch's largest count.

        Args: as :meth:`match`.

        Returns:
            Tensor: has shape (num_sets, bs, num_preds, max_gts); the
            padding columns hold no meaningful cost.
        """
        gt_labels, gt_bboxes = pad_ground_truths(
            gt_labels_list, gt_bboxes_list, pred_bboxes.dtype)
        if all(hasattr(c, 'batched') for c in self.match_costs):
            factor = image_size_factors(img_metas, gt_bboxes).unsqueeze(1)
            return sum(
                c.batched(pred_scores, pred_bboxes, gt_labels, gt_bboxes,
                          factor) for c in self.match_costs)
        # costs that only score one image's instances (mmdet's): one
        # (set, image) at a time, into the same padded tensor
        num_sets, bs, num_preds = pred_scores.shape[:3]
        cost = pred_scores.new_zeros(
            (num_sets, bs, num_preds, gt_labels.shape[1]))
        for i in range(bs):
            num_gts = len(gt_labels_list[i])
            if num_gts == 0:
                continue
            gt = InstanceData(labels=gt_labels_list[i],
                              bboxes=gt_bboxes_list[i])
            for n in range(num_sets):
                pred = InstanceData(scores=pred_scores[n, i],
                                    bboxes=pred_bboxes[n, i])
                cost[n, i, :, :num_gts] = sum(
                    c(pred, gt, img_metas[i]) for c in self.match_costs)
        return cost

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}(match_costs={self.match_costs})'
