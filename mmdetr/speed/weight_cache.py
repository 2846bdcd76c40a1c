# Copyright (c) mmdetr contributors. All rights reserved.
"""Reduced-precision weights kept between autocast inference calls.

Under ``torch.autocast`` a float32 weight is cast to the reduced dtype at
every call (and a weight computed from parameters, such as a convolution
with its frozen BatchNorm folded in, is recomputed too): on a CPU about
0.2 s of each R50 ``predict``. With :class:`AutocastWeightCache` the cast
weights are kept on their module while their sources are unchanged (same
tensor, storage and version: a load, an optimizer step or ``model.to()``
recomputes them). They are what autocast would compute, so the outputs are
the same, bit for bit. Only in inference (no autograd), outside tracing
and export; the float32 path never gets here.
"""
from contextlib import contextmanager
from typing import Callable, Iterator, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from mmdetr.models.precision import autocast_dtype, autocast_enabled_for

_ENABLED = True


@contextmanager
def autocast_weight_cache(enabled: bool) -> Iterator[None]:
    """Keep (True) or not (False: autocast casts at every call, as torch
    alone does) the reduced-precision weights inside the block; for
    comparisons."""
    global _ENABLED
    before, _ENABLED = _ENABLED, enabled
    try:
        yield
    finally:
        _ENABLED = before


def cached_weights_dtype(like: Tensor) -> Optional[torch.dtype]:
    """The autocast dtype when cast weights may be kept between calls:
    autocast is on for ``like``'s device, autograd is off and nothing is
    traced or exported; None otherwise."""
    device_type = like.device.type
    if (not _ENABLED or torch.is_grad_enabled()
            or not autocast_enabled_for(device_type)
            or torch.jit.is_tracing() or torch.onnx.is_in_onnx_export()):
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
    ``sources``), kept on ``owner`` while every source is unchanged."""
    key = tuple(_state(t) for t in sources) + (
        autocast_dtype(sources[0].device.type), )
    cache = owner.__dict__.setdefault('_autocast_weights', {})
    hit = cache.get(name)
    if hit is not None and hit[0] == key:
        return hit[1]
    value = compute()
    cache[name] = (key, value)
    return value


class CachedCastLinear(nn.Linear):
    """``nn.Linear`` whose weights in the autocast dtype are kept between
    inference calls (parameters and state-dict keys are ``nn.Linear``'s)."""

    def forward(self, x: Tensor) -> Tensor:
        dtype = cached_weights_dtype(x)
        if dtype is None:
            return super().forward(x)
        weight, bias = cached_cast(
            self, 'linear', (self.weight, self.bias),
            lambda: (self.weight.to(dtype),
                     None if self.bias is None else self.bias.to(dtype)))
        return F.linear(x, weight, bias)
