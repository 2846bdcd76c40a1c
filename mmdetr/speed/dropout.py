# Copyright (c) mmdetr contributors. All rights reserved.
"""Dropout noise drawn from fewer random numbers.

torch's CPU dropout draws one random number per element (``bernoulli_``,
or ``uniform_`` and a comparison): in a DETR R50 training step on 2 cores
that was 0.5 s of 6.8 s, most of it in the encoder's attention maps (8 heads
x (h*w)^2 per image). :func:`keep_mask` draws 64 random bits per four
elements and compares 15 of them per element with a threshold: the same
distribution, each element kept independently with probability
``1 - p'``, where ``p' = round(p * 2**15) / 2**15`` (0.100006 for 0.1), and
the survivors are scaled by ``1 / (1 - p')``, so the expectation is kept.

It is another draw than ``nn.Dropout``'s: a training run with dropout is
not the same run with and without it (inference is: dropout is off there).
"""
from typing import Optional, Sequence

import torch
import torch.nn as nn
from torch import Tensor

#: random bits compared per element
BITS = 15


def quantised(p: float) -> float:
    """The drop probability :func:`keep_mask` realises for ``p``."""
    return round(p * 2**BITS) / 2**BITS


def keep_mask(shape: Sequence[int], p: float, device=None,
              generator: Optional[torch.Generator] = None) -> Tensor:
    """A bool tensor of ``shape``, each element True (kept) independently
    with probability ``1 - quantised(p)``.

    Args:
        shape (sequence[int]): Of the mask.
        p (float): Drop probability, in [0, 1).
        device (torch.device, optional): Of the mask.
        generator (torch.Generator, optional): Of the noise; the default
            one of ``device`` when None.
    """
    n = 1
    for size in shape:
        n *= size
    words = torch.empty((n + 3) // 4, dtype=torch.int64, device=device)
    # random_() on int64 fills [0, 2**63): the top bit is always 0, so only
    # the low 15 bits of each 16-bit lane are used
    lanes = words.random_(generator=generator).view(torch.int16)[:n]
    lanes.bitwise_and_(2**BITS - 1)
    return lanes.ge(round(p * 2**BITS)).view(*shape)


def dropout(x: Tensor, p: float,
            generator: Optional[torch.Generator] = None) -> Tensor:
    """``x`` with elements zeroed where :func:`keep_mask` drops them and the
    rest scaled by ``1 / (1 - quantised(p))``, differentiable in ``x``."""
    keep = keep_mask(x.shape, p, x.device, generator)
    return torch.mul(x, keep).mul_(1 / (1 - quantised(p)))


class BitsDropout(nn.Dropout):
    """``nn.Dropout`` (its ``p``, ``inplace`` and no state) whose training
    noise comes from :func:`keep_mask` on a CPU; elsewhere, in evaluation
    and with ``p`` 0 or 1 it is ``nn.Dropout`` itself (on a GPU torch's fused
    dropout kernel is one pass already)."""

    #: the noise's generator (tests); the default one if None
    generator: Optional[torch.Generator] = None

    def forward(self, x: Tensor) -> Tensor:
        if (self.training and 0 < self.p < 1 and x.device.type == 'cpu'
                and x.is_floating_point()):
            return dropout(x, self.p, self.generator)
        return super().forward(x)
