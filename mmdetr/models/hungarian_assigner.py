# Copyright (c) mmdetr contributors. All rights reserved.
"""One-to-one matching of predictions to ground truths (paper eq. 1)."""
from typing import List, Optional, Sequence, Union

import numpy as np
import torch
from mmdet.models.task_modules.assigners import AssignResult
from torch import Tensor
from torch.nn.utils.rnn import pad_sequence

from mmdetr.compat.mmdet2_config import translate_assigner_costs
from mmdetr.compat.mmdet2_costs import mmdet2_assign
from mmdetr.registry import TASK_UTILS, build_task_util
from mmdetr.models.match_cost import image_size_factor

try:
    from scipy.optimize import linear_sum_assignment
except ImportError:  # pragma: no cover - scipy is an install requirement
    linear_sum_assignment = None


def solve_assignment(cost: Union[Tensor, np.ndarray]):
    """Minimum-cost one-to-one assignment of a (num_preds, num_gts) matrix.

    Returns:
        tuple[np.ndarray, np.ndarray]: matched row (prediction) and column
        (ground truth) indices, ``min(num_preds, num_gts)`` of each.
    """
    if linear_sum_assignment is None:
        raise ImportError('HungarianAssigner needs scipy: '
                          '`pip install scipy` (it is in requirements/).')
    if isinstance(cost, Tensor):
        cost = cost.detach().float().cpu().numpy()
    if not np.isfinite(cost).all():
        # a diverged model predicts NaN; match anyway so that the loss, not
        # scipy, reports it (DETR.parse_losses stops training with the
        # iteration and the loss key)
        cost = np.nan_to_num(cost, nan=1e8, posinf=1e8, neginf=-1e8)
    return linear_sum_assignment(cost)


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

    :meth:`assign` does this for one image (mmdet's interface);
    :meth:`assign_batch` for every image and every set of predictions
    (decoder layer) of a batch, with one cost computation and one
    device-to-host copy for all of them, and gives the same assignments.

    mmdet 2.x's form is accepted too (see :mod:`mmdetr.compat`):
    ``HungarianAssigner(cls_cost=..., reg_cost=..., iou_cost=...)`` (2.x's
    defaults for those not given) becomes ``match_costs`` in that order,
    kept as ``self.cls_cost`` / ``self.reg_cost`` / ``self.iou_cost``; and
    ``assign(bbox_pred, cls_pred, gt_bboxes, gt_labels, img_meta)`` with
    normalised (cx, cy, w, h) ``bbox_pred`` runs the same matching.

    Args:
        match_costs (dict | list[dict]): Match cost configs, e.g.
            ``[dict(type='ClassificationCost', weight=1.),
            dict(type='BBoxL1Cost', weight=5., box_format='xywh'),
            dict(type='IoUCost', iou_mode='giou', weight=2.)]``.
        cls_cost, reg_cost, iou_cost (dict, optional): mmdet 2.x's form,
            instead of ``match_costs``.
    """

    def __init__(self,
                 match_costs: Union[dict, List[dict], None] = None,
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
        if not match_costs:
            raise ValueError('HungarianAssigner: match_costs is empty')
        self.match_costs = [
            build_task_util(cfg) if isinstance(cfg, dict) else cfg
            for cfg in match_costs
        ]
        if mmdet2_form:
            self.cls_cost, self.reg_cost, self.iou_cost = self.match_costs

    def cost_matrix(self, pred_scores: Tensor, pred_bboxes: Tensor,
                    gt_labels: Tensor, gt_bboxes: Tensor,
                    factor: Optional[Tensor]) -> Tensor:
        """Summed match costs; arguments as ``BaseMatchCost.batched``.

        Returns:
            Tensor: has shape (..., num_preds, num_gts).
        """
        return sum(
            cost.batched(pred_scores, pred_bboxes, gt_labels, gt_bboxes,
                         factor) for cost in self.match_costs)

    def assign(self,
               pred_instances,
               gt_instances,
               img_meta: Optional[dict] = None,
               *args,
               **kwargs) -> AssignResult:
        """Match one image's predictions to its ground truths.

        Called as in mmdet 2.x, ``assign(bbox_pred, cls_pred, gt_bboxes,
        gt_labels, img_meta, gt_bboxes_ignore=None, eps=1e-7)``, it builds
        the instances from those tensors (see
        :func:`~mmdetr.compat.mmdet2_assign`) and runs the same matching.

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
        if isinstance(pred_instances, Tensor):  # mmdet 2.x's call
            return mmdet2_assign(self, pred_instances, gt_instances,
                                 img_meta, *args, **kwargs)
        gt_labels = gt_instances.labels
        num_gts = len(gt_instances)
        num_preds = len(pred_instances)

        # 1. everything is background unless matched below
        gt_inds = np.zeros(num_preds, dtype=np.int64)
        if num_gts > 0 and num_preds > 0:
            # 2. cost matrix; costs that only take instances (mmdet's own)
            # are called as such
            if self._batchable():
                factor = None if img_meta is None else image_size_factor(
                    img_meta, gt_instances.bboxes)
                cost = self.cost_matrix(pred_instances.scores,
                                        pred_instances.bboxes, gt_labels,
                                        gt_instances.bboxes, factor)
            else:
                cost = sum(
                    c(pred_instances, gt_instances, img_meta)
                    for c in self.match_costs)
            # 3. solve on the CPU
            _write_matches(gt_inds, solve_assignment(cost))
        # 4. the matches
        gt_inds = torch.from_numpy(gt_inds).to(gt_labels.device)
        return AssignResult(
            num_gts, gt_inds, None, labels=_matched_labels(gt_inds, gt_labels))

    def assign_batch(self, pred_scores: Tensor, pred_bboxes: Tensor,
                     gt_labels_list: Sequence[Tensor],
                     gt_bboxes_list: Sequence[Tensor],
                     img_metas: Sequence[dict]) -> List[List[AssignResult]]:
        """Match several sets of predictions (e.g. every decoder layer's)
        of every image of a batch.

        The ground truths are padded to the batch's largest count, the costs
        of all (set, image) pairs computed in one call, copied to the host
        once, and each pair solved by scipy on its own block, so the result
        equals :meth:`assign` per image.

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
            list[list[AssignResult]]: ``[set][image]``, as :meth:`assign`.
        """
        num_sets, bs, num_preds = pred_scores.shape[:3]
        if not (len(gt_labels_list) == len(gt_bboxes_list) == len(img_metas)
                == bs == pred_bboxes.shape[1]):
            raise ValueError(
                'HungarianAssigner.assign_batch: got predictions for '
                f'{bs} images but {len(gt_labels_list)} label lists, '
                f'{len(gt_bboxes_list)} box lists, {len(img_metas)} metas')
        if not self._batchable():
            from mmengine.structures import InstanceData
            return [[
                self.assign(
                    InstanceData(scores=pred_scores[n, i],
                                 bboxes=pred_bboxes[n, i]),
                    InstanceData(labels=gt_labels_list[i],
                                 bboxes=gt_bboxes_list[i]), img_metas[i])
                for i in range(bs)
            ] for n in range(num_sets)]

        num_gts = [len(labels) for labels in gt_labels_list]
        max_gts = max(num_gts, default=0)
        device = pred_scores.device
        # padded to (bs, max_gts); the padding columns are sliced off before
        # solving and never indexed by a match
        gt_labels = pad_sequence(list(gt_labels_list), batch_first=True)
        gt_bboxes = pad_sequence(
            [b.to(pred_bboxes.dtype) for b in gt_bboxes_list],
            batch_first=True)
        # 1. everything is background unless matched below
        gt_inds = np.zeros((num_sets, bs, num_preds), dtype=np.int64)
        if max_gts > 0 and num_preds > 0:
            # 2. one cost tensor (num_sets, bs, num_preds, max_gts)
            factor = torch.stack([
                image_size_factor(meta, gt_bboxes) for meta in img_metas
            ]).unsqueeze(1)
            cost = self.cost_matrix(pred_scores, pred_bboxes, gt_labels,
                                    gt_bboxes, factor)
            # 3. one copy to the host, then scipy per (set, image)
            cost = cost.detach().float().cpu().numpy()
            for n in range(num_sets):
                for i in range(bs):
                    if num_gts[i] > 0:
                        _write_matches(
                            gt_inds[n, i],
                            solve_assignment(cost[n, i, :, :num_gts[i]]))
        # 4. the matches: one copy back to the device, labels for all at once
        gt_inds = torch.from_numpy(gt_inds).to(device)
        labels = _matched_labels(gt_inds, gt_labels)
        return [[
            AssignResult(num_gts[i], gt_inds[n, i], None, labels=labels[n, i])
            for i in range(bs)
        ] for n in range(num_sets)]

    def _batchable(self) -> bool:
        # mmdet's costs (reachable through the registry) have no batched()
        return all(hasattr(c, 'batched') for c in self.match_costs)

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}(match_costs={self.match_costs})'


def _write_matches(gt_inds: np.ndarray, matches) -> None:
    """Write 1-based ground-truth indices at the matched predictions."""
    rows, cols = matches
    gt_inds[rows] = cols + 1


def _matched_labels(gt_inds: Tensor, gt_labels: Tensor) -> Tensor:
    """Label of the matched ground truth, -1 for background.

    Args:
        gt_inds (Tensor): 1-based matches, 0 for background, has shape
            (..., num_preds).
        gt_labels (Tensor): has shape (..., num_gts), leading dims as
            ``gt_inds``'s or absent.
    """
    background = torch.full_like(gt_inds, -1)
    if gt_labels.shape[-1] == 0:
        return background
    gt_labels = gt_labels.expand(*gt_inds.shape[:-1], gt_labels.shape[-1])
    labels = gt_labels.gather(-1, (gt_inds - 1).clamp(min=0))
    return torch.where(gt_inds > 0, labels, background)
