# Copyright (c) mmdetr contributors. All rights reserved.
"""DETR's mask losses: sigmoid focal + dice on the matched queries."""
from typing import Dict, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from mmdetr.registry import MODELS


def sigmoid_focal_loss(logits: Tensor,
                       targets: Tensor,
                       num_boxes: float,
                       alpha: float = 0.25,
                       gamma: float = 2.0) -> Tensor:
    """Focal loss (RetinaNet) per pixel, averaged over each mask's pixels,
    summed over masks and divided by ``num_boxes``, as official DETR.

    Args:
        logits (Tensor): Mask logits, has shape (n, num_pixels).
        targets (Tensor): 0/1 targets, same shape as ``logits``.
        num_boxes (float): The normaliser (ground-truth objects in the batch,
            averaged over processes, at least 1).
        alpha (float): Weight of the positive pixels (``1 - alpha`` of the
            negative ones); a negative value disables it. Defaults to 0.25.
        gamma (float): Exponent of ``1 - p_t``. Defaults to 2.0.

    Returns:
        Tensor: Scalar loss.
    """
    prob = logits.sigmoid()
    ce = F.binary_cross_entropy_with_logits(
        logits, targets, reduction='none')
    # p_t: the probability given to the right answer
    p_t = prob * targets + (1 - prob) * (1 - targets)
    loss = ce * (1 - p_t)**gamma
    if alpha >= 0:
        loss = loss * (alpha * targets + (1 - alpha) * (1 - targets))
    return loss.mean(1).sum() / num_boxes


def dice_loss(logits: Tensor, targets: Tensor, num_boxes: float) -> Tensor:
    """``1 - (2 |P n T| + 1) / (|P| + |T| + 1)`` per mask (soft, with
    ``P = sigmoid(logits)``), summed over masks and divided by
    ``num_boxes``, as official DETR.

    Args:
        logits (Tensor): Mask logits, has shape (n, num_pixels).
        targets (Tensor): 0/1 targets, same shape as ``logits``.
        num_boxes (float): The normaliser, as in :func:`sigmoid_focal_loss`.

    Returns:
        Tensor: Scalar loss.
    """
    prob = logits.sigmoid()
    inter = (prob * targets).sum(1)
    total = prob.sum(1) + targets.sum(1)
    return (1 - (2 * inter + 1) / (total + 1)).sum() / num_boxes


def matched_mask_targets(gt_masks: Sequence[Tensor], pos_img: Tensor,
                         pos_gt: Tensor, canvas: Tuple[int, int]) -> Tensor:
    """The matched ground-truth masks, zero-padded to the batch canvas.

    Official DETR pads every image's masks at the bottom and right to the
    largest image of the batch (the same padding as the images); pass the
    batch's padded shape (mmdet's ``batch_input_shape``; the two agree with
    ``pad_size_divisor=1``). The matches index the stacked masks on the
    device: nothing is read on the host.

    Args:
        gt_masks (sequence[Tensor]): Per image, its masks at the image's size
            (after the pipeline, before batch padding; or already padded),
            has shape (num_gt_i, h_i, w_i), bool or 0/1.
        pos_img (Tensor): Image of each match, long, has shape (n, ).
        pos_gt (Tensor): Ground truth of each match within its image, long,
            has shape (n, ) (image and ground truth of :class:`SetMatches`'
            ``indices``).
        canvas (tuple[int, int]): (H, W) of the padded batch, at least every
            image's size.

    Returns:
        Tensor: Float 0/1 targets in the order of the matches, has shape
        (n, H, W).
    """
    if not len(gt_masks):
        raise ValueError('matched_mask_targets: no image given')
    big_h, big_w = canvas
    max_gts = max(len(masks) for masks in gt_masks)
    like = gt_masks[0]
    stacked = like.new_zeros((len(gt_masks), max_gts, big_h, big_w),
                             dtype=torch.bool)
    for i, masks in enumerate(gt_masks):
        h, w = masks.shape[-2:]
        if h > big_h or w > big_w:
            raise ValueError(f'matched_mask_targets: masks of size {(h, w)} '
                             f'do not fit the canvas {tuple(canvas)}')
        stacked[i, :len(masks), :h, :w] = masks.bool()
    return stacked[pos_img, pos_gt].float()


@MODELS.register_module()
class DETRMaskLoss(nn.Module):
    """Official DETR's ``loss_masks``: the matched queries' mask logits are
    upsampled (bilinear, ``align_corners=False``) from stride 4 to the
    padded batch canvas of the targets, then scored over every canvas pixel
    (padding included, as official) with :func:`sigmoid_focal_loss` and
    :func:`dice_loss`, both divided by the number of ground-truth boxes.
    Official DETR computes it on the last decoder layer only, with its
    matching, and weighs both terms 1.

    Args:
        loss_weight_focal (float): Weight of ``loss_mask``. Defaults to 1.0.
        loss_weight_dice (float): Weight of ``loss_dice``. Defaults to 1.0.
        alpha (float): Focal alpha. Defaults to 0.25.
        gamma (float): Focal gamma. Defaults to 2.0.
    """

    def __init__(self,
                 loss_weight_focal: float = 1.0,
                 loss_weight_dice: float = 1.0,
                 alpha: float = 0.25,
                 gamma: float = 2.0) -> None:
        super().__init__()
        self.loss_weight_focal = loss_weight_focal
        self.loss_weight_dice = loss_weight_dice
        self.alpha = alpha
        self.gamma = gamma

    def forward(self, mask_preds: Tensor, mask_targets: Tensor,
                num_boxes: float) -> Dict[str, Tensor]:
        """Focal and dice losses of matched masks.

        Args:
            mask_preds (Tensor): Matched mask logits at stride 4, has shape
                (n, h_4, w_4).
            mask_targets (Tensor): Their 0/1 targets on the padded canvas,
                has shape (n, H, W) (:func:`matched_mask_targets`).
            num_boxes (float): Ground-truth boxes of the batch (averaged
                over processes, at least 1), the normaliser of every box
                loss too.

        Returns:
            dict[str, Tensor]: ``loss_mask`` (focal) and ``loss_dice``; 0 and
            differentiable when ``n == 0``.
        """
        if len(mask_preds) != len(mask_targets):
            raise ValueError(f'DETRMaskLoss: {len(mask_preds)} predicted '
                             f'masks for {len(mask_targets)} targets')
        if len(mask_preds) == 0:
            zero = mask_preds.sum() * 0
            return dict(loss_mask=zero, loss_dice=zero)
        logits = F.interpolate(
            mask_preds[:, None],
            size=mask_targets.shape[-2:],
            mode='bilinear',
            align_corners=False)[:, 0].flatten(1)
        targets = mask_targets.to(logits.dtype).flatten(1)
        return dict(
            loss_mask=self.loss_weight_focal * sigmoid_focal_loss(
                logits, targets, num_boxes, self.alpha, self.gamma),
            loss_dice=self.loss_weight_dice *
            dice_loss(logits, targets, num_boxes))
