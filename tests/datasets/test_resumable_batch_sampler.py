# Copyright (c) mmdetr contributors. All rights reserved.
"""ResumableBatchSampler: a pass started at batch k is the tail of the whole
pass, its indices carry (seed, pass), and endless streams count passes the
same on every number of ranks."""
import pytest
from mmengine.dataset import DefaultSampler, InfiniteSampler

from mmdetr.datasets import ResumableBatchSampler, SampleKey


class Sizes:
    """A dataset of images of the given (width, height), as mmdet's
    AspectRatioBatchSampler reads them."""

    def __init__(self, n):
        self.sizes = [(40, 30) if i % 3 else (30, 40) for i in range(n)]

    def __len__(self):
        return len(self.sizes)

    def get_data_info(self, i):
        w, h = self.sizes[i]
        return dict(width=w, height=h)


def keys(batches):
    return [[(int(k), k.seed, k.draw) for k in b] for b in batches]


@pytest.mark.parametrize('inner', [
    None,
    dict(type='mmdet.AspectRatioBatchSampler'),
])
def test_a_pass_started_at_batch_k_is_the_whole_pass_tail(inner):
    sampler = DefaultSampler(Sizes(11), shuffle=True, seed=3)
    bs = ResumableBatchSampler(sampler, 3, batch_sampler=inner)
    bs.seed = 7
    bs.set_epoch(2)
    whole = list(bs)
    assert len(whole) == len(bs) == 4
    assert all(isinstance(k, SampleKey) for b in whole for k in b)
    assert {(k.seed, k.draw) for b in whole for k in b} == {(7, 2)}
    for k in range(len(whole) + 1):
        bs.start_at(k)
        assert keys(bs) == keys(whole[k:])
    # start_at holds for one pass only
    assert keys(bs) == keys(whole)
    # another epoch: another order, keyed with its number
    bs.set_epoch(3)
    other = list(bs)
    assert keys(other) != keys(whole)
    assert {k.draw for b in other for k in b} == {3}


def test_without_a_seed_the_indices_are_plain():
    bs = ResumableBatchSampler(DefaultSampler(Sizes(4), seed=0), 2)
    assert all(type(i) is int for b in bs for i in b)


def test_drop_last_goes_to_the_default_batch_sampler():
    bs = ResumableBatchSampler(DefaultSampler(Sizes(5), seed=0), 2,
                               drop_last=True)
    assert len(bs) == len(list(bs)) == 2


def _stream(rank, world, n_batches, start=0, seed=1):
    sampler = InfiniteSampler(Sizes(5), shuffle=True, seed=seed)
    sampler.rank, sampler.world_size = rank, world
    sampler.indices = sampler._indices_of_rank()
    bs = ResumableBatchSampler(sampler, 2)
    bs.seed = seed
    bs.start_at(start)
    it = iter(bs)
    return [[(int(k), k.draw) for k in next(it)] for _ in range(n_batches)]


def test_endless_stream_counts_whole_passes_like_one_rank_would():
    one = [x for b in _stream(0, 1, 10) for x in b]  # 20 draws, 4 passes
    assert [d for _, d in one] == [i // 5 for i in range(20)]
    # two ranks split the same stream: each draw keeps its pass number
    r0 = [x for b in _stream(0, 2, 5) for x in b]
    r1 = [x for b in _stream(1, 2, 5) for x in b]
    assert r0 == one[0::2] and r1 == one[1::2]
    # resumed at batch 3
    assert _stream(0, 1, 7, start=3) == _stream(0, 1, 10)[3:]


def test_reseeding_the_sampler_restarts_its_stream():
    bs = ResumableBatchSampler(InfiniteSampler(Sizes(5), seed=1), 2)
    bs.seed = 1
    it = iter(bs)
    for _ in range(4):  # into the second pass
        next(it)
    bs.sampler_seed = 4
    assert bs.sampler_seed == 4
    restarted = next(iter(bs))
    fresh = ResumableBatchSampler(InfiniteSampler(Sizes(5), seed=4), 2)
    fresh.seed = 1
    assert [(int(k), k.draw) for k in restarted] == [
        (int(k), k.draw) for k in next(iter(fresh))]
    assert [k.draw for k in restarted] == [0, 0]
