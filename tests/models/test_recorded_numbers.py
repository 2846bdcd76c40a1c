# Copyright (c) mmdetr contributors. All rights reserved.
"""Today's code computes, within float32 tolerance, the numbers recorded in
tests/fixtures/recorded_numbers/: predictions, every loss term and every
gradient of plain DETR and of each training extra (``recipe.py`` beside
them says what is recorded and how it is compared). The comparison holds
on any CPU and torch, and fails for a change of the maths."""
import contextlib
import io
import json
import os.path as osp

import pytest
import torch

from helpers import TESTS, load_tool

recipe = load_tool(osp.join(TESTS, 'fixtures', 'recorded_numbers',
                            'recipe.py'), 'recorded_numbers_recipe')
with open(recipe.NUMBERS) as f:
    RECORDED = json.load(f)


@pytest.fixture
def one_thread():
    """One thread, as recorded (the tolerance does not need it; it keeps
    the sums in one order run after run)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(RECORDED['meta']['threads'])
    yield
    torch.set_num_threads(threads)


def _record(name):
    """The numbers of variant ``name`` and their rounding noise."""
    cfg = recipe.variants()[name]
    with contextlib.redirect_stdout(io.StringIO()):  # init_weights' log
        got = recipe.record(cfg)
        noise = recipe.rounding_noise(got, recipe.record_reordered(cfg))
    return got, noise


@pytest.mark.parametrize('name', sorted(RECORDED['variants']))
def test_outputs_losses_and_gradients_are_the_recorded_ones(name, one_thread):
    want = RECORDED['variants'][name]
    got, noise = _record(name)
    differ = recipe.mismatches(got, want, noise=noise)
    assert not differ, (f'{name}: {len(differ)} of {len(want)} differ by '
                        f'more than {recipe.RTOL} relative plus '
                        f'{recipe.NOISE_FACTOR}x their rounding noise: '
                        f'{differ[:10]}')
    # the noise allowance is for the few ill-conditioned numbers only
    loose = [k for k, v in noise.items() if v > recipe.RTOL]
    assert len(loose) <= len(want) // 2, loose
    assert not [k for k in loose if k.startswith(('loss.', 'predict.'))]


def test_a_change_of_one_loss_term_by_1e_4_is_seen(one_thread, monkeypatch):
    """The GIoU loss scaled by 1 + 1e-4: that term and the gradients it
    reaches differ; the classification loss and the predictions do not."""
    from mmdetr.models.detr_head import DETRHead
    loss = DETRHead.loss_single

    def nudged(self, *args, **kwargs):
        cls, box, iou = loss(self, *args, **kwargs)
        return cls, box, iou * (1 + 1e-4)

    monkeypatch.setattr(DETRHead, 'loss_single', nudged)
    want = RECORDED['variants']['plain']
    got, noise = _record('plain')
    differ = recipe.mismatches(got, want, noise=noise)
    names = [d.split(' ')[0] for d in differ]
    assert 'loss.loss_iou' in names
    assert 'loss.loss_cls' not in names and 'loss.loss_bbox' not in names
    assert not [n for n in names if n.startswith(('predict.', 'tensor.'))]


def test_the_comparison_allows_float32_rounding_only():
    """A summary moved by 1e-6 relative passes; by 1e-4, fails, unless its
    rounding noise is of that size; a label that differs fails."""
    t = torch.randn(1000, generator=torch.Generator().manual_seed(0))
    want = {'g': recipe.summary('g', t), 's': recipe.summary('s', t[:3]),
            'predict.0.labels': [1, 2]}
    for factor, ok in ((1 + 1e-6, True), (1 + 1e-4, False)):
        got = {'g': recipe.summary('g', t * factor),
               's': recipe.summary('s', t[:3] * factor),
               'predict.0.labels': [1, 2]}
        assert (recipe.mismatches(got, want) == []) == ok, factor
    one = t.clone()
    one[7] += 0.5  # one element of a thousand
    got = dict(want, g=recipe.summary('g', one))
    assert [d.split(' ')[0] for d in recipe.mismatches(got, want)] == ['g']
    got = dict(want, g=recipe.summary('g', t * (1 + 1e-4)))
    assert recipe.mismatches(got, want, noise={'g': 2e-5}) == []
    assert recipe.mismatches(got, want, noise={'g': 2e-6})
    got = dict(want, **{'predict.0.labels': [2, 1]})
    assert recipe.mismatches(got, want)


with open(osp.join(osp.dirname(recipe.NUMBERS),
                   'state_dict_layouts.json')) as f:
    LAYOUTS = json.load(f)
#: the variants with training extras on the plain variant's network
EXTRAS = ('group_detr', 'duplicate_weight_all', 'duplicate_weight_last',
          'aux_head')


def checkpoint_of(layout, seed=0):
    """A state dict with the keys and shapes of ``layout`` (random values;
    integer counters where BatchNorm keeps them)."""
    gen = torch.Generator().manual_seed(seed)
    return {
        key: torch.zeros(shape, dtype=torch.long)
        if key.endswith('num_batches_tracked') else torch.rand(
            shape, generator=gen) + 0.5
        for key, shape in layout.items()
    }


@pytest.mark.parametrize('name', sorted(LAYOUTS))
def test_checkpoints_of_the_earlier_layout_load_strictly(name):
    """The state-dict keys and shapes every variant had before the
    redesign (recorded beside the numbers) are today's, so its checkpoints
    load strictly into today's model of the same config; the extras'
    checkpoints load into plain DETR too, their training-only parts
    skipped."""
    with contextlib.redirect_stdout(io.StringIO()):
        model = recipe.build(recipe.variants()[name])
        plain = recipe.build(recipe.plain_cfg())
    layout = LAYOUTS[name]
    assert {k: list(v.shape) for k, v in model.state_dict().items()} == layout
    state = checkpoint_of(layout)
    model.load_state_dict(state, strict=True)
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[key].to(value.dtype)), key
    if name in EXTRAS:
        plain.load_state_dict(state, strict=True)
