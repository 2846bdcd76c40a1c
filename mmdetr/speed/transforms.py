# Copyright (c) mmdetr contributors. All rights reserved.
"""The model transforms a config names in ``model.speedups``.

Each changes how, not what, a built DETR computes (the same parameters,
state-dict keys and outputs, up to float rounding), in place, by changing
module classes or adding a forward pre-hook::

    model = dict(
        type='DETR',
        ...,
        speedups=[
            dict(type='FrozenBatchNorms'),  # fold=True
            dict(type='ChannelsLast'),
            dict(type='FusedAttention'),
            dict(type='FastDropout'),
            dict(type='AutocastWeightCache'),
        ])

``speedups=[]`` (the default) is DETR as :mod:`mmdetr.models` writes it.
"""
from typing import List, Tuple

import torch
import torch.nn as nn

from mmdetr.registry import MODELS
from .attention import FastMultiheadAttention
from .dropout import BitsDropout
from .frozen_batch_norm import (FrozenBatchNorm2d, fold_frozen_batch_norms,
                                freeze_batch_norms, frozen_norm_slots,
                                restore_frozen_batch_norms)
from .weight_cache import CachedCastLinear


class _RestoreFrozenNorms:
    """Backbone forward pre-hook: puts back the frozen BatchNorms that a
    SyncBatchNorm conversion replaced (an object, not a closure, so that a
    deep copy of the model restores its own layers)."""

    def __init__(self, slots: List[Tuple[nn.Module, str, FrozenBatchNorm2d,
                                         bool]]) -> None:
        self.slots = slots

    def __call__(self, module: nn.Module, args: tuple) -> None:
        restore_frozen_batch_norms(self.slots)


@MODELS.register_module()
class FrozenBatchNorms:
    """The backbone's frozen BatchNorms as a fixed affine map that keeps no
    input for the backward pass (half the backbone's training activation
    memory), each applied by the convolution before it when ``fold``
    (:func:`~mmdetr.speed.frozen_batch_norm.fold_frozen_batch_norms`).

    A SyncBatchNorm conversion (``sync_bn='torch'``) replaces every
    BatchNorm, the frozen ones too: those have no batch statistics to
    synchronise and their folded convolutions would stop applying them, so
    the permanently frozen ones (the backbone's ``norm_eval``) are put back
    before every backbone forward.

    Args:
        fold (bool): Fold them into the convolutions. Defaults to True.
    """

    def __init__(self, fold: bool = True) -> None:
        self.fold = fold

    def __call__(self, model: nn.Module) -> nn.Module:
        backbone = model.backbone
        freeze_batch_norms(backbone)
        if self.fold:
            fold_frozen_batch_norms(backbone)
        permanent = bool(getattr(backbone, 'norm_eval', False))
        slots = [(*slot, permanent) for slot in frozen_norm_slots(backbone)]
        backbone.register_forward_pre_hook(_RestoreFrozenNorms(slots))
        return model


def _channels_last_input(module: nn.Module, args: tuple) -> tuple:
    return (args[0].contiguous(memory_format=torch.channels_last),
            *args[1:])


@MODELS.register_module()
class ChannelsLast:
    """The backbone's weights and input in the channels-last memory format,
    the native layout of oneDNN (CPU) and of tensor-core convolutions (GPU,
    mixed precision): no layout conversion around every convolution. Loading
    weights copies into these tensors, keeping the layout."""

    def __call__(self, model: nn.Module) -> nn.Module:
        model.backbone.to(memory_format=torch.channels_last)
        model.backbone.register_forward_pre_hook(_channels_last_input)
        return model


@MODELS.register_module()
class FusedAttention:
    """Attention with dropout in one pass when training on a CPU
    (:class:`~mmdetr.speed.attention.SoftmaxDropoutAttention`): every
    ``nn.MultiheadAttention`` becomes a
    :class:`~mmdetr.speed.attention.FastMultiheadAttention`."""

    def __call__(self, model: nn.Module) -> nn.Module:
        for m in model.modules():
            if type(m) is nn.MultiheadAttention:
                m.__class__ = FastMultiheadAttention
            if isinstance(m, FastMultiheadAttention):
                m.fused_dropout = True
        return model


@MODELS.register_module()
class FastDropout:
    """Every ``nn.Dropout`` becomes a
    :class:`~mmdetr.speed.dropout.BitsDropout`: training dropout on a CPU
    from a quarter of the random numbers (another draw of the same
    distribution; evaluation is unchanged)."""

    def __call__(self, model: nn.Module) -> nn.Module:
        for m in model.modules():
            if type(m) is nn.Dropout:
                m.__class__ = BitsDropout
        return model


@MODELS.register_module()
class AutocastWeightCache:
    """Keep the reduced-precision weights of the linear layers, the
    attentions and the folded convolutions between autocast inference calls
    (:mod:`~mmdetr.speed.weight_cache`): the linear layers become
    :class:`~mmdetr.speed.weight_cache.CachedCastLinear`, the attentions
    :class:`~mmdetr.speed.attention.FastMultiheadAttention`."""

    def __call__(self, model: nn.Module) -> nn.Module:
        for m in model.modules():
            if type(m) is nn.Linear:
                m.__class__ = CachedCastLinear
            elif type(m) is nn.MultiheadAttention:
                m.__class__ = FastMultiheadAttention
            if isinstance(m, (FastMultiheadAttention, nn.Conv2d)):
                m.cache_weights = True
        return model
