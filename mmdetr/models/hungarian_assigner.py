# Copyright (c) mmdetr contributors. All rights reserved.
"""One-to-one matching of predictions to ground truths (paper eq. 1)."""
from dataclasses import dataclass
from typing import List, Optional, Sequence, Union

import numpy as np
import torch
from mmdet.models.task_modules.assigners import AssignResult
from mmengine.structures import InstanceData
from torch import Tensor
from torch.nn.utils.rnn import pad_sequence

from mmdetr.compat.mmdet2_config import translate_assigner_costs
from mmdetr.compat.mmdet2_costs import mmdet2_assign
from mmdetr.models.match_cost import image_size_factors
from mmdetr.registry import TASK_UTILS, build_task_util
from mmdetr.utils.host_sync import to_device, to_host

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
        cost = to_host(cost.float())
    if not np.isfinite(cost).all():
        # a diverged model predicts NaN; match anyway so that the loss, not
        # scipy, reports it (DETR.parse_losses stops training with the
        # iteration and the loss key)
        cost = np.nan_to_num(cost, nan=1e8, posinf=1e8, neginf=-1e8)
    return linear_sum_assignment(cost)


def pad_ground_truths(gt_labels_list: Sequence[Tensor],
                      gt_bboxes_list: Sequence[Tensor],
                      dtype: torch.dtype = torch.float32):
    """Stack per-image ground truths, padded to the largest count.

    Args:
        gt_labels_list (list[Tensor]): Per image, shape (num_gts_i, ).
        gt_bboxes_list (list[Tensor]): Per image, shape (num_gts_i, 4).
        dtype (torch.dtype): Of the padded boxes.

    Returns:
        tuple[Tensor, Tensor]: labels (bs, max_gts) and boxes
        (bs, max_gts, 4); the padding is zeros, never indexed by a match.
    """
    labels = pad_sequence([l.reshape(-1) for l in gt_labels_list],
                          batch_first=True)
    bboxes = pad_sequence(
        [b.reshape(-1, 4).to(dtype) for b in gt_bboxes_list],
        batch_first=True)
    return labels, bboxes


@dataclass
class BatchMatches:
    """The matching of several sets of predictions (e.g. decoder layers) of
    a batch, where both the host and the device need it.

    Built by :meth:`from_host` from the matches found on the host, with one
    host-to-device copy for everything the device needs.

    Attributes:
        gt_inds (Tensor): 1-based matched ground truth, 0 for background,
            has shape (num_sets, bs, num_preds); on the device.
        num_gts (list[int]): Ground truths per image.
        num_pos (list[int]): Matched predictions per set (host numbers).
        pos_pred (Tensor): Flat index ``i * num_preds + q`` of every matched
            prediction, set by set, ascending within a set; shape
            (sum(num_pos), ).
        pos_gt (Tensor): Flat index ``i * max_gts + j`` of the ground truth
            each of them matches, shape (sum(num_pos), ).
        num_pos_device (Tensor): ``num_pos`` on the device, float, shape
            (num_sets, ), e.g. to all-reduce across ranks.
    """
    gt_inds: Tensor
    num_gts: List[int]
    num_pos: List[int]
    pos_pred: Tensor
    pos_gt: Tensor
    num_pos_device: Tensor

    @classmethod
    def from_host(cls, gt_inds: np.ndarray, num_gts: Sequence[int],
                  device) -> 'BatchMatches':
        """Pack host matches and copy them to ``device`` in one copy.

        Args:
            gt_inds (np.ndarray): 1-based matches (0: background), int64,
                has shape (num_sets, bs, num_preds).
            num_gts (list[int]): Ground truths per image.
            device: Where the tensors go.
        """
        num_sets, bs, num_preds = gt_inds.shape
        max_gts = max(num_gts, default=0)
        flat = gt_inds.reshape(num_sets, bs * num_preds)
        pos_pred = [np.flatnonzero(row) for row in flat]
        pos_gt = [(idx // num_preds) * max_gts + row[idx] - 1
                  for idx, row in zip(pos_pred, flat)]
        num_pos = [len(idx) for idx in pos_pred]
        total = sum(num_pos)
        packed = np.concatenate(
            [gt_inds.reshape(-1), *pos_pred, *pos_gt,
             np.asarray(num_pos)]).astype(np.int64)
        # 3. one copy to the device for everything derived from the matches
        packed = to_device(packed, device)
        sizes = [gt_inds.size, total, total, num_sets]
        inds, pos_pred_t, pos_gt_t, num_pos_t = packed.split(sizes)
        return cls(
            gt_inds=inds.view(num_sets, bs, num_preds),
            num_gts=list(num_gts),
            num_pos=num_pos,
            pos_pred=pos_pred_t,
            pos_gt=pos_gt_t,
            num_pos_device=num_pos_t.float())

    @classmethod
    def from_assign_results(cls, results: Sequence[Sequence[AssignResult]],
                            device) -> 'BatchMatches':
        """From ``[set][image]`` :obj:`AssignResult`s of any assigner (one
        device-to-host copy to learn the matches)."""
        gt_inds = to_host(
            torch.stack([torch.stack([r.gt_inds for r in layer])
                         for layer in results]))
        num_gts = [r.num_gts for r in results[0]]
        return cls.from_host(gt_inds.astype(np.int64), num_gts, device)

    def select(self, n: int) -> 'BatchMatches':
        """The matches of set ``n`` alone, as a batch of one set (views, no
        copies), e.g. for :meth:`DETRHead.get_targets` per decoder layer."""
        return BatchMatches(
            gt_inds=self.gt_inds[n:n + 1],
            num_gts=self.num_gts,
            num_pos=[self.num_pos[n]],
            pos_pred=self.pos_pred_of(n),
            pos_gt=self.pos_gt_of(n),
            num_pos_device=self.num_pos_device[n:n + 1])

    def pos_pred_of(self, n: int) -> Tensor:
        """Flat indices of set ``n``'s matched predictions."""
        start = sum(self.num_pos[:n])
        return self.pos_pred[start:start + self.num_pos[n]]

    def pos_gt_of(self, n: int) -> Tensor:
        """Flat indices of the ground truths set ``n`` matches."""
        start = sum(self.num_pos[:n])
        return self.pos_gt[start:start + self.num_pos[n]]

    def assign_results(self, gt_labels: Tensor) -> List[List[AssignResult]]:
        """As mmdet's :obj:`AssignResult`, ``[set][image]``.

        Args:
            gt_labels (Tensor): Padded labels, has shape (bs, max_gts).
        """
        labels = matched_labels(self.gt_inds, gt_labels)
        num_sets, bs = self.gt_inds.shape[:2]
        return [[
            AssignResult(self.num_gts[i], self.gt_inds[n, i], None,
                         labels=labels[n, i]) for i in range(bs)
        ] for n in range(num_sets)]


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

    One implementation, :meth:`match`, serves every entry point: it matches
    several sets of predictions (decoder layers) of every image of a batch
    with one cost computation, one device-to-host copy of the costs and one
    host-to-device copy of the matches. :meth:`assign` (mmdet's one-image
    interface) is a batch of one image and one set; :meth:`assign_batch`
    returns mmdet's :obj:`AssignResult` per set and image.

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
            dict(type='IoUCost', iou_mode='giou', weight=2.)]``. mmdet's own
            costs (which score one image at a time) work too.
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
                    gt_labels_list: Sequence[Tensor],
                    gt_bboxes_list: Sequence[Tensor],
                    img_metas: Sequence[Optional[dict]]) -> Tensor:
        """Summed match costs of every set, image, prediction and ground
        truth, the ground truths padded to the batch's largest count.

        Args:
            pred_scores (Tensor): (num_sets, bs, num_preds, C) logits.
            pred_bboxes (Tensor): (num_sets, bs, num_preds, 4) absolute
                (x1, y1, x2, y2).
            gt_labels_list (list[Tensor]): Per image, (num_gts_i, ).
            gt_bboxes_list (list[Tensor]): Per image, (num_gts_i, 4).
            img_metas (list[dict | None]): Per image; None where the image
                size is unknown (costs that need it then say so).

        Returns:
            Tensor: has shape (num_sets, bs, num_preds, max_gts); the
            padding columns hold no meaningful cost.
        """
        gt_labels, gt_bboxes = pad_ground_truths(
            gt_labels_list, gt_bboxes_list, pred_bboxes.dtype)
        if self._batchable():
            factor = None if any(m is None for m in img_metas) else \
                image_size_factors(img_metas, gt_bboxes).unsqueeze(1)
            return sum(
                c.batched(pred_scores, pred_bboxes, gt_labels, gt_bboxes,
                          factor) for c in self.match_costs)
        # costs that only take one image's instances (mmdet's): scored one
        # (set, image) at a time into the same padded tensor
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

    def match(self, pred_scores: Tensor, pred_bboxes: Tensor,
              gt_labels_list: Sequence[Tensor],
              gt_bboxes_list: Sequence[Tensor],
              img_metas: Sequence[Optional[dict]]) -> BatchMatches:
        """Match several sets of predictions (e.g. every decoder layer's)
        of every image of a batch.

        The ground truths are padded to the batch's largest count, the costs
        of all (set, image) pairs computed at once and copied to the host
        once; scipy solves each pair on its own block (the padding columns
        sliced off), and the matches go back to the device in one copy.

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
            :obj:`BatchMatches`
        """
        num_sets, bs, num_preds = pred_scores.shape[:3]
        if not (len(gt_labels_list) == len(gt_bboxes_list) == len(img_metas)
                == bs == pred_bboxes.shape[1]):
            raise ValueError(
                'HungarianAssigner: got predictions for '
                f'{bs} images but {len(gt_labels_list)} label lists, '
                f'{len(gt_bboxes_list)} box lists, {len(img_metas)} metas')
        num_gts = [len(labels) for labels in gt_labels_list]
        # 1. everything is background unless matched below
        gt_inds = np.zeros((num_sets, bs, num_preds), dtype=np.int64)
        if max(num_gts, default=0) > 0 and num_preds > 0:
            # 2. one cost tensor (num_sets, bs, num_preds, max_gts)
            cost = self.cost_matrix(pred_scores, pred_bboxes, gt_labels_list,
                                    gt_bboxes_list, img_metas)
            # 3. one copy to the host, then scipy per (set, image)
            cost = to_host(cost.float())
            for n in range(num_sets):
                for i in range(bs):
                    if num_gts[i] > 0:
                        rows, cols = solve_assignment(
                            cost[n, i, :, :num_gts[i]])
                        gt_inds[n, i, rows] = cols + 1
        # 4. the matches, back on the device in one copy
        return BatchMatches.from_host(gt_inds, num_gts, pred_scores.device)

    def assign_batch(self, pred_scores: Tensor, pred_bboxes: Tensor,
                     gt_labels_list: Sequence[Tensor],
                     gt_bboxes_list: Sequence[Tensor],
                     img_metas: Sequence[dict]) -> List[List[AssignResult]]:
        """:meth:`match`, as mmdet's :obj:`AssignResult` per set and image.

        Returns:
            list[list[AssignResult]]: ``[set][image]``, as :meth:`assign`.
        """
        matches = self.match(pred_scores, pred_bboxes, gt_labels_list,
                             gt_bboxes_list, img_metas)
        gt_labels, _ = pad_ground_truths(gt_labels_list, gt_bboxes_list)
        return matches.assign_results(gt_labels)

    def assign(self,
               pred_instances,
               gt_instances,
               img_meta: Optional[dict] = None,
               *args,
               **kwargs) -> AssignResult:
        """Match one image's predictions to its ground truths: a batch of
        one image and one set of predictions.

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
        return self.assign_batch(pred_instances.scores[None, None],
                                 pred_instances.bboxes[None, None],
                                 [gt_instances.labels],
                                 [gt_instances.bboxes], [img_meta])[0][0]

    def _batchable(self) -> bool:
        # mmdet's costs (reachable through the registry) have no batched()
        return all(hasattr(c, 'batched') for c in self.match_costs)

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}(match_costs={self.match_costs})'


def matched_labels(gt_inds: Tensor, gt_labels: Tensor) -> Tensor:
    """Label of the matched ground truth, -1 for background.

    Args:
        gt_inds (Tensor): 1-based matches, 0 for background, has shape
            (..., bs, num_preds).
        gt_labels (Tensor): Padded, has shape (bs, max_gts).

    Returns:
        Tensor: has the shape of ``gt_inds``.
    """
    background = torch.full_like(gt_inds, -1)
    if gt_labels.shape[-1] == 0:
        return background
    # (..., bs, max_gts): the same labels for every set
    gt_labels = gt_labels.expand(*gt_inds.shape[:-2], *gt_labels.shape)
    labels = gt_labels.gather(-1, (gt_inds - 1).clamp(min=0))
    return torch.where(gt_inds > 0, labels, background)
