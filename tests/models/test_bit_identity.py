# Copyright (c) mmdetr contributors. All rights reserved.
"""Today's code computes, bit for bit, what the fixtures in
tests/fixtures/bit_identity/ recorded: predictions, every loss term and
every gradient of plain DETR and of each training extra (the recipe is in
``recipe.py`` beside them; the fixtures were written before the core and
its extras were reorganised)."""
import contextlib
import io
import json
import os.path as osp

import pytest
import torch

from helpers import TESTS, load_tool

recipe = load_tool(osp.join(TESTS, 'fixtures', 'bit_identity', 'recipe.py'),
                   'bit_identity_recipe')
with open(recipe.DIGESTS) as f:
    FIXTURES = json.load(f)


@pytest.fixture
def one_thread():
    """The fixtures were written with one thread (reductions are then
    summed in one order)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(FIXTURES['meta']['threads'])
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize('name', sorted(FIXTURES['variants']))
def test_outputs_losses_and_gradients_are_the_fixtures(name, one_thread):
    with contextlib.redirect_stdout(io.StringIO()):  # init_weights' log
        got = recipe.record(recipe.variants()[name])
    want = FIXTURES['variants'][name]
    assert set(got) == set(want)
    differ = sorted(k for k in want if got[k] != want[k])
    assert not differ, f'{name}: {len(differ)} digests differ: {differ[:10]}'


def test_the_digests_see_a_change(one_thread, monkeypatch):
    """A change in the last bit of one loss term changes its digest."""
    from mmdetr.models.set_criterion import SetCriterion
    loss = SetCriterion.loss

    def nudged(self, *args, **kwargs):
        cls, box, iou = loss(self, *args, **kwargs)
        return cls, box, torch.nextafter(iou, iou + 1)

    monkeypatch.setattr(SetCriterion, 'loss', nudged)
    with contextlib.redirect_stdout(io.StringIO()):
        got = recipe.record(recipe.variants()['plain'])
    want = FIXTURES['variants']['plain']
    assert got['loss.loss_iou'] != want['loss.loss_iou']
    assert got['loss.loss_cls'] == want['loss.loss_cls']
    assert got['predict.0.scores'] == want['predict.0.scores']


with open(osp.join(osp.dirname(recipe.DIGESTS),
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
    redesign (recorded beside the digests) are today's, so its checkpoints
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
