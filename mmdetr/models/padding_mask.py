# Copyright (c) mmdetr contributors. All rights reserved.
"""DETR's padding mask: which feature pixels lie outside their image.

A batch of images of different sizes is padded to one size; the
transformer must not attend to the padding, and the positional encoding
counts positions over the valid pixels only. The mask is computed from
tensors alone, so the head and the exported ONNX graph share it.
"""
from typing import Sequence

import torch
from torch import Tensor


def image_sizes(img_metas: Sequence[dict], like: Tensor) -> Tensor:
    """Each image's valid (h, w) within the padded batch, shape (bs, 2).

    Filled in place with Python numbers (kernel arguments): no copy from
    the host to the device.
    """
    sizes = like.new_empty((len(img_metas), 2), dtype=torch.float32)
    for i, img_meta in enumerate(img_metas):
        sizes[i, 0], sizes[i, 1] = img_meta['img_shape'][:2]
    return sizes


def feature_padding_mask(img_hw: Tensor, input_hw: Tensor,
                         feats: Tensor) -> Tensor:
    """True where a feature pixel samples the padding of its image.

    The same as drawing the mask at input resolution and downsampling it
    with nearest interpolation (``F.interpolate``): feature row ``i``
    samples input row ``floor(i * (H / h))``, with the ratio in float32 as
    torch's nearest kernel computes it. Built from tensors only, so an
    exported graph keeps batch and sizes dynamic.

    Args:
        img_hw (Tensor): Valid (h, w) of each image, shape (bs, 2).
        input_hw (Tensor): (H, W) of the padded input batch, shape (2, ),
            on the host.
        feats (Tensor): The feature map, has shape (bs, c, h, w).

    Returns:
        Tensor: bool, has shape (bs, h, w).
    """
    size_out = torch._shape_as_tensor(feats)[-2:].to(torch.float32)
    ratio = input_hw.to(torch.float32) / size_out
    rows = (torch.arange(feats.shape[-2], device=feats.device,
                         dtype=torch.float32) * ratio[0]).floor()
    cols = (torch.arange(feats.shape[-1], device=feats.device,
                         dtype=torch.float32) * ratio[1]).floor()
    valid = img_hw.to(torch.float32)
    outside_h = rows[None, :, None] >= valid[:, 0, None, None]
    outside_w = cols[None, None, :] >= valid[:, 1, None, None]
    return outside_h | outside_w
