# Copyright (c) mmdetr contributors. All rights reserved.
"""FastMultiheadAttention (the FusedAttention speed-up): torch's attention,
or on CPU training with dropout SoftmaxDropoutAttention, which must compute
exactly dropout(softmax) @ v."""
from contextlib import nullcontext

import pytest
import torch
import torch.nn as nn

from helpers import build_mmdetr, mmdetr_cfg
from mmdetr.speed import attention as attention_module
from mmdetr.speed.attention import (FastMultiheadAttention,
                                    SoftmaxDropoutAttention)
from mmdetr.speed.dropout import keep_mask, quantised

DIMS, HEADS = 16, 4


def make_mha(dropout=0.25, dtype=torch.float64):
    """An nn.MultiheadAttention as FusedAttention leaves it."""
    torch.manual_seed(0)
    mha = nn.MultiheadAttention(DIMS, HEADS, dropout=dropout,
                                batch_first=True)
    with torch.no_grad():  # non-zero biases, so that they are checked too
        mha.in_proj_bias.normal_()
        mha.out_proj.bias.normal_()
    mha.__class__ = FastMultiheadAttention
    mha.fused_dropout = True
    return mha.to(dtype)


def multi_head_attention(mha, query, key, value, mask=None, generator=None):
    """The transformer's call (no attention weights returned)."""
    mha.generator = generator
    return mha(query, key, value, key_padding_mask=mask,
               need_weights=False)[0]


def inputs(bs=2, lq=5, lk=7, dtype=torch.float64, self_attention=False):
    gen = torch.Generator().manual_seed(1)
    query = torch.randn(bs, lq, DIMS, generator=gen, dtype=dtype)
    key = query if self_attention else torch.randn(
        bs, lk, DIMS, generator=gen, dtype=dtype)
    value = torch.randn(bs, key.shape[1], DIMS, generator=gen, dtype=dtype)
    mask = torch.zeros(bs, key.shape[1], dtype=torch.bool)
    mask[1, -3:] = True  # the second sample's last keys are padding
    return query, key, value, mask


def reference(mha, query, key, value, mask, seed):
    """The attention written out: each head's softmax of scaled scores over
    the unpadded keys, elements dropped where keep_mask (drawn in the
    (bs * heads, lq, lk) layout) drops them, survivors scaled by 1/(1-p')
    (p' = p rounded to a multiple of 2**-15)."""
    bs, lq, dims = query.shape
    lk = key.shape[1]
    hd = dims // HEADS
    wq, wk, wv = mha.in_proj_weight.chunk(3)
    bq, bk, bv = mha.in_proj_bias.chunk(3)

    def split(x, w, b):
        y = x @ w.T + b
        return y.view(bs, -1, HEADS, hd).transpose(1, 2)  # (bs, h, l, hd)

    q, k, v = split(query, wq, bq), split(key, wk, bk), split(value, wv, bv)
    scores = q @ k.transpose(-1, -2) / hd**0.5
    scores = scores.masked_fill(mask[:, None, None, :], float('-inf'))
    probs = scores.softmax(-1)
    keep = keep_mask((bs * HEADS, lq, lk), mha.dropout,
                     generator=torch.Generator().manual_seed(seed))
    assert 0 < keep.sum() < keep.numel()
    out = (probs * keep.view(bs, HEADS, lq, lk) /
           (1 - quantised(mha.dropout))) @ v
    out = out.transpose(1, 2).reshape(bs, lq, dims)
    return mha.out_proj(out)


def grads(out, tensors):
    weight = torch.linspace(-1, 1, out.numel(), dtype=out.dtype)
    return torch.autograd.grad((out * weight.view_as(out)).sum(), tensors)


@pytest.mark.parametrize('self_attention', [False, True])
def test_cpu_training_attention_is_dropout_softmax_attention(self_attention):
    mha = make_mha()
    mha.train()
    query, key, value, mask = inputs(self_attention=self_attention)
    leaves = [query, value] + ([] if self_attention else [key])
    for t in leaves:
        t.requires_grad_()
    params = list(mha.parameters())
    ours = multi_head_attention(
        mha, query, key, value, mask,
        generator=torch.Generator().manual_seed(3))
    ref = reference(mha, query, key, value, mask, seed=3)
    torch.testing.assert_close(ours, ref, rtol=1e-10, atol=1e-10)
    for g, g_ref in zip(grads(ours, leaves + params),
                        grads(ref, leaves + params)):
        torch.testing.assert_close(g, g_ref, rtol=1e-10, atol=1e-10)
    # another draw of the noise drops other elements
    other = multi_head_attention(
        mha, query, key, value, mask,
        generator=torch.Generator().manual_seed(4))
    assert not torch.allclose(other, ours)


def test_softmax_dropout_attention_gradcheck():
    gen = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(3, n, 4, generator=gen, dtype=torch.float64,
                           requires_grad=True) for n in (5, 6, 6))
    bias = torch.zeros(3, 1, 6, dtype=torch.float64)
    bias[2, :, -2:] = torch.finfo(torch.float64).min

    def fn(q, k, v):  # the same noise at every call
        return SoftmaxDropoutAttention.apply(
            q, k, v, bias, 0.3, torch.Generator().manual_seed(5))

    assert torch.autograd.gradcheck(fn, (q, k, v))


def test_dropout_keeps_each_weight_with_probability_1_minus_p():
    """With equal scores every weight is 1/lk; a value of ones sums the
    kept ones, each scaled by 1/(1-p): out * (1-p) is the kept fraction."""
    n, lk, p = 4, 20000, 0.1
    q = torch.zeros(n, 1, 2)
    k = torch.zeros(n, lk, 2)
    v = torch.ones(n, lk, 1)
    out = SoftmaxDropoutAttention.apply(q, k, v, None, p, None)
    kept = out.flatten() * (1 - p)
    assert torch.all((kept - (1 - p)).abs() < 0.015), kept


def test_fully_padded_row_stays_finite():
    mha = make_mha(dtype=torch.float32).train()
    query, key, value, mask = inputs(dtype=torch.float32)
    mask[0] = True
    out = multi_head_attention(mha, query, key, value, mask)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize('case', ['eval', 'no_dropout', 'no_grad',
                                  'autocast'])
def test_other_cases_are_torch_attention(case, monkeypatch):
    """Outside CPU training with dropout, the attention is exactly
    nn.MultiheadAttention's (fused kernels); under autocast that is
    evaluation."""
    calls = []
    monkeypatch.setattr(
        attention_module.SoftmaxDropoutAttention, 'apply',
        lambda *args: calls.append(1) or pytest.fail('custom path used'))
    mha = make_mha(dropout=0.0 if case == 'no_dropout' else 0.25,
                   dtype=torch.float32)
    mha.train(case not in ('eval', 'autocast'))
    query, key, value, mask = inputs(dtype=torch.float32)
    with torch.no_grad() if case == 'no_grad' else nullcontext(), (
            torch.autocast('cpu', dtype=torch.bfloat16)
            if case == 'autocast' else nullcontext()):
        if case == 'autocast':  # as the transformer calls it
            query, key, value = (x.bfloat16() for x in (query, key, value))
        torch.manual_seed(7)
        ours = multi_head_attention(mha, query, key, value, mask)
        torch.manual_seed(7)
        ref = nn.MultiheadAttention.forward(
            mha, query, key, value, key_padding_mask=mask,
            need_weights=False)[0]
    torch.testing.assert_close(ours, ref, rtol=0, atol=0)
    assert not calls


def test_bfloat16_autocast_training_is_dropout_softmax_attention(
        monkeypatch):
    """Training under CPU bfloat16 autocast takes the one-pass path too,
    its maps in bfloat16: the written-out attention in float32 with the
    same noise, to bfloat16's precision, and gradients for every
    parameter."""
    calls = []
    apply = SoftmaxDropoutAttention.apply

    def counted(*args):
        calls.append(args[0].dtype)
        return apply(*args)

    monkeypatch.setattr(attention_module.SoftmaxDropoutAttention, 'apply',
                        counted)
    mha = make_mha(dtype=torch.float32).train()
    query, key, value, mask = inputs(dtype=torch.float32)
    ref = reference(mha, query, key, value, mask, seed=3)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        # as the transformer calls it
        ours = multi_head_attention(
            mha, *(x.bfloat16() for x in (query, key, value)), mask,
            generator=torch.Generator().manual_seed(3))
        other = multi_head_attention(
            mha, *(x.bfloat16() for x in (query, key, value)), mask,
            generator=torch.Generator().manual_seed(4))
    assert calls == [torch.bfloat16] * 2
    assert ours.dtype == torch.bfloat16
    torch.testing.assert_close(ours.float(), ref, rtol=0.05, atol=0.05)
    assert (other.float() - ref).abs().max() > 0.1  # another draw
    ours.float().square().sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all()
               and p.grad.abs().sum() > 0 for p in mha.parameters())


def test_cpu_training_path_is_taken(monkeypatch):
    calls = []
    apply = SoftmaxDropoutAttention.apply
    monkeypatch.setattr(attention_module.SoftmaxDropoutAttention, 'apply',
                        lambda *args: calls.append(1) or apply(*args))
    mha = make_mha(dtype=torch.float32).train()
    multi_head_attention(mha, *inputs(dtype=torch.float32))
    assert calls == [1]


def test_the_transform_swaps_every_attention_and_nothing_else():
    """FusedAttention changes the attentions' class only: the same
    parameters and state-dict keys; without it they stay torch's."""
    torch.manual_seed(0)
    fused = build_mmdetr()
    plain = build_mmdetr(mmdetr_cfg(speedups=[]))
    attentions = [m for m in fused.modules()
                  if isinstance(m, nn.MultiheadAttention)]
    assert len(attentions) == 2 + 2 * 2  # encoder 2, decoder 2 x 2
    assert all(type(m) is FastMultiheadAttention and m.fused_dropout
               for m in attentions)
    assert all(type(m) is nn.MultiheadAttention for m in plain.modules()
               if isinstance(m, nn.MultiheadAttention))
    assert fused.state_dict().keys() == plain.state_dict().keys()
