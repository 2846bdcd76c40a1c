# Copyright (c) mmdetr contributors. All rights reserved.
"""mmdet 2.x's DETRHead methods: ``forward_train``, ``get_bboxes`` (tuples),
``simple_test_bboxes`` and ``simple_test``, with img_metas as 2.x wrote them.

:class:`Mmdet2HeadMixin` is mixed into :class:`~mmdetr.models.DETRHead`;
it only relies on the head's ``forward``, ``loss`` and ``predict_by_feat``
(the 3.x method returning ``InstanceData``), so code and subclasses written
for 2.x run on the same weights as mmdetr's runner path.
"""
import numbers
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor


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


class Mmdet2HeadMixin:
    """mmdet 2.x DETRHead API on top of the head's 3.x-returning methods."""

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
