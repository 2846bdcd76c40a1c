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
"""
from typing import Callable, List, Sequence, Tuple

from torch import Tensor


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
