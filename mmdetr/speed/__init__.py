# Copyright (c) mmdetr contributors. All rights reserved.
"""Speed and memory parts, outside DETR's maths: a config turns them on
(``model.speedups``, :mod:`.transforms`), and without them the core
(:mod:`mmdetr.models`) is plain PyTorch. None changes what the model
computes beyond float rounding (and the draw of the dropout noise,
:mod:`.dropout`).

- :mod:`.frozen_batch_norm`: frozen BatchNorm as an affine map that keeps
  no input, folded into the convolution before it, put back after a
  SyncBatchNorm conversion;
- :mod:`.attention`: attention with dropout in one pass on a CPU, cached
  weights under autocast;
- :mod:`.dropout`: dropout noise from a quarter of the random numbers;
- :mod:`.weight_cache`: reduced-precision weights kept between autocast
  inference calls;
- :mod:`.transforms`: the registered transforms that apply them.

It builds on the core and the registry; the core never imports it.
"""
from .attention import (FastMultiheadAttention, SoftmaxDropoutAttention,
                        softmax_dropout_attention)
from .dropout import BitsDropout, keep_mask
from .frozen_batch_norm import (ConvFrozenBN2d, FrozenBatchNorm2d,
                                fold_frozen_batch_norms, freeze_batch_norms,
                                restore_frozen_batch_norms)
from .transforms import (AutocastWeightCache, ChannelsLast, FastDropout,
                         FrozenBatchNorms, FusedAttention)
from .weight_cache import (CachedCastLinear, autocast_weight_cache,
                           cached_cast, cached_weights_dtype)

__all__ = [
    'FastMultiheadAttention', 'SoftmaxDropoutAttention',
    'softmax_dropout_attention', 'ConvFrozenBN2d', 'FrozenBatchNorm2d',
    'fold_frozen_batch_norms', 'freeze_batch_norms',
    'restore_frozen_batch_norms', 'AutocastWeightCache', 'ChannelsLast',
    'FrozenBatchNorms', 'FusedAttention', 'FastDropout', 'BitsDropout',
    'keep_mask', 'CachedCastLinear',
    'autocast_weight_cache', 'cached_cast', 'cached_weights_dtype'
]
