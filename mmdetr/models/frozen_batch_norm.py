# Copyright (c) mmdetr contributors. All rights reserved.
"""Frozen BatchNorm as a fixed affine map that does not keep its input.

DETR trains its backbone with frozen BatchNorm (mmdet: ``norm_cfg=dict(
type='BN', requires_grad=False), norm_eval=True``; official DETR:
``FrozenBatchNorm2d``). ``nn.BatchNorm2d`` in evaluation mode computes the
right thing, but its backward formula keeps the layer's input (the
convolution output) alive until the backward pass, although with frozen
affine parameters nothing needs it. Computed as ``x * scale + shift``, autograd
keeps only ``scale``, so each conv -> BN -> ReLU keeps one activation instead
of two: about half the backbone's training activation memory, for the same
numbers.
"""
import torch
import torch.nn as nn
from torch import Tensor


class FrozenBatchNorm2d(nn.BatchNorm2d):
    """``nn.BatchNorm2d`` that, while frozen, runs as a fixed affine map.

    Frozen means: evaluation mode, running statistics tracked, and affine
    parameters that do not require gradients. Then::

        scale = weight / sqrt(running_var + eps)
        y = x * scale + (bias - running_mean * scale)

    which is what ``nn.BatchNorm2d`` computes in evaluation mode. In every
    other state it is ``nn.BatchNorm2d`` unchanged. Parameters, buffers and
    state-dict keys are those of ``nn.BatchNorm2d``.
    """

    def is_frozen(self) -> bool:
        return (not self.training and self.track_running_stats
                and self.running_var is not None and self.affine
                and not self.weight.requires_grad
                and not self.bias.requires_grad)

    def forward(self, x: Tensor) -> Tensor:
        """
        Args:
            x (Tensor): has shape (N, C, H, W).

        Returns:
            Tensor: has shape (N, C, H, W).
        """
        if not self.is_frozen():
            return super().forward(x)
        scale = self.weight * (self.running_var + self.eps).rsqrt()
        shift = self.bias - self.running_mean * scale
        # in x's dtype, so half-precision activations stay half as with
        # BatchNorm (float32 statistics would promote the output)
        scale = scale.to(x.dtype)[:, None, None]
        shift = shift.to(x.dtype)[:, None, None]
        # one pass; autograd keeps scale (for the input's gradient), not x
        return torch.addcmul(shift, x, scale)


def freeze_batch_norms(module: nn.Module) -> int:
    """Turn every plain ``nn.BatchNorm2d`` inside ``module`` into a
    :class:`FrozenBatchNorm2d`, in place.

    The modules keep their identity, parameters, buffers and state-dict keys
    (only their class changes), so checkpoints, optimizers and mmdet's
    ``norm_eval`` handling see no difference; a BatchNorm that is trained
    still behaves as ``nn.BatchNorm2d``.

    Returns:
        int: how many were converted.
    """
    count = 0
    for m in module.modules():
        if type(m) is nn.BatchNorm2d:
            m.__class__ = FrozenBatchNorm2d
            count += 1
    return count
