# Copyright (c) mmdetr contributors. All rights reserved.
"""SampleSeededDataset: a sample's random transforms depend on its key
alone: not on earlier draws, not on the loader worker that makes them."""
import pickle
import random

import numpy as np
import pytest
import torch
from mmengine.dataset import DefaultSampler
from torch.utils.data import DataLoader

from mmdetr.datasets import (ResumableBatchSampler, SampleKey,
                             SampleSeededDataset)


class RandomDraws:
    """Each item is the draws of python's, numpy's and torch's global
    generators, as a transform pipeline makes them."""

    def __len__(self):
        return 6

    def __getitem__(self, i):
        return (i, random.random(), float(np.random.rand()),
                float(torch.rand(())))


def test_the_draws_depend_on_the_key_only():
    ds = SampleSeededDataset(RandomDraws())
    a = ds[SampleKey(2, seed=5, draw=1)]
    np.random.rand(7)
    random.random()
    torch.rand(3)
    assert ds[SampleKey(2, seed=5, draw=1)] == a
    assert ds[SampleKey(2, seed=5, draw=2)] != a  # another epoch
    assert ds[SampleKey(3, seed=5, draw=1)][1:] != a[1:]  # another sample
    assert ds[SampleKey(2, seed=6, draw=1)] != a  # another run seed
    assert len(ds) == 6


@pytest.mark.parametrize('restore', [True, False])
def test_the_callers_generators_are_left_where_they_were(restore):
    ds = SampleSeededDataset(RandomDraws(), restore_generators=restore)
    random.seed(1), np.random.seed(1), torch.manual_seed(1)
    expected = random.random(), np.random.rand(), torch.rand(())
    random.seed(1), np.random.seed(1), torch.manual_seed(1)
    assert ds[SampleKey(0, 0, 0)] == ds[SampleKey(0, 0, 0)]
    after = random.random(), np.random.rand(), torch.rand(())
    # without restoring, they are where the sample's seed left them
    assert (after == expected) == restore


def test_plain_indices_and_attributes_pass_through():
    inner = RandomDraws()
    inner.metainfo = dict(classes=('a', ))
    ds = SampleSeededDataset(inner)
    assert ds[4][0] == 4
    assert ds.metainfo == dict(classes=('a', ))
    with pytest.raises(AttributeError):
        ds.no_such_thing


def test_keys_and_the_wrapper_survive_pickling():
    key = pickle.loads(pickle.dumps(SampleKey(3, seed=9, draw=2)))
    assert (int(key), key.seed, key.draw) == (3, 9, 2)
    assert [10, 11, 12, 13][key] == 13
    ds = pickle.loads(pickle.dumps(SampleSeededDataset(RandomDraws())))
    assert ds[SampleKey(1, 0, 0)] == SampleSeededDataset(
        RandomDraws())[SampleKey(1, 0, 0)]


def _epoch(num_workers, start=0):
    ds = SampleSeededDataset(RandomDraws())
    bs = ResumableBatchSampler(DefaultSampler(ds, seed=0), 2)
    bs.seed, _ = 11, bs.set_epoch(1)
    bs.start_at(start)
    loader = DataLoader(ds, batch_sampler=bs, num_workers=num_workers,
                        collate_fn=list)
    return [item for batch in loader for item in batch]


@pytest.mark.slow  # loader worker processes
def test_loader_workers_and_a_resumed_pass_draw_the_same():
    single = _epoch(0)
    assert sorted(i for i, *_ in single) == list(range(6))
    assert _epoch(2) == single
    assert _epoch(2, start=1) == single[2:]
