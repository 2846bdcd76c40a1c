# Copyright (c) mmdetr contributors. All rights reserved.
import pytest
import torch
import torch.nn as nn

from conftest import build_mmdetr
from mmdetr.models import FrozenBatchNorm2d, freeze_batch_norms


def frozen_pair(channels=6):
    """A BatchNorm2d with non-trivial statistics, frozen as DETR freezes it,
    and its FrozenBatchNorm2d twin."""
    gen = torch.Generator().manual_seed(0)
    bn = nn.BatchNorm2d(channels)
    bn.running_mean.copy_(torch.randn(channels, generator=gen))
    bn.running_var.copy_(torch.rand(channels, generator=gen) + 0.5)
    bn.weight.data.copy_(torch.randn(channels, generator=gen))
    bn.bias.data.copy_(torch.randn(channels, generator=gen))
    bn.requires_grad_(False)
    bn.eval()
    twin = nn.BatchNorm2d(channels)
    twin.load_state_dict(bn.state_dict())
    twin.requires_grad_(False)
    twin.eval()
    assert freeze_batch_norms(twin) == 1
    return bn, twin


def saved_inputs(module, x):
    """The tensors autograd keeps for the backward pass of module(x)."""
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(
            lambda t: saved.append(t) or t, lambda t: t):
        y = module(x)
    return y, saved


def test_frozen_bn_computes_batch_norm_and_its_gradient():
    bn, frozen = frozen_pair()
    x = torch.randn(2, 6, 5, 7, requires_grad=True)
    y = bn(x)
    (grad, ) = torch.autograd.grad(y.square().sum(), x)
    x2 = x.detach().requires_grad_()
    y2 = frozen(x2)
    (grad2, ) = torch.autograd.grad(y2.square().sum(), x2)
    torch.testing.assert_close(y2, y, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(grad2, grad, rtol=1e-6, atol=1e-6)


def test_frozen_bn_does_not_keep_its_input():
    """The point of it: BatchNorm2d keeps its input for backward, the frozen
    one does not."""
    bn, frozen = frozen_pair()
    x = torch.randn(2, 6, 5, 7, requires_grad=True)
    _, kept = saved_inputs(bn, x)
    assert any(t is x for t in kept)
    _, kept = saved_inputs(frozen, x)
    assert not any(t.data_ptr() == x.data_ptr() for t in kept)
    assert sum(t.numel() for t in kept) < x.numel()


def test_frozen_bn_keeps_half_precision_activations():
    """As BatchNorm2d under mixed precision: bfloat16 in, bfloat16 out."""
    bn, frozen = frozen_pair()
    x = torch.randn(2, 6, 5, 7)
    y = frozen(x.bfloat16())
    assert y.dtype == torch.bfloat16
    torch.testing.assert_close(y.float(), bn(x), rtol=2e-2, atol=2e-2)


@pytest.mark.parametrize('unfreeze', ['train_mode', 'trainable_affine'])
def test_unfrozen_bn_is_plain_batch_norm(unfreeze):
    bn, frozen = frozen_pair()
    if unfreeze == 'train_mode':
        bn.train()
        frozen.train()
    else:
        bn.requires_grad_(True)
        frozen.requires_grad_(True)
    assert not frozen.is_frozen()
    x = torch.randn(2, 6, 5, 7)
    torch.testing.assert_close(frozen(x), bn(x), rtol=0, atol=0)
    torch.testing.assert_close(frozen.running_mean, bn.running_mean)


def test_detr_backbone_gets_frozen_batch_norms():
    model = build_mmdetr()
    norms = [m for m in model.backbone.modules()
             if isinstance(m, nn.BatchNorm2d)]
    assert norms and all(type(m) is FrozenBatchNorm2d for m in norms)
    model.train()  # mmdet's norm_eval keeps them in evaluation mode
    assert all(m.is_frozen() for m in norms)
    # state-dict keys stay BatchNorm's (num_batches_tracked included)
    assert 'backbone.bn1.num_batches_tracked' in model.state_dict()
