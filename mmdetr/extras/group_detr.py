# Copyright (c) mmdetr contributors. All rights reserved.
"""Group-wise one-to-many assignment for training (Group DETR).

Chen et al., "Group DETR: Fast DETR Training with Group-Wise One-to-Many
Assignment", ICCV 2023. DETR learns slowly partly because one-to-one
matching gives each ground truth a single positive query per step. Group
DETR trains with K groups of object queries instead of one:

- the decoder's self-attention runs within each group only, so each group
  behaves as an independent DETR decoder pass that shares every weight;
- each group is matched to the ground truths one-to-one on its own
  (Hungarian matching per group), so every ground truth gets K positives
  per step, one per group, while each group still learns to predict one box
  per object (no duplicates within a group);
- the losses are summed over groups and normalised by K times the number of
  ground truths (each group is one more "image" of the batch).

At inference only the first group runs: the model is DETR itself, with the
same parameters used in the same way, so predictions, export and checkpoint
conversion are those of a plain DETR. The other groups' query embeddings are
training-only parameters (``bbox_head.group_query_embedding``).

Configs: ``bbox_head=dict(type='GroupDETRHead', num_query_groups=K, ...)``
with a ``DetrTransformer`` config, which becomes a
:class:`GroupDetrTransformer`.
"""
import dataclasses
from typing import Callable, Dict, List, Sequence, Tuple

import torch
import torch.nn as nn
from torch import Tensor

from mmdetr.models.detr import register_training_only
from mmdetr.models.detr_head import DETRHead
from mmdetr.models.set_targets import SetMatches, SetTargets
from mmdetr.models.transformer import (DetrTransformer,
                                       DetrTransformerDecoderLayer)
from mmdetr.registry import MODELS


def within_groups(fn: Callable[..., Tensor], num_groups: int,
                  *inputs: Tensor) -> Tensor:
    """Apply a sequence-to-sequence ``fn`` to each query group on its own.

    The queries of each input are ``num_groups`` consecutive groups of equal
    size; folding the groups into the batch dimension makes every group a
    sequence of its own, which is the same as masking attention between
    groups, without the mask.

    Args:
        fn (callable): Takes and returns tensors of shape (b, n, dims).
        num_groups (int): Number of groups; 1 calls ``fn`` as it is.
        *inputs (Tensor): Each has shape (bs, num_groups * n, dims).

    Returns:
        Tensor: ``fn``'s output, has shape (bs, num_groups * n, dims).
    """
    if num_groups == 1:
        return fn(*inputs)
    bs, num_queries = inputs[0].shape[:2]
    grouped = [
        x.reshape(bs * num_groups, num_queries // num_groups, x.shape[-1])
        for x in inputs
    ]
    out = fn(*grouped)
    return out.reshape(bs, num_queries, out.shape[-1])


def groups_as_images(all_cls_scores: Tensor, all_bbox_preds: Tensor,
                     num_groups: int, *per_image: Sequence
                     ) -> Tuple[Tensor, Tensor, List[list]]:
    """Present K query groups to the set loss as K copies of the batch.

    Each group is matched and scored on its own, exactly as a separate
    image with the same ground truths would be, so the loss needs no notion
    of groups: group g of image i becomes image ``g * bs + i``.

    Args:
        all_cls_scores (Tensor): has shape
            (num_layers, bs, num_groups * num_query, C).
        all_bbox_preds (Tensor): has shape
            (num_layers, bs, num_groups * num_query, 4).
        num_groups (int): Number of query groups.
        *per_image (list): Per-image lists (ground-truth boxes, labels,
            metas), each of length bs.

    Returns:
        tuple: scores and boxes of shape (num_layers, num_groups * bs,
        num_query, ...), and each per-image list repeated ``num_groups``
        times.
    """

    def fold(x: Tensor) -> Tensor:
        num_layers, bs, num_queries = x.shape[:3]
        x = x.reshape(num_layers, bs, num_groups, num_queries // num_groups,
                      x.shape[-1])
        return x.transpose(1, 2).reshape(num_layers, num_groups * bs,
                                         num_queries // num_groups,
                                         x.shape[-1])

    return (fold(all_cls_scores), fold(all_bbox_preds),
            [list(items) * num_groups for items in per_image])


class GroupDetrTransformerDecoderLayer(DetrTransformerDecoderLayer):
    """A decoder layer whose self-attention, in training, runs within each
    of ``num_groups`` equal, consecutive groups of queries (set by
    :class:`GroupDetrTransformer`); in evaluation it is DETR's layer."""

    num_groups = 1

    def self_attention(self, query: Tensor, key: Tensor,
                       value: Tensor) -> Tensor:
        groups = self.num_groups if self.training else 1
        return within_groups(super().self_attention, groups, query, key,
                             value)


@MODELS.register_module()
class GroupDetrTransformer(DetrTransformer):
    """:class:`DetrTransformer` whose decoder keeps ``num_groups`` query
    groups apart in its self-attention while training.

    Args:
        num_groups (int): Query groups in training.
        **kwargs: :class:`DetrTransformer`'s.
    """

    decoder_layer_type = GroupDetrTransformerDecoderLayer

    def __init__(self, num_groups: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.num_groups = num_groups
        for layer in self.decoder_layers:
            layer.num_groups = num_groups


@MODELS.register_module()
class GroupDETRHead(DETRHead):
    """:class:`DETRHead` trained with ``num_query_groups`` groups of
    ``num_query`` queries (Group DETR).

    In training the decoder runs every group, each blind to the others in
    self-attention, and each group is matched and scored as one more copy
    of the batch. In evaluation only the first group runs, with the
    parameters of a plain DETRHead: predictions, export and conversion are
    plain DETR's. The other groups' queries (``group_query_embedding``) are
    training-only; a checkpoint with them loads into a plain DETR.

    Args:
        num_query_groups (int): Query groups in training, >= 2.
        transformer (dict): A ``DetrTransformer`` config; it is built as a
            :class:`GroupDetrTransformer` with ``num_query_groups``.
        **kwargs: :class:`DETRHead`'s.
    """

    def __init__(self,
                 num_query_groups: int,
                 transformer: dict = dict(type='DetrTransformer'),
                 **kwargs) -> None:
        if isinstance(num_query_groups, bool) or not isinstance(
                num_query_groups, int) or num_query_groups < 2:
            raise ValueError('GroupDETRHead: num_query_groups must be an '
                             f'integer >= 2, got {num_query_groups!r}')
        kind = str(transformer.get('type', '')).split('.')[-1]
        if kind not in ('DetrTransformer', 'GroupDetrTransformer'):
            raise ValueError(
                "GroupDETRHead: transformer.type must be 'DetrTransformer', "
                f'got {transformer.get("type")!r}')
        transformer = dict(
            transformer, type='GroupDetrTransformer',
            num_groups=num_query_groups)
        super().__init__(transformer=transformer, **kwargs)
        self.num_query_groups = num_query_groups
        # the other groups' queries: training only, never read by inference
        # (the first group is ``query_embedding`` itself)
        self.group_query_embedding = nn.Embedding(
            (num_query_groups - 1) * self.num_query, self.embed_dims)

    def queries(self) -> Tensor:
        """Every group's queries in training, the first group otherwise;
        (num_groups * num_query, embed_dims)."""
        if not self.training:
            return super().queries()
        return torch.cat(
            [self.query_embedding.weight, self.group_query_embedding.weight])

    def loss(self, all_cls_scores: Tensor, all_bbox_preds: Tensor,
             targets: SetTargets) -> Tuple[Dict[str, Tensor], SetMatches]:
        """DETR's set loss with each query group as one more copy of the
        batch (:func:`groups_as_images`); arguments as
        :meth:`DETRHead.loss`, with num_query_groups * num_query queries in
        training (as :meth:`queries` gives them). The matching it returns
        indexes those copies: image ``g * bs + i`` is group g of image i."""
        if self.training:
            k = self.num_query_groups
            all_cls_scores, all_bbox_preds, (img_metas, ) = groups_as_images(
                all_cls_scores, all_bbox_preds, k, targets.img_metas)
            targets = dataclasses.replace(
                targets, labels=targets.labels.repeat(k, 1),
                boxes=targets.boxes.repeat(k, 1, 1),
                corners=targets.corners.repeat(k, 1, 1),
                factors=targets.factors.repeat(k, 1),
                num_gts=targets.num_gts * k, img_metas=img_metas)
        return super().loss(all_cls_scores, all_bbox_preds, targets)


register_training_only('bbox_head.group_query_embedding.')
