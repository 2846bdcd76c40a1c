# Copyright (c) mmdetr contributors. All rights reserved.
"""What DETR computes in float32 under mixed precision.

Under ``torch.autocast`` (bfloat16 on a CPU; float16 or bfloat16 on a GPU)
convolutions and matrix products run in the reduced dtype: the backbone,
the input projection and the transformer. These parts stay in float32, by
decision:

| part | why | where |
|---|---|---|
| positional encoding | positions over wavelengths up to 10000: in bfloat16 the phase of a sine is off by up to 0.04 | :class:`SinePositionalEncoding` |
| padding mask | exact comparisons of pixel counts | :func:`feature_padding_mask` |
| class and box predictors | a sigmoid box in bfloat16 is off by up to 2.6 px at 1333 px; bfloat16 scores tie, changing the ranking | :meth:`DETRHead.predict_layers` |
| detections | softmax, top-k, scaling to pixels | :meth:`DETRHead.predict_by_feat` |
| matching, losses, normalisers | box areas of an 800x1066 image overflow float16; the assignment must not depend on the dtype | :meth:`DETRHead.loss` |

Without autocast nothing here changes what runs.
"""
from contextlib import nullcontext

import torch
from torch import Tensor

#: torch >= 2.4 asks autocast's state by device type; older torch has a
#: function per device
_BY_DEVICE_TYPE = hasattr(torch, 'get_autocast_dtype')


def autocast_enabled_for(device_type: str) -> bool:
    """Whether autocast is on for ``device_type`` (``'cpu'``, ``'cuda'``)."""
    if _BY_DEVICE_TYPE:
        return torch.is_autocast_enabled(device_type)
    if device_type == 'cpu':
        return torch.is_autocast_cpu_enabled()
    return device_type == 'cuda' and torch.is_autocast_enabled()


def autocast_dtype(device_type: str) -> torch.dtype:
    """The dtype autocast casts to on ``device_type``."""
    if _BY_DEVICE_TYPE:
        return torch.get_autocast_dtype(device_type)
    if device_type == 'cpu':
        return torch.get_autocast_cpu_dtype()
    return torch.get_autocast_gpu_dtype()


def float32_region(like: Tensor):
    """A context with autocast off for ``like``'s device type, if it is on;
    otherwise one that does nothing (a traced graph is unchanged)."""
    if autocast_enabled_for(like.device.type):
        return torch.autocast(like.device.type, enabled=False)
    return nullcontext()


def to_float32(x: Tensor) -> Tensor:
    """``x`` in float32 if it is float16 or bfloat16; otherwise unchanged
    (float64 stays float64)."""
    if x.dtype in (torch.float16, torch.bfloat16):
        return x.float()
    return x
