# Copyright (c) mmdetr contributors. All rights reserved.
"""FusedOptimWrapperConstructor: mmengine's parameter groups, the step in
torch's fused kernel where torch has one, the same updates as torch's
loop, and the kernel a property of the run, not of a resumed checkpoint."""
import copy

import pytest
import torch
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper as _build
from mmengine.registry import DefaultScope
from torch import nn

from mmdetr.engine import fused_unavailable
from mmdetr.engine.fused_optimizer import FUSED_SINCE, _torch_version

CPU_FUSED = _torch_version() >= FUSED_SINCE['AdamW']['cpu']
needs_cpu_fused = pytest.mark.skipif(
    not CPU_FUSED, reason='fused AdamW on a CPU needs torch >= 2.4')


class Tiny(nn.Module):

    def __init__(self):
        super().__init__()
        # no BatchNorm after the convolution: its bias would get a zero
        # gradient, and Adam would amplify the rounding noise of that
        self.backbone = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU())
        self.head = nn.Linear(4, 2)

    def forward(self, x):
        return self.head(self.backbone(x).mean((2, 3)))


def optim_cfg(constructor, **optimizer):
    return dict(
        type='OptimWrapper',
        constructor=constructor,
        optimizer=dict(type='AdamW', lr=1e-2, weight_decay=1e-4,
                       **optimizer),
        paramwise_cfg=dict(custom_keys={'backbone': dict(lr_mult=0.1)}))


def build_optim_wrapper(model, cfg):
    """As the runner builds it: under the configs' default scope, mmdet."""
    with DefaultScope.overwrite_default_scope('mmdet'):
        return _build(model, cfg)


def train(model, wrapper, steps=4):
    gen = torch.Generator().manual_seed(0)
    for _ in range(steps):
        x = torch.randn(2, 3, 6, 6, generator=gen)
        wrapper.update_params(model(x).square().sum())


def test_reasons_name_what_is_missing():
    params = list(Tiny().parameters())
    assert 'torch >= 2.4' in fused_unavailable('AdamW', params, (2, 3))
    assert fused_unavailable('AdamW', params, (2, 4)) is None
    assert fused_unavailable(torch.optim.SGD, params, (2, 4)) is None
    assert 'RMSprop' in fused_unavailable('RMSprop', params, (2, 4))
    meta = [nn.Parameter(torch.empty(2, device='meta'))]
    assert 'meta' in fused_unavailable('AdamW', meta, (2, 4))
    frozen = [nn.Parameter(torch.ones(2), requires_grad=False)]
    assert fused_unavailable('AdamW', frozen, (2, 4)) is not None


def test_same_groups_and_updates_as_the_default_constructor():
    torch.manual_seed(0)
    ours, ref = Tiny(), Tiny()
    ref.load_state_dict(ours.state_dict())
    fused = build_optim_wrapper(
        ours, optim_cfg('mmdetr.FusedOptimWrapperConstructor'))
    plain = build_optim_wrapper(
        ref, optim_cfg('DefaultOptimWrapperConstructor'))
    groups = fused.optimizer.param_groups
    assert len(groups) == len(plain.optimizer.param_groups) == 4
    assert [g['lr'] for g in groups] == [
        g['lr'] for g in plain.optimizer.param_groups]
    assert all(g['fused'] is (True if CPU_FUSED else None) for g in groups)
    assert plain.optimizer.param_groups[0]['fused'] is None
    start = copy.deepcopy(ours.state_dict())
    train(ours, fused)
    train(ref, plain)
    for (name, a), b in zip(ours.state_dict().items(),
                            ref.state_dict().values()):
        if name.endswith(('weight', 'bias')):  # the step moved it
            assert not torch.equal(a, start[name]), name
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=name)


def test_a_config_that_chooses_the_kernel_is_left_as_it_is():
    wrapper = build_optim_wrapper(
        Tiny(), optim_cfg('mmdetr.FusedOptimWrapperConstructor',
                          foreach=False))
    assert wrapper.optimizer.param_groups[0]['fused'] is None
    assert wrapper.optimizer.param_groups[0]['foreach'] is False


@needs_cpu_fused
def test_resume_keeps_this_runs_kernel():
    torch.manual_seed(0)
    model = Tiny()
    plain = build_optim_wrapper(
        model, optim_cfg('DefaultOptimWrapperConstructor'))
    train(model, plain, 2)
    fused = build_optim_wrapper(
        copy.deepcopy(model), optim_cfg('mmdetr.FusedOptimWrapperConstructor'))
    fused.load_state_dict(plain.state_dict())
    groups = fused.optimizer.param_groups
    assert all(g['fused'] is True for g in groups)
    # the other way: a fused run's checkpoint in a run without the kernel
    plain.load_state_dict(fused.state_dict())
    assert plain.optimizer.param_groups[0]['fused'] is True  # torch's own
    unfused = build_optim_wrapper(
        copy.deepcopy(model),
        optim_cfg('mmdetr.FusedOptimWrapperConstructor', fused=False))
    unfused.load_state_dict(fused.state_dict())
    assert all(g['fused'] is False for g in unfused.optimizer.param_groups)
    # the state itself is loaded
    torch.testing.assert_close(
        unfused.optimizer.state_dict()['state'],
        fused.optimizer.state_dict()['state'])


def test_the_shipped_configs_use_it():
    import mmdetr  # noqa: F401
    cfg = Config.fromfile('configs/detr_r50_8x2_150e_coco.py')
    assert cfg.optim_wrapper.constructor == \
        'mmdetr.FusedOptimWrapperConstructor'
    cfg.optim_wrapper.type = 'OptimWrapper'
    cfg.optim_wrapper.pop('clip_grad')
    wrapper = build_optim_wrapper(Tiny(), cfg.optim_wrapper)
    assert wrapper.optimizer.param_groups[0]['fused'] is (
        True if CPU_FUSED else None)
