# Copyright (c) mmdetr contributors. All rights reserved.
"""DETR's padding mask at feature resolution, from tensors only.

:class:`~mmdetr.models.DETRHead` builds the mask in Python from the images'
meta (a loop writing zeros into a full-resolution mask, then a nearest
downsampling). An exported graph has no meta, only tensors, so this builds
the same mask from each image's valid size with comparisons against
``arange``: no loop, any batch size, any padded size.
"""
import torch
from torch import Tensor


def feature_padding_mask(img_shape: Tensor, inputs: Tensor,
                         feats: Tensor) -> Tensor:
    """True where a feature pixel samples the padding.

    Equals ``F.interpolate(full_res_mask[None], size=(h, w))`` (nearest), as
    the head computes it: feature row ``i`` samples input row
    ``floor(i * (H / h))``, with the ratio in float32 as torch's nearest
    kernel computes it, so rounding agrees bit for bit (ONNX's ``Resize``
    divides by the inverse ratio instead, which can land one row off).

    Args:
        img_shape (Tensor): Valid (h, w) of each image in the padded batch,
            integer, has shape (N, 2).
        inputs (Tensor): The padded batch, has shape (N, 3, H, W).
        feats (Tensor): The feature map, has shape (N, C, h, w).

    Returns:
        Tensor: bool mask, has shape (N, h, w).
    """
    # shapes as tensors, so a traced graph keeps them dynamic
    size_in = torch._shape_as_tensor(inputs)[-2:].to(torch.float32)
    size_out = torch._shape_as_tensor(feats)[-2:].to(torch.float32)
    ratio = size_in / size_out
    rows = (torch.arange(feats.shape[-2], device=feats.device,
                         dtype=torch.float32) * ratio[0]).floor()
    cols = (torch.arange(feats.shape[-1], device=feats.device,
                         dtype=torch.float32) * ratio[1]).floor()
    valid = img_shape.to(torch.float32)
    outside_h = rows[None, :, None] >= valid[:, 0, None, None]
    outside_w = cols[None, None, :] >= valid[:, 1, None, None]
    return outside_h | outside_w
