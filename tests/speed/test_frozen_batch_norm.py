# Copyright (c) mmdetr contributors. All rights reserved.
"""Frozen BatchNorm as an affine map that keeps no input, folded into the
convolution before it (the FrozenBatchNorms speed-up)."""
import copy

import pytest
import torch
import torch.nn as nn

from helpers import build_mmdetr, mmdetr_cfg
from mmdetr.speed import (ConvFrozenBN2d, FrozenBatchNorm2d,
                          fold_frozen_batch_norms, freeze_batch_norms)


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


def frozen_resnet(seed=0, **kwargs):
    """An mmdet ResNet frozen as DETR's (BN not trained, evaluation mode,
    stage 1 frozen), with random BatchNorm statistics and affine
    parameters, and FrozenBatchNorm2d layers."""
    from mmdet.registry import MODELS
    cfg = dict(
        type='ResNet', depth=18, num_stages=4, out_indices=(3, ),
        frozen_stages=1, norm_cfg=dict(type='BN', requires_grad=False),
        norm_eval=True, style='pytorch', zero_init_residual=False,
        init_cfg=None)
    cfg.update(kwargs)
    torch.manual_seed(seed)
    net = MODELS.build(cfg)
    net.init_weights()
    gen = torch.Generator().manual_seed(seed)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            c = m.num_features
            m.running_mean.copy_(torch.randn(c, generator=gen) * 0.1)
            m.running_var.copy_(torch.rand(c, generator=gen) + 0.5)
            m.weight.data.copy_(torch.rand(c, generator=gen) + 0.5)
            m.bias.data.copy_(torch.randn(c, generator=gen) * 0.1)
    freeze_batch_norms(net)
    net.train()  # norm_eval: the BatchNorms stay in evaluation mode
    return net


def assert_close_to_scale(actual, expected, name='output', tol=1e-5):
    """Equal up to float rounding: every element within ``tol`` times the
    largest magnitude of ``expected`` (a scaled weight rounds differently
    from a scaled output; elements near zero then differ relatively more)."""
    error = (actual - expected).abs().max().item()
    scale = expected.abs().max().item()
    assert scale > 0 and error <= tol * scale, (
        f'{name}: max error {error:.3g} vs scale {scale:.3g}')


def forward_backward(net, x):
    """Output and the gradients of the input and of every trainable
    parameter, for a loss that weighs every output element differently."""
    x = x.detach().clone().requires_grad_()
    (out, ) = net(x)
    weights = torch.linspace(-1, 1, out.numel()).view_as(out)
    params = [(n, p) for n, p in net.named_parameters() if p.requires_grad]
    grads = torch.autograd.grad((out * weights).sum(),
                                [x] + [p for _, p in params])
    return out, dict(zip(['input'] + [n for n, _ in params], grads))


@pytest.mark.parametrize('arch', [
    dict(depth=18),
    dict(depth=50),
    dict(depth=50, type='ResNetV1d'),  # deep stem, avg-pool downsample
])
def test_folded_backbone_computes_the_separate_layers(arch):
    separate = frozen_resnet(**arch)
    folded = copy.deepcopy(separate)
    norms = [m for m in folded.modules() if isinstance(m, nn.BatchNorm2d)]
    # every BatchNorm of the ResNet follows a convolution
    assert fold_frozen_batch_norms(folded) == len(norms)
    assert all(m.folded_into_conv for m in norms)
    assert fold_frozen_batch_norms(folded) == 0  # nothing folds twice
    x = torch.randn(2, 3, 64, 96, generator=torch.Generator().manual_seed(1))
    # float32: the same output up to rounding
    assert_close_to_scale(folded(x)[0], separate(x)[0])
    # float64: the same output and gradients (float32 rounding may flip a
    # ReLU or max-pool decision near a tie, which moves single gradients)
    out, grads = forward_backward(separate.double(), x.double())
    out_f, grads_f = forward_backward(folded.double(), x.double())
    assert_close_to_scale(out_f, out, tol=1e-10)
    assert grads_f.keys() == grads.keys() and len(grads) > 10
    for name in grads:
        assert_close_to_scale(grads_f[name], grads[name], name, tol=1e-10)
    assert folded.state_dict().keys() == separate.state_dict().keys()


def test_folding_follows_the_batch_norm_statistics():
    """The fold reads the BatchNorm's current statistics at every call, so
    loading a checkpoint afterwards (or changing the statistics) counts."""
    separate = frozen_resnet(seed=0)
    folded = frozen_resnet(seed=1)
    fold_frozen_batch_norms(folded)
    x = torch.randn(1, 3, 64, 64)
    assert not torch.allclose(folded(x)[0], separate(x)[0])
    folded.load_state_dict(separate.state_dict())
    torch.testing.assert_close(folded(x)[0], separate(x)[0], rtol=1e-4,
                               atol=1e-5)
    # a copy applies its own BatchNorms, not the original's
    twin = copy.deepcopy(folded)
    for m in twin.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_var.mul_(4)
    torch.testing.assert_close(folded(x)[0], separate(x)[0], rtol=1e-4,
                               atol=1e-5)
    assert not torch.allclose(twin(x)[0], separate(x)[0])


@pytest.mark.parametrize('unfreeze', ['train_mode', 'trainable_affine'])
def test_folding_steps_aside_when_batch_norm_is_not_frozen(unfreeze):
    """A trained BatchNorm (training mode or trainable affine parameters)
    is computed as BatchNorm after the plain convolution."""
    separate = frozen_resnet(norm_eval=False)
    folded = copy.deepcopy(separate)
    fold_frozen_batch_norms(folded)
    for net in (separate, folded):
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                if unfreeze == 'train_mode':
                    m.train()
                else:
                    m.eval()
                    m.requires_grad_(True)
    x = torch.randn(2, 3, 64, 64)
    torch.testing.assert_close(folded(x)[0], separate(x)[0], rtol=0, atol=0)
    if unfreeze == 'train_mode':  # and it updates its statistics
        torch.testing.assert_close(folded.layer4[1].bn2.running_mean,
                                   separate.layer4[1].bn2.running_mean,
                                   rtol=0, atol=0)


def test_only_known_conv_norm_pairs_fold():
    """A BatchNorm is folded only where the convolution's output is known to
    go to it and nowhere else: not in arbitrary modules."""

    class Branchy(nn.Module):

        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(3, 4, 1)
            self.norm1_name = 'bn1'
            self.bn1 = nn.BatchNorm2d(4)

        def forward(self, x):
            y = self.conv1(x)
            return self.bn1(y) + y  # y is used twice

    net = Branchy().eval().requires_grad_(False)
    freeze_batch_norms(net)
    assert fold_frozen_batch_norms(net) == 0
    assert type(net.conv1) is nn.Conv2d


def test_detr_folds_its_backbone_batch_norms_unless_told_not_to():
    """The configs' speed-up folds all of them; fold=False freezes them
    only; without the speed-up they are torch's BatchNorm2d."""
    model = build_mmdetr()
    folded = [m for m in model.backbone.modules()
              if isinstance(m, ConvFrozenBN2d)]
    norms = [m for m in model.backbone.modules()
             if isinstance(m, nn.BatchNorm2d)]
    assert len(folded) == len(norms) == 20  # ResNet-18
    # the head's 1x1 projection is no BatchNorm's
    assert type(model.bbox_head.input_proj) is nn.Conv2d
    model = build_mmdetr(mmdetr_cfg(
        speedups=[dict(type='FrozenBatchNorms', fold=False)]))
    assert not any(isinstance(m, ConvFrozenBN2d) for m in model.modules())
    assert any(type(m) is FrozenBatchNorm2d for m in model.modules())
    model = build_mmdetr(mmdetr_cfg(speedups=[]))
    assert not any(isinstance(m, (ConvFrozenBN2d, FrozenBatchNorm2d))
                   for m in model.modules())
