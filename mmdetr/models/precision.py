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

Under autocast in inference (no autograd) the weights in the reduced
dtype are kept between calls (:func:`cached_cast`): the transformer's
linear layers and attention, and the backbone's convolutions with their
frozen BatchNorms folded in. Autocast would cast (and fold) them again at
every call; the outputs are the same, bit for bit.

Without autocast nothing here changes what runs: the float32 path is the
same code, bit for bit.
"""
from contextlib import contextmanager, nullcontext
from typing import Callable, Iterator, Optional, Sequence, Tuple

import torch
import torch.nn as nn
from torch import Tensor


#: torch >= 2.4 asks autocast's state by device type; older torch has a
#: function per device
_BY_DEVICE_TYPE = hasattr(torch, 'get_autocast_dtype')


def autocast_enabled_for(device_type: str) -> bool:
    """Whether autocast is on for ``device_type`` (``'cpu'``, ``'cuda'``
    ...)."""
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


def autocast_enabled(like: Tensor) -> bool:
    """Whether autocast is on for ``like``'s device type."""
    return autocast_enabled_for(like.device.type)


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


_CACHE_WEIGHTS = [True]


@contextmanager
def autocast_weight_cache(enabled: bool) -> Iterator[None]:
    """Keep (True, the default) or not (False: autocast casts at every
    call, as torch alone does) the reduced-precision weights between
    inference calls, inside the block; for comparisons."""
    before = _CACHE_WEIGHTS[0]
    _CACHE_WEIGHTS[0] = enabled
    try:
        yield
    finally:
        _CACHE_WEIGHTS[0] = before


def cached_weights_dtype(like: Tensor) -> Optional[torch.dtype]:
    """The autocast dtype when reduced-precision copies of weights may be
    kept between calls (:func:`cached_cast`): autocast is on for
    ``like``'s device, autograd is off (inference) and nothing is being
    traced or exported; None otherwise."""
    device_type = like.device.type
    if torch.is_grad_enabled() or not autocast_enabled_for(device_type):
        return None
    if not _CACHE_WEIGHTS[0]:
        return None
    if torch.jit.is_tracing() or torch.onnx.is_in_onnx_export():
        return None
    return autocast_dtype(device_type)


def _state(t: Optional[Tensor]) -> tuple:
    if t is None:
        return (None, )
    try:
        return (id(t), t.data_ptr(), t._version, t.dtype, t.device)
    except RuntimeError:  # an inference tensor has no version: never hit
        return (object(), )


def cached_cast(owner: nn.Module, name: str,
                sources: Sequence[Optional[Tensor]],
                compute: Callable[[], Tuple[Tensor, ...]]
                ) -> Tuple[Tensor, ...]:
    """``compute()`` (weights in the autocast dtype, derived from
    ``sources``), kept on ``owner`` between inference calls while every
    source is unchanged (same tensor, storage and version: a load, an
    optimizer step or ``model.to()`` recomputes it).

    Autocast casts a weight at every call (and a weight computed from
    parameters, such as a convolution with its BatchNorm folded in, is
    recomputed too): on a CPU about 0.2 s of each R50 ``predict``. The
    copies are what autocast would compute, so the outputs are the same,
    bit for bit. Only for :func:`cached_weights_dtype` not None; the float32
    path never gets here.
    """
    key = tuple(_state(t) for t in sources) + (
        autocast_dtype(sources[0].device.type), )
    cache = owner.__dict__.setdefault('_autocast_weights', {})
    hit = cache.get(name)
    if hit is not None and hit[0] == key:
        return hit[1]
    value = compute()
    cache[name] = (key, value)
    return value
