# Copyright (c) mmdetr contributors. All rights reserved.
"""One-to-one matching of predictions to ground truths (paper eq. 1)."""
from typing import List, Optional, Union

import numpy as np
import torch
from mmdet.models.task_modules.assigners import AssignResult
from torch import Tensor

from mmdetr.registry import TASK_UTILS, build_task_util

try:
    from scipy.optimize import linear_sum_assignment
except ImportError:  # pragma: no cover - scipy is an install requirement
    linear_sum_assignment = None


def solve_assignment(cost: Tensor):
    """Minimum-cost one-to-one assignment of a (num_preds, num_gts) matrix.

    Returns:
        tuple[np.ndarray, np.ndarray]: matched row (prediction) and column
        (ground truth) indices, ``min(num_preds, num_gts)`` of each.
    """
    if linear_sum_assignment is None:
        raise ImportError('HungarianAssigner needs scipy: '
                          '`pip install scipy` (it is in requirements/).')
    cost = cost.detach().float().cpu()
    if not torch.isfinite(cost).all():
        # a diverged model predicts NaN; match anyway so that the loss, not
        # scipy, reports it (DETR.parse_losses stops training with the
        # iteration and the loss key)
        cost = torch.nan_to_num(cost, nan=1e8, posinf=1e8, neginf=-1e8)
    return linear_sum_assignment(cost.numpy())


@TASK_UTILS.register_module()
class HungarianAssigner:
    """Assign each ground truth to exactly one prediction by minimum total
    cost; the remaining predictions are background.

    The cost of a pair is the sum of the configured match costs. Steps:

    1. every prediction starts as background (``assigned_gt_inds == 0``);
    2. compute the (num_preds, num_gts) cost matrix;
    3. solve it on the CPU with scipy's ``linear_sum_assignment``;
    4. matched predictions get their ground truth (1-based) and its label.

    When there are more ground truths than predictions only ``num_preds`` of
    them can be matched; the rest go unassigned.

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
            raise ValueError('HungarianAssigner: match_costs is empty')
        self.match_costs = [
            build_task_util(cfg) if isinstance(cfg, dict) else cfg
            for cfg in match_costs
        ]

    def assign(self,
               pred_instances,
               gt_instances,
               img_meta: Optional[dict] = None,
               **kwargs) -> AssignResult:
        """Match one image's predictions to its ground truths.

        Args:
            pred_instances (InstanceData): ``scores`` (num_preds, C) logits
                and ``bboxes`` (num_preds, 4) absolute x1y1x2y2.
            gt_instances (InstanceData): ``labels`` (num_gts, ) and
                ``bboxes`` (num_gts, 4) absolute x1y1x2y2.
            img_meta (dict): Has ``img_shape`` (h, w).

        Returns:
            :obj:`AssignResult`: ``gt_inds`` is 0 for background and the
            1-based ground-truth index otherwise; ``labels`` is -1 for
            background.
        """
        gt_labels = gt_instances.labels
        num_gts = len(gt_instances)
        num_preds = len(pred_instances)
        device = gt_labels.device

        # 1. everything is background unless matched below
        assigned_gt_inds = torch.zeros(
            num_preds, dtype=torch.long, device=device)
        assigned_labels = torch.full((num_preds, ),
                                     -1,
                                     dtype=torch.long,
                                     device=device)
        if num_gts == 0 or num_preds == 0:
            return AssignResult(
                num_gts, assigned_gt_inds, None, labels=assigned_labels)

        # 2. cost matrix
        cost = sum(
            match_cost(pred_instances, gt_instances, img_meta)
            for match_cost in self.match_costs)

        # 3. solve on the CPU
        rows, cols = solve_assignment(cost)
        return self._result(num_gts, assigned_gt_inds, assigned_labels,
                            gt_labels, rows, cols)

    @staticmethod
    def _result(num_gts: int, assigned_gt_inds: Tensor,
                assigned_labels: Tensor, gt_labels: Tensor, rows: np.ndarray,
                cols: np.ndarray) -> AssignResult:
        # 4. write the matches
        device = assigned_gt_inds.device
        rows = torch.from_numpy(rows).to(device)
        cols = torch.from_numpy(cols).to(device)
        assigned_gt_inds[rows] = cols + 1
        assigned_labels[rows] = gt_labels[cols]
        return AssignResult(
            num_gts, assigned_gt_inds, None, labels=assigned_labels)

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}(match_costs={self.match_costs})'
