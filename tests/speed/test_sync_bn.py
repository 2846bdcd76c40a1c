# Copyright (c) mmdetr contributors. All rights reserved.
"""SyncBatchNorm conversion (``sync_bn='torch'`` in a config, as multi-GPU
users set it) leaves the model's outputs as they were, with the
FrozenBatchNorms speed-up (folded or not)."""
import copy

import pytest
import torch
import torch.nn as nn
from mmengine.model import convert_sync_batchnorm

from helpers import build_mmdetr, make_batch, mmdetr_cfg, preprocess
from mmdetr.speed import FrozenBatchNorm2d


def model_with(trainable_bn: bool, fold: bool):
    cfg = mmdetr_cfg(speedups=[dict(type='FrozenBatchNorms', fold=fold)])
    if trainable_bn:
        cfg['backbone']['norm_cfg'] = dict(type='BN', requires_grad=True)
        cfg['backbone']['norm_eval'] = False
    torch.manual_seed(0)
    model = build_mmdetr(cfg)
    # non-trivial statistics, so that applying a BatchNorm twice shows
    gen = torch.Generator().manual_seed(1)
    for m in model.backbone.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5, generator=gen)
            m.running_var.uniform_(0.5, 2.0, generator=gen)
    return model.eval()


def outputs(model, data):
    with torch.no_grad():
        feats = model.extract_feat(data['inputs'])[-1]
        cls, box = model(**data, mode='tensor')
    return feats, cls[-1], box[-1]


def sync_norms(model):
    return [m for m in model.modules() if isinstance(m, nn.SyncBatchNorm)]


@pytest.mark.parametrize('trainable_bn', [False, True])
@pytest.mark.parametrize('fold', [True, False])
def test_convert_sync_batchnorm_keeps_outputs(trainable_bn, fold):
    model = model_with(trainable_bn, fold)
    data = preprocess(model, make_batch(num_boxes=(1, 2)), False)
    before = outputs(model, data)
    converted = convert_sync_batchnorm(copy.deepcopy(model))
    # mmengine converts every BatchNorm, the frozen ones too
    assert sync_norms(converted)
    if trainable_bn:
        # its new layers start in training mode; the runner sets the mode
        # (eval() before validating) as for any model
        converted.eval()
    after = outputs(converted, data)
    for name, a, b in zip(['features', 'scores', 'boxes'], before, after):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-5, msg=name)
    remaining = sync_norms(converted)
    if trainable_bn:
        # trainable ones stay SyncBatchNorm: they have statistics to sync
        trainable = [
            m for m in converted.backbone.modules()
            if isinstance(m, nn.modules.batchnorm._BatchNorm)
            and m.weight.requires_grad
        ]
        assert trainable and all(
            isinstance(m, nn.SyncBatchNorm) for m in trainable)
    else:
        # frozen ones are put back: nothing to synchronise
        assert not remaining
        assert any(type(m) is FrozenBatchNorm2d
                   for m in converted.backbone.modules())


def test_frozen_layers_put_back_keep_their_parameters():
    """The restored layers are the model's own (same parameters), so an
    optimizer or DDP built after the conversion sees the same tensors."""
    model = model_with(False, True)
    params = {id(p) for p in model.parameters()}
    converted = convert_sync_batchnorm(model)
    data = preprocess(converted, make_batch(num_boxes=(1, 2)), False)
    outputs(converted, data)
    assert {id(p) for p in converted.parameters()} == params


def test_sync_bn_torch_in_a_runner_config_keeps_outputs(monkeypatch):
    """The path a config takes: mmengine's Runner.wrap_model converts with
    ``sync_bn='torch'`` when distributed. Called here as the runner calls
    it (the DDP wrapping after it needs several processes)."""
    import mmengine.runner.runner as runner_module
    model = model_with(False, True)
    data = preprocess(model, make_batch(num_boxes=(1, 2)), False)
    before = outputs(model, data)
    seen = {}
    real = runner_module.convert_sync_batchnorm

    def spy(module, implementation='torch'):
        seen['implementation'] = implementation
        return real(module, implementation)

    monkeypatch.setattr(runner_module, 'convert_sync_batchnorm', spy)
    # DDP itself needs several processes; the model goes through unwrapped
    monkeypatch.setattr(runner_module, 'MMDistributedDataParallel',
                        lambda module, **kwargs: module)
    monkeypatch.setenv('LOCAL_RANK', '0')

    class Stub:
        distributed = True
        cfg = dict(sync_bn='torch')

    wrapped = runner_module.Runner.wrap_model(Stub(), None, model)
    assert seen == {'implementation': 'torch'}
    assert sync_norms(wrapped)  # converted, frozen ones included
    after = outputs(wrapped, data)
    for a, b in zip(before, after):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-5)
