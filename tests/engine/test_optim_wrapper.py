# Copyright (c) mmdetr contributors. All rights reserved.
"""Mixed precision: a non-finite step is skipped as GradScaler skips it, and
training stops only when non-finite steps persist. mmengine's
AmpOptimWrapper refuses to run without a GPU, so the wrapper runs here with
torch's CPU GradScaler in its place: the same skipping logic."""
import pytest
import torch
import torch.nn as nn

from helpers import build_mmdetr, make_batch, preprocess
from mmdetr.engine import (ConsecutiveSkipGuard, DeferredGradNormOptimWrapper,
                           SkipNonFiniteAmpOptimWrapper)


def test_guard_stops_only_after_the_limit_in_a_row():
    guard = ConsecutiveSkipGuard(3)
    guard.update(True)
    guard.update(True)
    guard.update(False)  # a good step resets the run
    guard.update(True)
    guard.update(True)
    assert guard.consecutive == 2 and guard.total == 4
    with pytest.raises(FloatingPointError, match='3 consecutive'):
        guard.update(True, scale=0.5)


@pytest.mark.parametrize('limit', [0, -1, 2.5, True, '3'])
def test_guard_rejects_a_bad_limit(limit):
    with pytest.raises(ValueError, match='max_consecutive_skips'):
        ConsecutiveSkipGuard(limit)


#: the GPU AMP wrapper's tests run its loss scaler on the CPU
needs_cpu_scaler = pytest.mark.skipif(
    not hasattr(torch.amp, 'GradScaler'),
    reason="torch.amp.GradScaler('cpu') is not in this torch "
    f'({torch.__version__}); the wrapper is for GPUs')


def amp_wrapper(monkeypatch, model, limit):
    import mmengine.optim.optimizer.amp_optimizer_wrapper as amp
    monkeypatch.setattr(amp, 'is_cuda_available', lambda: True)
    with pytest.warns(Warning):  # torch.cuda's scaler, disabled without CUDA
        wrapper = SkipNonFiniteAmpOptimWrapper(
            optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
            loss_scale='dynamic', max_consecutive_skips=limit,
            clip_grad=dict(max_norm=1.0))
    wrapper.loss_scaler = torch.amp.GradScaler('cpu', init_scale=2.**10)
    return wrapper


@needs_cpu_scaler
def test_nonfinite_steps_are_skipped_counted_and_persisting_ones_stop(
        monkeypatch):
    torch.manual_seed(0)
    model = nn.Linear(3, 1)
    wrapper = amp_wrapper(monkeypatch, model, limit=3)
    x = torch.randn(4, 3)

    def step(nonfinite):
        loss = model(x).pow(2).mean()
        wrapper.update_params(loss * float('nan') if nonfinite else loss)

    before = model.weight.detach().clone()
    step(False)
    assert not torch.equal(model.weight, before)  # a normal step
    for i in range(2):
        weights = model.weight.detach().clone()
        scale = wrapper.loss_scaler.get_scale()
        step(True)
        assert torch.equal(model.weight, weights)  # skipped
        assert wrapper.loss_scaler.get_scale() == scale / 2  # shrunk
    hub = wrapper.message_hub
    assert hub.get_scalar('train/amp_skipped_steps').current() == 2
    step(False)  # recovers: the run of skips starts again
    step(True)
    step(True)
    with pytest.raises(FloatingPointError, match='3 consecutive'):
        step(True)


@needs_cpu_scaler
def test_nonfinite_loss_goes_through_to_the_scaler_under_amp(monkeypatch):
    torch.manual_seed(0)
    model = build_mmdetr()
    model.train()
    data = preprocess(model, make_batch(num_boxes=(1, 2)), True)
    losses = model(**data, mode='loss')
    losses['loss_bbox'] = losses['loss_bbox'] * float('inf')
    # without AMP: stopped before the optimizer step
    plain = DeferredGradNormOptimWrapper(
        torch.optim.AdamW(model.parameters(), lr=1e-4))
    with plain.optim_context(model):
        pass
    with pytest.raises(FloatingPointError, match='loss_bbox=inf'):
        model.parse_losses(losses)
    # the AMP wrapper's readout leaves it to the scaler
    wrapper = amp_wrapper(monkeypatch, model, limit=10)
    with wrapper.optim_context(model):
        pass
    loss, log_vars = model.parse_losses(losses)
    assert not torch.isfinite(loss) and log_vars['loss_bbox'] == float('inf')
    # the model's class is untouched: mmengine's parse_losses
    assert 'parse_losses' not in type(model).__dict__


@pytest.fixture(scope='module')
def train_tool():
    from helpers import load_tool
    return load_tool('tools/train.py', 'train_tool_amp')


CONFIG = 'configs/detr_r50_8x2_150e_coco.py'


def test_train_tool_amp_on_a_cpu_is_bfloat16_without_a_loss_scaler(
        train_tool, monkeypatch):
    """Without CUDA, --amp trains in bfloat16 through BF16OptimWrapper (no
    loss scaler) where the CPU has bfloat16 instructions, and says why it
    stops where it has none or float16 is asked for."""
    import mmdetr.engine.amp as amp
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    monkeypatch.setattr(amp, 'cpu_bf16_support',
                        lambda: amp.CpuBf16Support(True, False))
    for extra in ([], ['--amp-dtype', 'bfloat16']):
        cfg = train_tool.build_cfg(
            train_tool.parse_args([CONFIG, '--amp', *extra]))
        assert cfg.optim_wrapper.type == 'mmdetr.BF16OptimWrapper'
        assert cfg.optim_wrapper.dtype == 'bfloat16'
        assert 'loss_scale' not in cfg.optim_wrapper
        assert cfg.optim_wrapper.clip_grad == dict(max_norm=0.1, norm_type=2)
    with pytest.raises(SystemExit, match='float16 autocast needs a GPU'):
        train_tool.build_cfg(
            train_tool.parse_args([CONFIG, '--amp', '--amp-dtype',
                                   'float16']))
    monkeypatch.setattr(amp, 'cpu_bf16_support',
                        lambda: amp.CpuBf16Support(False, False))
    monkeypatch.delenv('MMDETR_EMULATED_BF16', raising=False)
    with pytest.raises(SystemExit, match='no bfloat16 instructions'):
        train_tool.build_cfg(train_tool.parse_args([CONFIG, '--amp']))
    with pytest.raises(SystemExit, match='--amp-dtype needs --amp'):
        train_tool.build_cfg(
            train_tool.parse_args([CONFIG, '--amp-dtype', 'bfloat16']))


@pytest.mark.parametrize('dtype,bf16', [('float16', False),
                                        ('bfloat16', True)])
def test_train_tool_amp_uses_the_skipping_wrapper(train_tool, monkeypatch,
                                                  dtype, bf16):
    """With CUDA (faked here: only the config is built), --amp selects
    mmdetr's wrapper with the chosen dtype; the limit is a config key."""
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    monkeypatch.setattr(torch.cuda, 'is_bf16_supported', lambda: bf16)
    cfg = train_tool.build_cfg(train_tool.parse_args([
        CONFIG, '--amp', '--amp-dtype', dtype, '--cfg-options',
        'optim_wrapper.max_consecutive_skips=20'
    ]))
    assert cfg.optim_wrapper.type == 'mmdetr.SkipNonFiniteAmpOptimWrapper'
    assert cfg.optim_wrapper.dtype == dtype
    assert cfg.optim_wrapper.loss_scale == 'dynamic'
    assert cfg.optim_wrapper.max_consecutive_skips == 20
    # the runner's registry, in the config's default scope, finds it
    from mmengine.registry import OPTIM_WRAPPERS
    with OPTIM_WRAPPERS.switch_scope_and_registry(
            cfg.default_scope) as registry:
        assert registry.get(cfg.optim_wrapper.type) is \
            SkipNonFiniteAmpOptimWrapper
    monkeypatch.setattr(torch.cuda, 'is_bf16_supported', lambda: False)
    with pytest.raises(SystemExit, match='no bfloat16 support'):
        train_tool.build_cfg(train_tool.parse_args(
            [CONFIG, '--amp', '--amp-dtype', 'bfloat16']))
