# Copyright (c) mmdetr contributors. All rights reserved.
"""DETR's set loss: match -> targets -> losses (paper section 3.1, eq. 1-2).

:class:`SetCriterion` owns the whole loss of a set of predictions:

1. :meth:`SetCriterion.match` pairs every ground truth with one prediction
   of every decoder layer, by minimum total match cost (Hungarian matching,
   done by the assigner), for all layers and images of a batch at once;
2. the matches give the targets: the matched ground truth's class for the
   matched predictions, "no object" for the rest, and the matched boxes;
3. :meth:`SetCriterion.loss` scores one layer's predictions against them:
   classification over every prediction, L1 and GIoU over the matched ones.

How the batch is matched (one wait for the device per step): the costs of
every (layer, image) pair are computed in one tensor and copied to the host
once; scipy solves each pair; the matches go back in one non-blocking copy,
packed with everything the losses need from them. The number of matched
boxes, the losses' normaliser, is known on the host from the matches and, in
distributed training, all-reduced once for all layers.
"""
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn
from mmdet.structures.bbox import bbox_cxcywh_to_xyxy, bbox_xyxy_to_cxcywh
from mmdet.utils import reduce_mean
from mmengine.structures import InstanceData
from torch import Tensor
from torch.nn.utils.rnn import pad_sequence

from mmdetr.registry import build_model, build_task_util


def image_size_factors(img_metas: Sequence[dict], like: Tensor) -> Tensor:
    """(w, h, w, h) of each ``img_meta['img_shape']``: the factor from
    normalised to absolute box coordinates.

    Filled in place with Python numbers, which travel to the device as
    kernel arguments: unlike ``new_tensor(list)`` no host-to-device copy,
    which on a GPU would make the host wait.

    Args:
        img_metas (list[dict]): Per image, with ``img_shape`` (h, w).
        like (Tensor): Gives dtype and device.

    Returns:
        Tensor: has shape (num_images, 4).
    """
    factors = like.new_empty((len(img_metas), 4))
    for i, img_meta in enumerate(img_metas):
        img_h, img_w = img_meta['img_shape'][:2]
        factors[i, 0::2] = img_w
        factors[i, 1::2] = img_h
    return factors


def pad_ground_truths(gt_labels_list: Sequence[Tensor],
                      gt_bboxes_list: Sequence[Tensor],
                      dtype: torch.dtype = torch.float32
                      ) -> Tuple[Tensor, Tensor]:
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


def host_to_device(array: np.ndarray, device) -> Tensor:
    """Copy host data to ``device`` without making the host wait: on CUDA
    through pinned memory with ``non_blocking=True`` (the copy is queued
    behind the kernels already queued)."""
    tensor = torch.from_numpy(np.ascontiguousarray(array))
    device = torch.device(device)
    if device.type == 'cpu':
        return tensor
    if device.type == 'cuda':
        tensor = tensor.pin_memory()
    return tensor.to(device, non_blocking=True)


@dataclass
class SetMatches:
    """The matching of several sets of predictions (decoder layers) of a
    batch, with the targets and normalisers the losses need.

    Attributes:
        gt_inds (Tensor): 1-based matched ground truth, 0 for "no object",
            has shape (num_sets, bs, num_preds); on the device.
        labels (Tensor): Class target of every prediction, ``num_classes``
            for "no object", has shape (num_sets, bs, num_preds).
        gt_bboxes (Tensor): The batch's ground truths, absolute
            (x1, y1, x2, y2), padded, has shape (bs, max_gts, 4).
        factors (Tensor): (w, h, w, h) of each image, shape (bs, 4).
        num_pos (list[int]): Matched predictions per set (host numbers).
        pos_img, pos_query, pos_gt (list[Tensor]): Per set, the image,
            prediction and ground-truth index of every match, ascending by
            (image, prediction); each has shape (num_pos[n], ).
        cls_avg_factor (list): Per set, the classification normaliser: the
            total class weight of the predictions (matched 1, unmatched
            ``bg_cls_weight``), at least 1.
        box_avg_factor (list): Per set, the number of matched boxes,
            averaged over processes, at least 1. Floats, or 0-dim tensors
            in distributed training (never read on the host).
        first (int): Index of this object's first set among the sets that
            were matched together (e.g. the decoder layer). Defaults to 0.
        total (int): How many sets were matched together. Defaults to
            ``len(num_pos)``.
    """
    gt_inds: Tensor
    labels: Tensor
    gt_bboxes: Tensor
    factors: Tensor
    num_pos: List[int]
    pos_img: List[Tensor]
    pos_query: List[Tensor]
    pos_gt: List[Tensor]
    cls_avg_factor: list
    box_avg_factor: list
    first: int = 0
    total: Optional[int] = None

    def __post_init__(self) -> None:
        if self.total is None:
            self.total = len(self.num_pos)

    @property
    def is_last(self) -> bool:
        """Whether the last set matched together is this object's last
        (for one decoder layer: whether it is the last layer)."""
        return self.first + len(self) == self.total

    def __len__(self) -> int:
        return len(self.num_pos)

    def select(self, n: int) -> 'SetMatches':
        """Set ``n`` alone, as matches of one set (views, no copies)."""
        return SetMatches(
            self.gt_inds[n:n + 1], self.labels[n:n + 1], self.gt_bboxes,
            self.factors, self.num_pos[n:n + 1], self.pos_img[n:n + 1],
            self.pos_query[n:n + 1], self.pos_gt[n:n + 1],
            self.cls_avg_factor[n:n + 1], self.box_avg_factor[n:n + 1],
            first=self.first + n, total=self.total)

    def sets(self) -> List['SetMatches']:
        """Every set on its own (e.g. one per decoder layer)."""
        return [self.select(n) for n in range(len(self))]


def matched_labels(gt_inds: Tensor, gt_labels: Tensor) -> Tensor:
    """Label of the matched ground truth, -1 for "no object".

    Args:
        gt_inds (Tensor): 1-based matches, 0 for "no object", has shape
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


class SetCriterion(nn.Module):
    """Matching and the set loss of DETR.

    Args:
        num_classes (int): Object classes, without "no object".
        assigner (dict): Matcher config, e.g. ``HungarianAssigner`` with its
            ``match_costs``. Any mmdet assigner with ``assign(pred_instances,
            gt_instances, img_meta)`` works; mmdetr's also matches a whole
            batch in one pass (``match``).
        loss_cls (dict): Classification loss. With softmax cross-entropy,
            ``class_weight`` weighs the object classes and
            ``bg_cls_weight`` the "no object" class (the paper's 0.1).
        loss_bbox (dict): L1 loss on normalised (cx, cy, w, h).
        loss_iou (dict): IoU loss on absolute (x1, y1, x2, y2).
        sync_cls_avg_factor (bool): Average the classification normaliser
            over processes too. Defaults to False.
    """

    def __init__(self,
                 num_classes: int,
                 assigner: dict,
                 loss_cls: dict,
                 loss_bbox: dict,
                 loss_iou: dict,
                 sync_cls_avg_factor: bool = False) -> None:
        super().__init__()
        loss_cls = dict(loss_cls)
        self.num_classes = num_classes
        self.use_sigmoid = loss_cls.get('use_sigmoid', False)
        self.bg_cls_weight = 0
        class_weight = loss_cls.get('class_weight', None)
        bg_cls_weight = loss_cls.pop('bg_cls_weight', class_weight)
        if class_weight is not None and not self.use_sigmoid:
            # NOTE following the official DETR repo, "no object" gets its
            # own weight (eos_coef) and the object classes share
            # class_weight
            weight = torch.ones(num_classes + 1) * class_weight
            weight[num_classes] = bg_cls_weight
            loss_cls['class_weight'] = weight
            self.bg_cls_weight = bg_cls_weight
        self.sync_cls_avg_factor = sync_cls_avg_factor
        self.assigner = build_task_util(assigner)
        self.loss_cls = build_model(loss_cls)
        self.loss_bbox = build_model(loss_bbox)
        self.loss_iou = build_model(loss_iou)

    # ----------------------------------------------------------- matching
    @torch.no_grad()
    def match(self, cls_scores: Tensor, bbox_preds: Tensor,
              gt_bboxes_list: Sequence[Tensor],
              gt_labels_list: Sequence[Tensor],
              img_metas: Sequence[dict]) -> SetMatches:
        """Match every set (decoder layer) and image of a batch at once.

        The matching is a constant of the loss: no graph is kept for it.

        Args:
            cls_scores (Tensor): Logits, has shape
                (num_sets, bs, num_preds, cls_out_channels).
            bbox_preds (Tensor): Normalised (cx, cy, w, h), has shape
                (num_sets, bs, num_preds, 4).
            gt_bboxes_list (list[Tensor]): Per image, absolute
                (x1, y1, x2, y2), has shape (num_gts_i, 4).
            gt_labels_list (list[Tensor]): Per image, shape (num_gts_i, ).
            img_metas (list[dict]): Per image, with ``img_shape`` (h, w).

        Returns:
            :obj:`SetMatches`: with ``num_sets`` sets.
        """
        factors = image_size_factors(img_metas, bbox_preds)
        bboxes = bbox_cxcywh_to_xyxy(bbox_preds) * factors[:, None]
        if hasattr(self.assigner, 'match'):
            gt_inds = self.assigner.match(cls_scores, bboxes, gt_labels_list,
                                          gt_bboxes_list, img_metas)
        else:
            gt_inds = self._assign_each(cls_scores, bboxes, gt_bboxes_list,
                                        gt_labels_list, img_metas)
        return self._pack(gt_inds, gt_bboxes_list, gt_labels_list, factors,
                          cls_scores.device)

    def _assign_each(self, cls_scores, bboxes, gt_bboxes_list,
                     gt_labels_list, img_metas) -> np.ndarray:
        """An assigner with mmdet's one-image ``assign`` only: called per
        set and image, then one copy of all matches to the host."""
        gt_inds = torch.stack([
            torch.stack([
                self.assigner.assign(
                    InstanceData(scores=scores[i], bboxes=boxes[i]),
                    InstanceData(bboxes=gt_bboxes_list[i],
                                 labels=gt_labels_list[i]),
                    img_metas[i]).gt_inds for i in range(len(img_metas))
            ]) for scores, boxes in zip(cls_scores, bboxes)
        ])
        return gt_inds.cpu().numpy().astype(np.int64)

    def _pack(self, gt_inds: np.ndarray, gt_bboxes_list, gt_labels_list,
              factors: Tensor, device) -> SetMatches:
        """The host matches as :obj:`SetMatches`: one copy to the device
        for everything derived from them."""
        num_sets, bs, num_preds = gt_inds.shape
        pos = [np.nonzero(layer) for layer in gt_inds]  # (image, pred)
        num_pos = [len(img) for img, _ in pos]
        packed = np.concatenate([
            gt_inds.reshape(-1), *(np.concatenate(
                [img, query, gt_inds[n][img, query] - 1])
                for n, (img, query) in enumerate(pos)),
            np.asarray(num_pos)
        ]).astype(np.int64)
        packed = host_to_device(packed, device)
        inds, *per_set, num_pos_device = packed.split(
            [gt_inds.size, *(3 * p for p in num_pos), num_sets])
        per_set = [t.view(3, -1) for t in per_set]
        gt_labels, gt_bboxes = pad_ground_truths(
            gt_labels_list, gt_bboxes_list, factors.dtype)
        inds = inds.view(num_sets, bs, num_preds)
        labels = matched_labels(inds, gt_labels)
        labels = labels.masked_fill(labels < 0, self.num_classes)
        cls_factors, box_factors = self._avg_factors(
            num_pos, num_pos_device.float(), bs * num_preds)
        return SetMatches(
            gt_inds=inds,
            labels=labels,
            gt_bboxes=gt_bboxes,
            factors=factors,
            num_pos=num_pos,
            pos_img=[t[0] for t in per_set],
            pos_query=[t[1] for t in per_set],
            pos_gt=[t[2] for t in per_set],
            cls_avg_factor=cls_factors,
            box_avg_factor=box_factors)

    def _avg_factors(self, num_pos: List[int], num_pos_device: Tensor,
                     num_preds: int) -> Tuple[list, list]:
        """Normalisers of the classification and box losses, per set.

        Host numbers from the matches; with several processes the box one
        (and with ``sync_cls_avg_factor`` the class one) is all-reduced
        once for every set together, as a device tensor that the losses
        divide by without reading it on the host.
        """
        cls_factors = [
            p * 1.0 + (num_preds - p) * self.bg_cls_weight for p in num_pos
        ]
        if not (dist.is_available() and dist.is_initialized()):
            return ([max(c, 1) for c in cls_factors],
                    [float(max(p, 1)) for p in num_pos])
        num_sets = len(num_pos)
        values = num_pos_device
        if self.sync_cls_avg_factor:
            values = torch.cat([
                values, values + (num_preds - values) * self.bg_cls_weight
            ])
        values = reduce_mean(values).clamp(min=1)
        box_factors = list(values[:num_sets].unbind())
        if self.sync_cls_avg_factor:
            cls_factors = list(values[num_sets:].unbind())
        else:
            cls_factors = [max(c, 1) for c in cls_factors]
        return cls_factors, box_factors

    # ------------------------------------------------------------- losses
    def loss(self,
             cls_scores: Tensor,
             bbox_preds: Tensor,
             matches: SetMatches,
             label_weights: Optional[Tensor] = None
             ) -> Tuple[Tensor, Tensor, Tensor]:
        """The set loss of one set of predictions (one decoder layer).

        The box losses see the matched predictions only (gathered by index,
        as the official DETR): the same sums as mmdet's zero-weighted
        unmatched boxes, without mmdet's ``torch.any(weight > 0)`` check,
        which reads a device value on the host.

        Args:
            cls_scores (Tensor): Logits, shape (bs, num_preds, C).
            bbox_preds (Tensor): Normalised (cx, cy, w, h), shape
                (bs, num_preds, 4).
            matches (SetMatches): The matches of this one set.
            label_weights (Tensor, optional): Weight of each prediction's
                classification term, shape (bs * num_preds, ); None: 1.

        Returns:
            tuple[Tensor, Tensor, Tensor]: loss_cls, loss_bbox, loss_iou.
        """
        self._class_weight_to(cls_scores.device)
        loss_cls = self.loss_cls(
            cls_scores.reshape(-1, cls_scores.shape[-1]),
            matches.labels[0].reshape(-1),
            label_weights,
            avg_factor=matches.cls_avg_factor[0])
        img, query = matches.pos_img[0], matches.pos_query[0]
        pred = bbox_preds[img, query]
        factor = matches.factors[img]
        target = bbox_xyxy_to_cxcywh(
            matches.gt_bboxes[img, matches.pos_gt[0]] / factor)
        avg_factor = matches.box_avg_factor[0]
        loss_iou = self.loss_iou(
            bbox_cxcywh_to_xyxy(pred) * factor,
            bbox_cxcywh_to_xyxy(target) * factor,
            avg_factor=avg_factor)
        loss_bbox = self.loss_bbox(pred, target, avg_factor=avg_factor)
        return loss_cls, loss_bbox, loss_iou

    def _class_weight_to(self, device: torch.device) -> None:
        # mmdet's CrossEntropyLoss copies its class_weight to the scores'
        # device at every call; kept there, that copy stays on the device
        weight = getattr(self.loss_cls, 'class_weight', None)
        if isinstance(weight, Tensor) and weight.device != device:
            self.loss_cls.class_weight = weight.to(device)
