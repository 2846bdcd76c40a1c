# Copyright (c) mmdetr contributors. All rights reserved.
"""What DETR computes in float32 under mixed precision.

Under ``torch.autocast`` (bfloat16 on a CPU; float16 or bfloat16 on a GPU)
convolutions and matrix products run in the reduced dtype: the backbone,
the input projection and the transformer's linear layers and attention.
These parts stay in float32, by decision:

| part | why | where |
|---|---|---|
| positional encoding | positions divided by wavelengths up to 10000: in bfloat16 (8-bit mantissa) the phase of a sine is off by up to 0.04 | computed from the mask in float32 (:class:`SinePositionalEncoding`) |
| padding mask | exact comparisons of pixel counts | bool, from float32 sizes (:func:`feature_padding_mask`) |
| attention softmax | torch's fused attention kernels accumulate the softmax in float32 for half-precision inputs; padded keys get exactly zero weight | torch (tested, not changed) |
| class and box predictors | a sigmoid box in bfloat16 is off by up to 2^-9 of the image, 2.6 px at 1333 px; scores in bfloat16 tie, changing the ranking | :meth:`DETRHead.predict_layers` |
| detections | softmax, top-k, box conversion and scaling to pixels | :meth:`DETRHead.predict_by_feat`, :func:`top_detections` |
| matching costs, Hungarian assignment, losses and their normalisers, box conversions | box areas of an 800x1066 image overflow float16; the assignment must not depend on the dtype | :meth:`DETRHead.loss` |

Without autocast nothing here changes what runs: the float32 path is the
same code, bit for bit.
"""
from contextlib import nullcontext

import torch
from torch import Tensor


def autocast_enabled(like: Tensor) -> bool:
    """Whether autocast is on for ``like``'s device type."""
    return torch.is_autocast_enabled(like.device.type)


def float32_region(like: Tensor):
    """A context with autocast off for ``like``'s device type, if it is on;
    otherwise one that does nothing (a traced or exported graph is
    unchanged)."""
    if autocast_enabled(like):
        return torch.autocast(like.device.type, enabled=False)
    return nullcontext()


def to_float32(x: Tensor) -> Tensor:
    """``x`` in float32 if it is a half-precision float tensor (float16,
    bfloat16); any other tensor unchanged (float64 stays float64)."""
    if x.dtype in (torch.float16, torch.bfloat16):
        return x.float()
    return x
