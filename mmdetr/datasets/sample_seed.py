# Copyright (c) mmdetr contributors. All rights reserved.
"""Augmentation randomness per sample: a sample's random flips, crops and
scales depend on (seed, pass over the data, sample index) only.

The transforms of mmcv/mmdet draw from the global python/numpy/torch
generators. In a loader worker those generators run on from the worker's
seed, so what a sample gets depends on which worker loads it and on what
that worker loaded before: a resumed run, or one with another
``num_workers``, augments differently. Here every sample is transformed
with the generators seeded from its key instead.
"""
from mmengine.registry import DATASETS
from torch.utils.data import get_worker_info

from .seeding import SAMPLE, derive_seed, seeded_cpu_generators


class SampleKey(int):
    """A dataset index that carries the key of its random draws.

    It is an ``int`` (samplers, batch samplers and datasets index with it as
    usual) and also says which run seed and which pass over the data it was
    drawn in. It pickles with both, so it reaches loader workers intact.

    Args:
        index (int): The dataset index.
        seed (int): The run's seed.
        draw (int): The pass over the data it belongs to (the epoch, or for
            an endless sampler the number of whole passes before it).
    """

    def __new__(cls, index: int, seed: int, draw: int) -> 'SampleKey':
        key = super().__new__(cls, index)
        key.seed = seed
        key.draw = draw
        return key

    def __reduce__(self):
        return (SampleKey, (int(self), self.seed, self.draw))

    def __repr__(self) -> str:
        return f'SampleKey({int(self)}, seed={self.seed}, draw={self.draw})'


class SampleSeededDataset:
    """Wraps a dataset: item :class:`SampleKey` ``k`` is the wrapped
    dataset's item ``int(k)``, transformed with python's, numpy's and
    torch's CPU generators seeded from ``(k.seed, k.draw, int(k))``; a plain
    ``int`` index is passed through untouched. Everything else (``len``,
    ``metainfo``, ``get_data_info``, ...) is the wrapped dataset's.

    Args:
        dataset (Dataset | dict): The dataset, or its config.
        restore_generators (bool): Put the generators back afterwards when
            loading in the training process (``num_workers=0``), so the
            training step's stream does not move. mmdetr's resumable loops
            reseed every iteration and turn it off (it costs about 0.1 ms
            a sample). Loader workers never restore: nothing else draws
            there. Defaults to True.
    """

    def __init__(self, dataset, restore_generators: bool = True) -> None:
        if isinstance(dataset, dict):
            dataset = DATASETS.build(dataset)
        self.dataset = dataset
        self.restore_generators = restore_generators

    def __getitem__(self, idx):
        if not isinstance(idx, SampleKey):
            return self.dataset[idx]
        restore = self.restore_generators and get_worker_info() is None
        seed = derive_seed(idx.seed, SAMPLE, idx.draw, int(idx))
        with seeded_cpu_generators(seed, restore):
            return self.dataset[int(idx)]

    def __len__(self) -> int:
        return len(self.dataset)

    def __getattr__(self, name: str):
        if name == 'dataset':  # not set yet (unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.dataset, name)

    def __repr__(self) -> str:
        return f'SampleSeededDataset({self.dataset!r})'
