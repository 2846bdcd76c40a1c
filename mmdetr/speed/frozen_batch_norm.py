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

A frozen BatchNorm that directly follows a convolution can go further and
disappear into it (:func:`fold_frozen_batch_norms`): ``conv(x, W) * scale +
shift == conv(x, W * scale, bias=shift)``, so the convolution scales its
(small) weight instead of the network scaling its (large) output, and the
activation is written and read once less, forward and backward.
"""
from typing import Iterator, List, Tuple

import torch
import torch.nn as nn
from torch import Tensor

from .weight_cache import cached_cast, cached_weights_dtype


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

    # set by fold_frozen_batch_norms: the preceding convolution applies
    # this layer while it is frozen
    folded_into_conv = False

    def is_frozen(self) -> bool:
        return (not self.training and self.track_running_stats
                and self.running_var is not None and self.affine
                and not self.weight.requires_grad
                and not self.bias.requires_grad)

    def scale_shift(self) -> Tuple[Tensor, Tensor]:
        """The frozen layer as ``x * scale + shift``, per channel."""
        scale = self.weight * (self.running_var + self.eps).rsqrt()
        return scale, self.bias - self.running_mean * scale

    def forward(self, x: Tensor) -> Tensor:
        """
        Args:
            x (Tensor): has shape (N, C, H, W).

        Returns:
            Tensor: has shape (N, C, H, W).
        """
        if not self.is_frozen():
            return super().forward(x)
        if self.folded_into_conv:
            return x  # the convolution before it has applied it
        scale, shift = self.scale_shift()
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


class ConvFrozenBN2d(nn.Conv2d):
    """``nn.Conv2d`` that also applies the :class:`FrozenBatchNorm2d` right
    after it, while that one is frozen, by scaling its weight::

        conv(x, W * scale, bias * scale + shift)

    Made by :func:`fold_frozen_batch_norms` (only the class of the
    convolution changes: parameters and state-dict keys stay ``nn.Conv2d``'s;
    the BatchNorm stays where it is, with its own keys, and passes its input
    through while frozen). When the BatchNorm is not frozen (trained, or in
    training mode) both layers compute as before, separately.
    """

    # the FrozenBatchNorm2d after it, and the (parent module, name) where it
    # sits; kept in tuples so that they do not become submodules of the
    # convolution (no duplicate state-dict keys)
    _folded_norm: Tuple[FrozenBatchNorm2d] = ()
    _folded_at: Tuple[nn.Module, str] = ()
    #: keep the folded weight in autocast's dtype between inference calls
    #: (set by :class:`~mmdetr.speed.transforms.AutocastWeightCache`)
    cache_weights = False

    def applies_norm(self) -> bool:
        """Whether this convolution applies its BatchNorm now: the norm is
        frozen and still in its place (``convert_sync_batchnorm`` replaces
        it with a new module that then applies itself)."""
        if not self._folded_norm or not self._folded_norm[0].is_frozen():
            return False
        if self._folded_at:
            parent, name = self._folded_at
            return parent._modules.get(name) is self._folded_norm[0]
        return True

    def forward(self, x: Tensor) -> Tensor:
        if not self.applies_norm():
            return super().forward(x)
        if self.cache_weights and cached_weights_dtype(x) is not None:
            # autocast inference: the folded weight in autocast's dtype,
            # kept between calls (mmdetr.speed.weight_cache)
            norm = self._folded_norm[0]
            dtype = cached_weights_dtype(x)
            weight, bias = cached_cast(
                self, 'folded',
                (self.weight, self.bias, norm.weight, norm.bias,
                 norm.running_mean, norm.running_var),
                lambda: tuple(t.to(dtype) for t in self.folded()))
            return self._conv_forward(x, weight, bias)
        return self._conv_forward(x, *self.folded())

    def folded(self) -> Tuple[Tensor, Tensor]:
        """The weight and bias of this convolution with its BatchNorm
        applied, in the weight's dtype."""
        norm = self._folded_norm[0]
        scale, shift = norm.scale_shift()
        weight = self.weight * scale.to(self.weight.dtype)[:, None, None,
                                                           None]
        bias = shift if self.bias is None else torch.addcmul(
            shift, self.bias, scale)
        return weight, bias.to(self.weight.dtype)


def _conv_norm_pairs(
    module: nn.Module
) -> Iterator[Tuple[nn.Module, nn.Module, nn.Module, str]]:
    """(convolution, BatchNorm, BatchNorm's parent, BatchNorm's name) inside
    ``module`` where the BatchNorm is known to be applied to the
    convolution's output and to nothing else:
    adjacent layers of an ``nn.Sequential`` (mmdet's ResNet ``downsample``
    and deep stem), and ``convK``/``normK`` of mmdet's ResNet stem and
    residual blocks, whose ``forward`` calls them back to back (only where
    that ``forward`` is mmdet's own; a deep stem has no ``conv1``)."""
    from mmdet.models.backbones.resnet import BasicBlock, Bottleneck, ResNet
    known = (BasicBlock, Bottleneck, ResNet)
    for m in module.modules():
        if isinstance(m, nn.Sequential):
            names = list(m._modules)
            for a, b in zip(names[:-1], names[1:]):
                yield m._modules[a], m._modules[b], m, b
            continue
        owner = next((k for k in known if isinstance(m, k)), None)
        if owner is None or type(m).forward is not owner.forward:
            continue
        for i in (1, 2, 3):
            norm_name = getattr(m, f'norm{i}_name', None)
            if norm_name is not None and hasattr(m, f'conv{i}'):
                yield (getattr(m, f'conv{i}'), getattr(m, norm_name), m,
                       norm_name)


def fold_frozen_batch_norms(module: nn.Module) -> int:
    """Let each :class:`FrozenBatchNorm2d` that directly follows an
    ``nn.Conv2d`` inside ``module`` be applied by that convolution (see
    :class:`ConvFrozenBN2d`), in place.

    Outputs and gradients equal those of the separate layers up to float
    rounding; parameters, buffers and state-dict keys do not change. While
    folded, the convolution's own output (seen by a forward hook on it) is
    the BatchNorm's output.

    Returns:
        int: how many BatchNorm layers were folded.
    """
    count = 0
    for conv, norm, parent, name in _conv_norm_pairs(module):
        if (type(conv) is nn.Conv2d and type(norm) is FrozenBatchNorm2d
                and not norm.folded_into_conv
                and norm.num_features == conv.out_channels):
            conv.__class__ = ConvFrozenBN2d
            conv._folded_norm = (norm, )
            conv._folded_at = (parent, name)
            norm.folded_into_conv = True
            count += 1
    return count


def frozen_norm_slots(module: nn.Module) -> List[Tuple[nn.Module, str,
                                                       FrozenBatchNorm2d]]:
    """(parent, name, layer) of every :class:`FrozenBatchNorm2d` inside
    ``module``, to find them again after a conversion replaced them (see
    :func:`restore_frozen_batch_norms`)."""
    return [(parent, name, child) for parent in module.modules()
            for name, child in parent._modules.items()
            if type(child) is FrozenBatchNorm2d]


def restore_frozen_batch_norms(slots) -> int:
    """Put back frozen BatchNorm layers that a SyncBatchNorm conversion
    replaced.

    mmengine's ``convert_sync_batchnorm`` (run by the Runner for
    ``sync_bn='torch'``) and torch's ``SyncBatchNorm.convert_sync_batchnorm``
    replace every BatchNorm, frozen ones included, by a new SyncBatchNorm
    sharing its parameters and buffers. A frozen layer has no batch
    statistics to synchronise, and its folded convolution (if any) would
    stop applying it; so a replacement is undone when the original layer is
    permanently frozen: affine parameters without gradients and
    ``permanent`` True (the backbone keeps its BatchNorms in evaluation
    mode, mmdet's ``norm_eval``). Trainable BatchNorms stay converted.

    Args:
        slots (list): From :func:`frozen_norm_slots`, each
            ``(parent, name, layer, permanent)``.

    Returns:
        int: how many layers were put back.
    """
    count = 0
    for parent, name, norm, permanent in slots:
        current = parent._modules.get(name)
        if (current is norm or not permanent or current is None
                or not isinstance(current, nn.modules.batchnorm._BatchNorm)
                or current.weight is not norm.weight
                or norm.weight.requires_grad or norm.bias.requires_grad):
            continue
        # permanently frozen: evaluation mode whatever the replacement's
        # (mmengine's conversion leaves new layers in training mode)
        norm.train(False)
        parent._modules[name] = norm
        count += 1
    return count
