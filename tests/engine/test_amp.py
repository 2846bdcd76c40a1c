# Copyright (c) mmdetr contributors. All rights reserved.
"""Mixed precision on the device at hand (mmdetr.engine.amp): what a CPU
supports, the checks, bfloat16 training without a loss scaler
(BF16OptimWrapper) and the test loop under autocast. The CPU's bfloat16
support is faked where a test needs one answer; the bfloat16 numbers do
not depend on it."""
import pytest
import torch
import torch.nn as nn
from mmengine.config import Config
from mmengine.model import BaseModel
from mmengine.structures import BaseDataElement

import mmdetr.engine.amp as amp
from helpers import build_mmdetr, make_batch, preprocess
from mmdetr.engine import (AmpTestLoop, AmpUnsupportedError, BF16OptimWrapper,
                           CpuBf16Support, amp_autocast, check_amp)
from mmdetr.engine.bf16_optim_wrapper import nonfinite_gradients
from mmdetr.models.precision import autocast_dtype, autocast_enabled_for


@pytest.fixture
def cpu_has(monkeypatch):
    """``cpu_has(avx512_bf16, amx_bf16)`` fakes this CPU's support."""
    monkeypatch.delenv('MMDETR_EMULATED_BF16', raising=False)

    def fake(avx512_bf16=True, amx_bf16=False):
        monkeypatch.setattr(amp, 'cpu_bf16_support',
                            lambda: CpuBf16Support(avx512_bf16, amx_bf16))
    fake()
    return fake


def test_cpu_support_is_read_from_the_cpu_flags(monkeypatch):
    monkeypatch.setattr(amp, '_cpuinfo_flags',
                        lambda: {'avx512f', 'avx512_bf16'})
    assert amp.cpu_bf16_support() == CpuBf16Support(True, False)
    monkeypatch.setattr(amp, '_cpuinfo_flags',
                        lambda: {'amx_bf16', 'amx_tile', 'avx512_bf16'})
    got = amp.cpu_bf16_support()
    assert got.native and got.describe() == 'amx_bf16 and avx512_bf16'
    monkeypatch.setattr(amp, '_cpuinfo_flags', lambda: {'avx2'})
    assert not amp.cpu_bf16_support().native
    # no /proc/cpuinfo: torch's own checks answer
    monkeypatch.setattr(amp, '_cpuinfo_flags', lambda: None)
    assert isinstance(amp.cpu_bf16_support().native, bool)


def test_check_amp_on_a_cpu(cpu_has, monkeypatch):
    assert check_amp('cpu') == torch.bfloat16
    assert check_amp('cpu', 'bfloat16') == torch.bfloat16
    with pytest.raises(AmpUnsupportedError, match='needs a GPU'):
        check_amp('cpu', 'float16')
    with pytest.raises(AmpUnsupportedError, match='float16 or bfloat16'):
        check_amp('cpu', 'float32')
    cpu_has(False, False)
    with pytest.raises(AmpUnsupportedError,
                       match='no bfloat16 instructions.*without --amp'):
        check_amp('cpu')
    monkeypatch.setenv('MMDETR_EMULATED_BF16', '1')  # asked for: runs
    assert check_amp('cpu') == torch.bfloat16
    cpu_has(False, True)
    monkeypatch.delenv('MMDETR_EMULATED_BF16')
    assert check_amp('cpu') == torch.bfloat16


def test_check_amp_on_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    with pytest.raises(AmpUnsupportedError, match='no CUDA device'):
        check_amp('cuda')
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    monkeypatch.setattr(torch.cuda, 'is_bf16_supported', lambda: False)
    assert check_amp('cuda:0') == torch.float16
    with pytest.raises(AmpUnsupportedError, match='no bfloat16 support'):
        check_amp('cuda', 'bfloat16')


def test_amp_autocast_is_the_switch_for_any_inference(cpu_has):
    """What DetInferencer, image_demo and tools/test.py --amp use: the
    model's float32 parts stay float32 inside."""
    torch.manual_seed(0)
    model = build_mmdetr().eval()
    data = preprocess(model, make_batch(num_boxes=(1, 1)), False)
    with amp_autocast('cpu') as dtype:
        assert dtype == torch.bfloat16
        assert autocast_enabled_for('cpu')
        assert autocast_dtype('cpu') == torch.bfloat16
        results = model(**data, mode="predict")
    assert not autocast_enabled_for('cpu')
    pred = results[0].pred_instances
    assert pred.bboxes.dtype == pred.scores.dtype == torch.float32
    cpu_has(False, False)
    with pytest.raises(AmpUnsupportedError):
        with amp_autocast('cpu'):
            pytest.fail('entered without bfloat16 support')


class Net(BaseModel):
    """One linear layer as an mmengine model (the wrapper's loss readout
    takes over its ``parse_losses``)."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 1)
        self.weight = self.fc.weight

    def forward(self, x):
        return self.fc(x)


def linear_wrapper(limit=3, clip=True):
    torch.manual_seed(0)
    model = Net()
    wrapper = BF16OptimWrapper(
        optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
        max_consecutive_skips=limit,
        clip_grad=dict(max_norm=1.0) if clip else None)
    return model, wrapper


def test_bf16_wrapper_autocasts_and_steps(cpu_has):
    model, wrapper = linear_wrapper()
    x = torch.randn(4, 3)
    before = model.weight.detach().clone()
    with wrapper.optim_context(model):
        out = model(x)
    assert out.dtype == torch.bfloat16  # the forward ran under autocast
    assert model.weight.dtype == torch.float32  # float32 weights
    wrapper.update_params(out.float().pow(2).mean())
    assert not torch.equal(model.weight, before)
    assert model.weight.grad is None or not model.weight.grad.any()
    # the clipped norm is left for the next step's readout, unread
    name, norm = wrapper.pop_grad_norm()
    assert name == 'grad_norm' and torch.isfinite(norm)
    assert not hasattr(wrapper, 'loss_scaler')  # no loss scaling
    sgd = torch.optim.SGD([nn.Parameter(torch.ones(1))], lr=0.1)
    assert wrapper.state_dict().keys() == sgd.state_dict().keys()


def test_bf16_wrapper_skips_counts_and_stops_on_nonfinite_steps(cpu_has):
    """The policy of SkipNonFiniteAmpOptimWrapper, without a scaler."""
    model, wrapper = linear_wrapper(limit=3)
    x = torch.randn(4, 3)

    def step(nonfinite):
        with wrapper.optim_context(model):
            loss = model(x).float().pow(2).mean()
        wrapper.update_params(loss * float('nan') if nonfinite else loss)

    step(False)
    for _ in range(2):
        weights = model.weight.detach().clone()
        step(True)
        assert torch.equal(model.weight, weights)  # skipped
    hub = wrapper.message_hub
    assert hub.get_scalar('train/amp_skipped_steps').current() == 2
    step(False)  # a good step ends the run of skips
    weights = model.weight.detach().clone()
    step(True)
    step(True)
    with pytest.raises(FloatingPointError,
                       match=r'3 consecutive steps .*\(each skipped\)'):
        step(True)
    assert torch.equal(model.weight, weights)


def test_bf16_wrapper_lets_a_nonfinite_loss_through(cpu_has):
    """The one-copy loss readout does not stop at a non-finite loss under
    this wrapper: the gradient check skips the step."""
    torch.manual_seed(0)
    model = build_mmdetr().train()
    wrapper = BF16OptimWrapper(
        optimizer=torch.optim.AdamW(model.parameters(), lr=1e-4))
    data = preprocess(model, make_batch(num_boxes=(1, 2)), True)
    with wrapper.optim_context(model):
        losses = model(**data, mode='loss')
    assert all(v.dtype == torch.float32 for v in losses.values())
    losses['loss_bbox'] = losses['loss_bbox'] * float('inf')
    loss, log_vars = model.parse_losses(losses)
    assert log_vars['loss_bbox'] == float('inf')
    weights = model.bbox_head.fc_cls.weight.detach().clone()
    wrapper.update_params(loss)
    assert torch.equal(model.bbox_head.fc_cls.weight, weights)
    assert wrapper.skip_guard.total == 1


@pytest.mark.parametrize('kernel', [True, False])
def test_nonfinite_gradients_finds_inf_and_nan_and_keeps_values(
        kernel, monkeypatch):
    """With torch's fused check, and without it (torch 2.1 has no CPU
    kernel for it)."""
    if not kernel:
        def missing(*args):
            raise NotImplementedError('no CPU kernel')
        monkeypatch.setattr(torch, '_amp_foreach_non_finite_check_and_'
                            'unscale_', missing)
    params = [nn.Parameter(torch.ones(3)) for _ in range(3)]
    for p, g in zip(params, ([1., 2., 3.], [4., 5., 6.], [7., 8., 9.])):
        p.grad = torch.tensor(g)
    assert nonfinite_gradients(params).item() == 0
    assert torch.equal(params[1].grad, torch.tensor([4., 5., 6.]))
    params[2].grad[1] = float('nan')
    assert nonfinite_gradients(params).item() > 0
    params[2].grad[1] = float('-inf')
    assert nonfinite_gradients(params).item() > 0
    assert nonfinite_gradients([nn.Parameter(torch.ones(1))]).item() == 0


def test_bf16_wrapper_rejects_float16_and_checks_the_cpu(cpu_has):
    with pytest.raises(ValueError, match='float16 needs loss scaling'):
        BF16OptimWrapper(optimizer=torch.optim.SGD(
            [nn.Parameter(torch.ones(1))], lr=0.1), dtype='float16')
    model, wrapper = linear_wrapper()
    cpu_has(False, False)
    with pytest.raises(AmpUnsupportedError, match='no bfloat16'):
        with wrapper.optim_context(model):
            pass
    # a GPU run's loss scaler state is dropped on resume
    state = dict(wrapper.state_dict(), loss_scaler=dict(scale=1024.))
    wrapper.load_state_dict(state)


def test_test_config_selects_the_amp_loop(cpu_has, monkeypatch):
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    cfg = Config(dict(test_cfg=dict(type='TestLoop', fp16=False)))
    assert amp.amp_test_config(cfg) == torch.bfloat16
    assert cfg.test_cfg == dict(type='mmdetr.AmpTestLoop', dtype='bfloat16')
    cfg = Config(dict(test_cfg=dict(type='MyLoop')))
    with pytest.raises(AmpUnsupportedError, match='test_cfg.type'):
        amp.amp_test_config(cfg)
    cfg = Config(dict(optim_wrapper=dict(type='MyWrapper')))
    with pytest.raises(AmpUnsupportedError, match='optim_wrapper.type'):
        amp.amp_train_config(cfg)


def test_amp_test_loop_runs_the_test_step_under_autocast(cpu_has):
    """The loop's iteration runs the model under autocast of its dtype
    (mmengine's own fp16 autocast inside keeps it)."""
    seen = []

    class Model(nn.Linear):
        def test_step(self, data):
            seen.append((autocast_enabled_for('cpu'),
                         autocast_dtype('cpu'),
                         self(data).dtype))
            return [BaseDataElement(value=1)]

    loop = AmpTestLoop.__new__(AmpTestLoop)
    loop._runner = type('Runner', (), dict(
        model=Model(2, 2), call_hook=lambda *a, **k: None))()
    loop.fp16 = True
    loop.test_loss = {}
    loop.evaluator = type('Evaluator', (), dict(
        process=lambda self, **k: None))()
    loop.device = torch.device('cpu')
    loop.amp_dtype = torch.bfloat16
    loop.run_iter(0, torch.ones(1, 2))
    assert seen == [(True, torch.bfloat16, torch.bfloat16)]
