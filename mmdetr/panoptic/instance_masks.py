# Copyright (c) mmdetr contributors. All rights reserved.
"""Instance masks (``segm``) from DETR's stride-4 mask logits."""
from typing import Optional, Tuple

import torch.nn.functional as F
from torch import Tensor


def instance_masks(mask_logits: Tensor,
                   img_shape: Tuple[int, int],
                   canvas: Tuple[int, int],
                   out_shape: Optional[Tuple[int, int]] = None,
                   threshold: float = 0.5) -> Tensor:
    """Binary masks of one image at its output size, as official DETR's
    ``PostProcessSegm``.

    1. upsample the logits (bilinear, ``align_corners=False``) from stride 4
       to the padded batch canvas they were computed on;
    2. keep ``sigmoid > threshold``;
    3. crop the image's own region (top-left ``img_shape``), so padding never
       stretches a mask;
    4. resize to ``out_shape`` with nearest neighbour (torch ``'nearest'``,
       as official).

    Args:
        mask_logits (Tensor): The kept queries' mask logits, has shape
            (n, h_4, w_4).
        img_shape (tuple[int, int]): (h, w) of the image in the batch, before
            padding (mmdet's ``img_shape``).
        canvas (tuple[int, int]): (H, W) of the padded batch (mmdet's
            ``batch_input_shape``; official DETR: the largest image).
        out_shape (tuple[int, int], optional): Size of the returned masks;
            the original image (``ori_shape``) to evaluate. Defaults to
            ``img_shape``.
        threshold (float): Probability threshold. Defaults to 0.5.

    Returns:
        Tensor: Bool masks, has shape (n, *out_shape).
    """
    h, w = img_shape
    out_shape = tuple(img_shape if out_shape is None else out_shape)
    if len(mask_logits) == 0:
        return mask_logits.new_zeros((0, *out_shape), dtype=bool)
    up = F.interpolate(
        mask_logits[:, None],
        size=tuple(canvas),
        mode='bilinear',
        align_corners=False)
    keep = (up.sigmoid() > threshold)[..., :h, :w]
    if tuple(keep.shape[-2:]) != out_shape:
        keep = F.interpolate(keep.float(), size=out_shape,
                             mode='nearest') > 0.5
    return keep[:, 0]
