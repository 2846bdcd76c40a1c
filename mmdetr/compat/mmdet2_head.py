# Copyright (c) mmdetr contributors. All rights reserved.
"""mmdet 2.x's DETRHead: mmdetr's head with 2.x's methods and arguments.

:class:`DETRHead` here is :class:`mmdetr.models.DETRHead` plus
``forward_train``, ``get_bboxes`` (tuples), ``simple_test_bboxes``,
``simple_test``, ``get_targets`` and ``_get_target_single`` as 2.x had
them, ``loss`` and ``loss_single`` also in 2.x's calls (lists of ground
truths and img_metas), with img_metas as 2.x wrote them, 2.x's default
assigner, 2.x's ``num_reg_fcs`` and a ``type`` key accepted
(``DETRHead(**cfg)``). The network, its weights and
the 3.x methods are the core head's; a head config whose ``transformer`` is
2.x's ``Transformer`` spec builds this class (:func:`register_adapters`).
"""
import numbers
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor

from mmdetr.models import detr_head
from mmdetr.models.set_targets import SetTargets
from mmdetr.registry import register_config_adapter

from .mmdet2_config import (Mmdet2ConfigError, is_mmdet2_transformer,
                            translate_transformer)

#: mmdet 2.x DETRHead's default train_cfg
MMDET2_TRAIN_CFG = dict(
    assigner=dict(
        type='HungarianAssigner',
        cls_cost=dict(type='ClassificationCost', weight=1.),
        reg_cost=dict(type='BBoxL1Cost', weight=5.0),
        iou_cost=dict(type='IoUCost', iou_mode='giou', weight=2.0)))


def normalise_img_meta(img_meta: dict) -> dict:
    """A copy of an mmdet 2.x (or 3.x) image meta in the 3.x form.

    - ``img_shape``: (h, w, c) or (h, w) -> (h, w);
    - ``scale_factor``: a number s, a (w, h) pair or 2.x's
      (w, h, w, h) array -> (w_scale, h_scale).

    Raises:
        ValueError: a ``scale_factor`` of another length, or a 4-array
            whose two halves differ.
    """
    meta = dict(img_meta)
    if 'img_shape' in meta:
        meta['img_shape'] = tuple(int(v) for v in meta['img_shape'][:2])
    if 'scale_factor' in meta:
        sf = meta['scale_factor']
        if isinstance(sf, Tensor):
            sf = sf.detach().cpu().numpy()
        if isinstance(sf, numbers.Number):
            sf = (float(sf), float(sf))
        else:
            sf = [float(v) for v in np.asarray(sf, dtype=np.float64).ravel()]
            if len(sf) == 4 and sf[:2] == sf[2:]:
                sf = sf[:2]
            if len(sf) != 2:
                raise ValueError(
                    "img_meta['scale_factor'] must be a number, (w, h) or "
                    f'(w, h, w, h), got {img_meta["scale_factor"]!r}')
        meta['scale_factor'] = tuple(sf)
    return meta


def normalise_img_metas(img_metas: Sequence[dict]) -> List[dict]:
    """:func:`normalise_img_meta` of every image."""
    return [normalise_img_meta(m) for m in img_metas]


def _require(img_metas: Sequence[dict], key: str, method: str) -> None:
    for i, meta in enumerate(img_metas):
        if key not in meta:
            raise KeyError(f'DETRHead.{method}: img_metas[{i}] has no '
                           f'{key!r} (mmdet 2.x detectors set it; keys '
                           f'given: {sorted(meta)})')


class DETRHead(detr_head.DETRHead):
    """mmdetr's DETRHead with mmdet 2.x's methods (see the module
    docstring).

    Args:
        train_cfg (dict): Defaults to 2.x's (``HungarianAssigner`` with
            ``cls_cost``, ``reg_cost``, ``iou_cost``).
        type (str, optional): Ignored, so that ``DETRHead(**cfg)`` takes a
            config dict with its ``type`` key, as 2.x's head did.
        **kwargs: :class:`mmdetr.models.DETRHead`'s.
    """

    def __init__(self,
                 *args,
                 train_cfg: Optional[dict] = MMDET2_TRAIN_CFG,
                 type: Optional[str] = None,
                 num_reg_fcs: int = 2,
                 **kwargs) -> None:
        if num_reg_fcs != 2:
            raise Mmdet2ConfigError(
                f'DETRHead: num_reg_fcs={num_reg_fcs!r}; mmdetr\'s box FFN '
                'has DETR\'s 2 hidden layers (num_reg_fcs=2)')
        super().__init__(*args, train_cfg=train_cfg, **kwargs)

    def loss(self, *args, **kwargs):
        """:meth:`mmdetr.models.DETRHead.loss`, or 2.x's
        ``loss(all_cls_scores_list, all_bbox_preds_list, gt_bboxes_list,
        gt_labels_list, img_metas, gt_bboxes_ignore=None)`` (per-level
        lists of predictions; the last level is used), which returns the
        losses only."""
        if not isinstance(args[0], (list, tuple)):
            return super().loss(*args, **kwargs)
        return self._mmdet2_loss(*args, **kwargs)

    def _mmdet2_loss(self, all_cls_scores_list: List[Tensor],
                     all_bbox_preds_list: List[Tensor],
                     gt_bboxes_list: List[Tensor],
                     gt_labels_list: List[Tensor], img_metas: List[dict],
                     gt_bboxes_ignore: Optional[list] = None
                     ) -> Dict[str, Tensor]:
        if gt_bboxes_ignore is not None:
            raise NotImplementedError(
                'DETRHead: gt_bboxes_ignore is not supported')
        targets = SetTargets.build(gt_bboxes_list, gt_labels_list, img_metas)
        return super().loss(all_cls_scores_list[-1], all_bbox_preds_list[-1],
                            targets)[0]

    def loss_single(self, cls_scores: Tensor, bbox_preds: Tensor, *args,
                    **kwargs):
        """:meth:`mmdetr.models.DETRHead.loss_single`, or 2.x's
        ``loss_single(cls_scores, bbox_preds, gt_bboxes_list,
        gt_labels_list, img_metas, gt_bboxes_ignore_list=None)``: one
        decoder layer's (bs, num_query, ...) predictions matched and scored
        on their own; returns (loss_cls, loss_bbox, loss_iou)."""
        if 'targets' in kwargs:
            return super().loss_single(cls_scores, bbox_preds, *args,
                                       **kwargs)
        losses = self._mmdet2_loss([cls_scores[None]], [bbox_preds[None]],
                                   *args, **kwargs)
        return losses['loss_cls'], losses['loss_bbox'], losses['loss_iou']

    def forward_train(self,
                      x: Sequence[Tensor],
                      img_metas: List[dict],
                      gt_bboxes: List[Tensor],
                      gt_labels: Optional[List[Tensor]] = None,
                      gt_bboxes_ignore: Optional[List[Tensor]] = None,
                      proposal_cfg: Optional[dict] = None,
                      **kwargs) -> Dict[str, Tensor]:
        """Forward and loss, as mmdet 2.x's single-stage detectors call it.

        Args:
            x (tuple[Tensor]): Per level, features (bs, c, h, w).
            img_metas (list[dict]): Per image, with ``img_shape`` and
                ``batch_input_shape``.
            gt_bboxes (list[Tensor]): Per image, absolute (x1, y1, x2, y2)
                of shape (num_gts, 4).
            gt_labels (list[Tensor]): Per image, shape (num_gts, ).
            gt_bboxes_ignore (None): Not supported.
            proposal_cfg (None): DETR produces no proposals; must be None.

        Returns:
            dict[str, Tensor]: as :meth:`loss`.
        """
        if proposal_cfg is not None:
            raise ValueError('DETRHead.forward_train: proposal_cfg must be '
                             f'None (DETR makes no proposals), got '
                             f'{proposal_cfg!r}')
        if gt_labels is None:
            raise ValueError('DETRHead.forward_train: gt_labels is required '
                             '(the set loss matches classes)')
        img_metas = normalise_img_metas(img_metas)
        _require(img_metas, 'batch_input_shape', 'forward_train')
        outs = self(x, img_metas)
        return self.loss(
            *outs, gt_bboxes, gt_labels, img_metas,
            gt_bboxes_ignore=gt_bboxes_ignore)

    def get_bboxes(self,
                   all_cls_scores_list: List[Tensor],
                   all_bbox_preds_list: List[Tensor],
                   img_metas: List[dict],
                   rescale: bool = False) -> List[Tuple[Tensor, Tensor]]:
        """Detections in mmdet 2.x's form.

        Args:
            all_cls_scores_list (list[Tensor]): Per level, logits of shape
                (num_decoder_layers, bs, num_query, cls_out_channels).
            all_bbox_preds_list (list[Tensor]): Per level, normalised
                (cx, cy, w, h) of shape (num_decoder_layers, bs, num_query,
                4).
            img_metas (list[dict]): Per image, ``img_shape`` and, with
                ``rescale``, ``scale_factor`` (any 2.x form).
            rescale (bool): Boxes in original-image pixels.

        Returns:
            list[tuple[Tensor, Tensor]]: per image, ``det_bboxes`` (n, 5):
            (x1, y1, x2, y2, score), and ``det_labels`` (n, ).
        """
        results = self.predict_by_feat(
            all_cls_scores_list,
            all_bbox_preds_list,
            normalise_img_metas(img_metas),
            rescale=rescale)
        return [(torch.cat([r.bboxes, r.scores[:, None]], dim=-1), r.labels)
                for r in results]

    def simple_test_bboxes(self,
                           feats: Sequence[Tensor],
                           img_metas: List[dict],
                           rescale: bool = False
                           ) -> List[Tuple[Tensor, Tensor]]:
        """Forward and :meth:`get_bboxes`, without test-time augmentation.

        Args:
            feats (tuple[Tensor]): Per level, features (bs, c, h, w).
            img_metas (list[dict]): Per image, with ``img_shape``,
                ``batch_input_shape`` and, with ``rescale``,
                ``scale_factor``.
            rescale (bool): Boxes in original-image pixels.

        Returns:
            list[tuple[Tensor, Tensor]]: as :meth:`get_bboxes`.
        """
        img_metas = normalise_img_metas(img_metas)
        _require(img_metas, 'batch_input_shape', 'simple_test_bboxes')
        outs = self.forward(feats, img_metas)
        return self.get_bboxes(*outs, img_metas, rescale=rescale)

    def simple_test(self,
                    feats: Sequence[Tensor],
                    img_metas: List[dict],
                    rescale: bool = False) -> List[Tuple[Tensor, Tensor]]:
        """mmdet 2.x's dense-head test entry: :meth:`simple_test_bboxes`."""
        return self.simple_test_bboxes(feats, img_metas, rescale=rescale)

    def get_targets(self,
                    cls_scores_list: List[Tensor],
                    bbox_preds_list: List[Tensor],
                    gt_bboxes_list: List[Tensor],
                    gt_labels_list: List[Tensor],
                    img_metas: List[dict],
                    gt_bboxes_ignore_list: Optional[list] = None) -> tuple:
        """Dense targets of one decoder layer's predictions, as 2.x: the
        batch matched in one pass (:meth:`HungarianAssigner.match`).

        Args:
            cls_scores_list (list[Tensor]): Per image, (num_query, C).
            bbox_preds_list (list[Tensor]): Per image, (num_query, 4)
                normalised (cx, cy, w, h).
            gt_bboxes_list, gt_labels_list, img_metas: as :meth:`loss`.
            gt_bboxes_ignore_list (None): Not supported; must be None.

        Returns:
            tuple: lists per image of labels (num_query, ) with
            ``num_classes`` for "no object", label weights (num_query, ),
            box targets (num_query, 4) normalised (cx, cy, w, h) and box
            weights (num_query, 4); then the total numbers of matched and
            unmatched predictions.
        """
        if gt_bboxes_ignore_list is not None:
            raise NotImplementedError(
                'DETRHead: gt_bboxes_ignore is not supported')
        cls_scores = torch.stack(cls_scores_list)[None]
        bbox_preds = torch.stack(bbox_preds_list)[None]
        targets = SetTargets.build(gt_bboxes_list, gt_labels_list, img_metas)
        img, query, gt = self.assigner.match(cls_scores, bbox_preds,
                                             targets)[0]
        labels = torch.full(cls_scores.shape[1:3], self.num_classes,
                            dtype=torch.long, device=cls_scores.device)
        labels[img, query] = targets.labels[img, gt]
        label_weights = self.label_weights(bbox_preds, [(img, query, gt)],
                                           targets)[0]
        if label_weights is None:
            label_weights = bbox_preds.new_ones(labels.numel())
        label_weights = label_weights.reshape(labels.shape)
        bbox_targets = torch.zeros_like(bbox_preds[0])
        bbox_weights = torch.zeros_like(bbox_preds[0])
        bbox_targets[img, query] = targets.boxes[img, gt]
        bbox_weights[img, query] = 1.0
        num_total_pos = len(img)
        return (list(labels), list(label_weights), list(bbox_targets),
                list(bbox_weights), num_total_pos,
                labels.numel() - num_total_pos)

    def _get_target_single(self,
                           cls_score: Tensor,
                           bbox_pred: Tensor,
                           gt_bboxes: Tensor,
                           gt_labels: Tensor,
                           img_meta: dict,
                           gt_bboxes_ignore: Optional[Tensor] = None) -> tuple:
        """Match one image and build its targets, as 2.x:
        :meth:`get_targets` on a batch of one image.

        Args:
            cls_score (Tensor): has shape (num_query, cls_out_channels).
            bbox_pred (Tensor): Normalised (cx, cy, w, h), (num_query, 4).
            gt_bboxes (Tensor): Absolute (x1, y1, x2, y2), (num_gts, 4).
            gt_labels (Tensor): has shape (num_gts, ).
            img_meta (dict): Has ``img_shape``.
            gt_bboxes_ignore (None): Not supported; must be None.

        Returns:
            tuple: labels (num_query, ) with ``num_classes`` for "no
            object", label_weights (num_query, ), bbox_targets
            (num_query, 4) normalised (cx, cy, w, h), bbox_weights
            (num_query, 4), pos_inds, neg_inds.
        """
        (labels, label_weights, bbox_targets, bbox_weights, _,
         _) = self.get_targets([cls_score], [bbox_pred], [gt_bboxes],
                               [gt_labels], [img_meta],
                               None if gt_bboxes_ignore is None else
                               [gt_bboxes_ignore])
        pos = bbox_weights[0][:, 0] > 0
        pos_inds = torch.nonzero(pos, as_tuple=False).squeeze(-1)
        neg_inds = torch.nonzero(~pos, as_tuple=False).squeeze(-1)
        return (labels[0], label_weights[0], bbox_targets[0], bbox_weights[0],
                pos_inds, neg_inds)


def _mmdet2_head(cfg: dict) -> Optional[dict]:
    """A ``DETRHead`` config with 2.x's transformer spec builds the class
    above."""
    if not is_mmdet2_transformer(cfg.get('transformer')):
        return None
    return dict(cfg, type=DETRHead)


def _mmdet2_transformer(cfg: dict) -> Optional[dict]:
    """2.x's ``Transformer`` spec builds ``DetrTransformer``."""
    return translate_transformer(cfg) if is_mmdet2_transformer(cfg) else None


def register_adapters() -> None:
    """Have mmdetr's registries build 2.x head configs as
    :class:`DETRHead` and 2.x ``Transformer`` specs as ``DetrTransformer``."""
    register_config_adapter('DETRHead', _mmdet2_head)
    register_config_adapter('Transformer', _mmdet2_transformer)
