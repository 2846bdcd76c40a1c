# Copyright (c) mmdetr contributors. All rights reserved.
"""mmdetr's optimizer wrappers clip exactly as mmengine's OptimWrapper does;
only the norm's logging is deferred (to the next step's loss copy)."""
import copy

import pytest
import torch
from helpers import build_mmdetr, make_batch, preprocess, training_step
from mmengine.optim import AmpOptimWrapper, OptimWrapper

from mmdetr.engine import (DeferredGradNormMixin,
                           DeferredGradNormOptimWrapper,
                           SkipNonFiniteAmpOptimWrapper)


def _train(wrapper, model, data, steps=2, clip=True):
    optim_wrapper = wrapper(
        torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4),
        clip_grad=dict(max_norm=0.1, norm_type=2) if clip else None)
    for _ in range(steps):
        training_step(model, data, optim_wrapper)
    return model, optim_wrapper


@pytest.mark.parametrize('clip', [True, False])
def test_updates_are_bit_identical_to_mmengines(clip):
    torch.manual_seed(0)
    model = build_mmdetr(dec=2)
    model.train()
    data = preprocess(model, make_batch(num_boxes=(3, 5), seed=3), True)
    before = copy.deepcopy(model)
    theirs, _ = _train(OptimWrapper, copy.deepcopy(model), data, clip=clip)
    ours, wrapper = _train(DeferredGradNormOptimWrapper, model, data,
                           clip=clip)
    changed = 0
    for (name, a), b, p0 in zip(ours.named_parameters(), theirs.parameters(),
                                before.parameters()):
        assert torch.equal(a, b), name
        if a.grad is not None:
            assert torch.equal(a.grad, b.grad), name
        changed += not torch.equal(a, p0)
    assert changed > 0  # the steps did update the weights
    # the last step's norm waits for the next step; none without clipping
    pending = wrapper.pop_grad_norm()
    assert (pending is not None) == clip
    if clip:
        assert pending[0] == 'grad_norm' and pending[1].ndim == 0


def test_amp_wrapper_defers_its_norm_too():
    # the mixin's _clip_grad wins over AmpOptimWrapper's (OptimWrapper's)
    assert SkipNonFiniteAmpOptimWrapper._clip_grad is \
        DeferredGradNormMixin._clip_grad
    mro = SkipNonFiniteAmpOptimWrapper.__mro__
    assert mro.index(DeferredGradNormMixin) < mro.index(AmpOptimWrapper)
