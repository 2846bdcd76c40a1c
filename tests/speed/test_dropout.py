# Copyright (c) mmdetr contributors. All rights reserved.
"""The FastDropout speed-up: dropout noise from a quarter of the random
numbers, the same distribution as nn.Dropout's, training only."""
import pytest
import torch
import torch.nn as nn

from helpers import build_mmdetr, make_batch, mmdetr_cfg, preprocess
from mmdetr.speed.dropout import BitsDropout, dropout, keep_mask, quantised


def test_quantised_p_is_within_2_to_the_minus_16():
    for p in (0.0, 0.1, 0.25, 1 / 3, 0.5, 0.9):
        assert abs(quantised(p) - p) <= 2**-16
    assert quantised(0.1) == 3277 / 32768


@pytest.mark.parametrize('p', [0.1, 0.5])
def test_each_element_kept_with_probability_1_minus_p(p):
    n = 400_003  # not a multiple of 4: the last word is cut
    keep = keep_mask((n, ), p, generator=torch.Generator().manual_seed(0))
    assert keep.dtype == torch.bool and keep.shape == (n, )
    # 5 standard deviations of a binomial count
    sd = (n * p * (1 - p))**0.5
    assert abs(keep.sum().item() - n * (1 - p)) < 5 * sd
    # each of the four 16-bit lanes of a random word, and neighbours,
    # independent: the kept fraction of each lane and of pairs of
    # consecutive elements as for independent draws
    lanes = keep[:n - n % 4].view(-1, 4).float()
    for lane in lanes.T:
        assert abs(lane.mean().item() - (1 - p)) < 5 * (p * (1 - p) /
                                                        len(lane))**0.5
    both = (keep[:-1] & keep[1:]).float().mean().item()
    assert abs(both - (1 - p)**2) < 0.005


def test_the_generator_decides_the_noise():
    draw = [keep_mask((3, 50), 0.3, generator=torch.Generator().manual_seed(s))
            for s in (1, 1, 2)]
    assert torch.equal(draw[0], draw[1])
    assert not torch.equal(draw[0], draw[2])


def test_dropout_scales_survivors_and_its_gradient_is_the_mask():
    x = torch.randn(6, 70, dtype=torch.float64, requires_grad=True)
    gen = torch.Generator().manual_seed(3)
    y = dropout(x, 0.25, gen)
    keep = keep_mask(x.shape, 0.25, generator=torch.Generator().manual_seed(3))
    scale = 1 / (1 - quantised(0.25))
    torch.testing.assert_close(y, x * keep * scale)
    y.sum().backward()
    torch.testing.assert_close(x.grad, keep.double() * scale)


def test_bits_dropout_is_nn_dropout_in_eval_and_at_p_0():
    x = torch.randn(4, 30)
    m = BitsDropout(0.2)
    m.eval()
    assert torch.equal(m(x), x)
    m.train()
    assert not torch.equal(m(x), x)
    zero = BitsDropout(0.0).train()
    assert torch.equal(zero(x), x)
    # p = 1 is nn.Dropout's: everything dropped
    assert torch.equal(BitsDropout(1.0).train()(x), torch.zeros_like(x))


def test_the_transform_swaps_every_dropout_and_predictions_do_not_move():
    torch.manual_seed(0)
    cfg = mmdetr_cfg(dropout=0.1)
    plain = build_mmdetr(dict(cfg, speedups=[]))
    fast = build_mmdetr(dict(cfg, speedups=[dict(type='FastDropout')]))
    fast.load_state_dict(plain.state_dict())
    dropouts = [m for m in plain.modules() if type(m) is nn.Dropout]
    assert dropouts
    assert not any(type(m) is nn.Dropout for m in fast.modules())
    assert sum(type(m) is BitsDropout for m in fast.modules()) == len(
        dropouts)
    data = make_batch(num_boxes=(2, 3))
    for model in (plain, fast):
        model.eval()
    with torch.no_grad():
        for a, b in zip(plain(**preprocess(plain, data, False), mode='tensor'),
                        fast(**preprocess(fast, data, False), mode='tensor')):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
    # training: the noise is drawn (two draws differ) and trains
    fast.train()
    losses = [fast(**preprocess(fast, data, True), mode='loss')
              for _ in range(2)]
    assert losses[0]['loss_cls'] != losses[1]['loss_cls']
    sum(losses[0].values()).backward()
    assert all(p.grad is None or torch.isfinite(p.grad).all()
               for p in fast.parameters())
