# Copyright (c) mmdetr contributors. All rights reserved.
"""``model.speedups``: the configs' speed parts change how, not what, DETR
computes; without them the model is torch's and mmdet's modules only."""
import pytest
import torch

from helpers import SPEEDUPS, build_mmdetr, make_batch, mmdetr_cfg, preprocess


def pair(**overrides):
    """The tiny DETR with the configs' speed-ups and without, the same
    weights."""
    torch.manual_seed(0)
    fast = build_mmdetr(mmdetr_cfg(**overrides))
    plain = build_mmdetr(mmdetr_cfg(speedups=[], **overrides))
    plain.load_state_dict(fast.state_dict(), strict=True)
    return fast, plain


def test_without_speedups_the_model_is_plain_pytorch():
    fast, plain = pair()
    assert fast.state_dict().keys() == plain.state_dict().keys()
    assert not [type(m) for m in plain.modules()
                if type(m).__module__.startswith('mmdetr.speed')]
    assert not plain.backbone._forward_pre_hooks
    speed = {type(m).__name__ for m in fast.modules()
             if type(m).__module__.startswith('mmdetr.speed')}
    assert {'FrozenBatchNorm2d', 'ConvFrozenBN2d', 'FastMultiheadAttention',
            'CachedCastLinear'} <= speed
    assert [s['type'] for s in SPEEDUPS] == [
        'FrozenBatchNorms', 'ChannelsLast', 'FusedAttention', 'FastDropout',
        'AutocastWeightCache']


def test_on_and_off_give_the_same_predictions_losses_and_gradients():
    """Without dropout (whose noise FusedAttention draws otherwise): the
    same numbers up to float rounding, the same detections."""
    fast, plain = pair(dropout=0.0)
    data = make_batch(num_boxes=(2, 3))
    for model in (fast, plain):
        model.eval()
    with torch.no_grad():
        out_fast = fast(**preprocess(fast, data, False), mode='tensor')
        out_plain = plain(**preprocess(plain, data, False), mode='tensor')
    for a, b in zip(out_fast, out_plain):
        torch.testing.assert_close(a[-1], b[-1], rtol=1e-5, atol=1e-5)
    dets_fast = fast.test_step(data)
    dets_plain = plain.test_step(data)
    for a, b in zip(dets_fast, dets_plain):
        assert torch.equal(a.pred_instances.labels, b.pred_instances.labels)
        torch.testing.assert_close(a.pred_instances.bboxes,
                                   b.pred_instances.bboxes, rtol=1e-4,
                                   atol=1e-4)
    grads = []
    for model in (fast, plain):
        model.train()
        losses = model(**preprocess(model, data, True), mode='loss')
        sum(losses.values()).backward()
        grads.append((losses, {n: p.grad for n, p in model.named_parameters()
                               if p.grad is not None}))
    (loss_fast, grad_fast), (loss_plain, grad_plain) = grads
    assert loss_fast.keys() == loss_plain.keys()
    for key, value in loss_plain.items():
        torch.testing.assert_close(loss_fast[key], value, rtol=1e-5,
                                   atol=1e-6, msg=key)
    assert grad_fast.keys() == grad_plain.keys() and len(grad_fast) > 50
    for name, grad in grad_plain.items():
        scale = grad.abs().max().item()
        error = (grad_fast[name] - grad).abs().max().item()
        assert error <= 1e-4 * max(scale, 1e-6), name


def test_an_unknown_speedup_is_named():
    with pytest.raises(KeyError, match='FastestAttention'):
        build_mmdetr(mmdetr_cfg(speedups=[dict(type='FastestAttention')]))
