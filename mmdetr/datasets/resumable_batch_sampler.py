# Copyright (c) mmdetr contributors. All rights reserved.
"""A batch sampler that can start an epoch at any batch, for exact
mid-epoch resume, and keys every index for per-sample augmentation seeds."""
from typing import Iterator, List, Optional

from mmengine.dataset import InfiniteSampler
from mmengine.registry import DATA_SAMPLERS
from torch.utils.data import BatchSampler, Sampler

from .sample_seed import SampleKey


class _KeyedSampler(Sampler):
    """Yields the wrapped sampler's indices as :class:`SampleKey`\\ s.

    ``draw`` is the epoch for a sampler that covers the data once per epoch;
    for mmengine's :class:`InfiniteSampler` (one endless stream) it is the
    number of whole passes over the data before the index, counted in the
    stream all ranks share, so it does not depend on the number of ranks.
    """

    def __init__(self, sampler: Sampler) -> None:
        self.sampler = sampler
        self.seed: Optional[int] = None
        self.epoch = 0
        self._drawn = 0  # indices taken from an endless stream so far

    @property
    def dataset(self):  # mmdet's AspectRatioBatchSampler reads it
        return self.sampler.dataset

    @property
    def infinite(self) -> bool:
        return isinstance(self.sampler, InfiniteSampler)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        if hasattr(self.sampler, 'set_epoch'):
            self.sampler.set_epoch(epoch)

    def __iter__(self) -> Iterator[int]:
        seed = self.seed
        if seed is None:  # not set up for keyed draws: plain indices
            yield from self.sampler
        elif self.infinite:
            # the stream goes on across iter() calls: count where it is
            s = self.sampler
            for index in s:
                j, self._drawn = self._drawn, self._drawn + 1
                yield SampleKey(index, seed,
                                (s.rank + j * s.world_size) // s.size)
        else:
            epoch = self.epoch
            for index in self.sampler:
                yield SampleKey(index, seed, epoch)

    def reseed(self, seed: int) -> None:
        """Give the wrapped sampler ``seed``; an endless stream starts over
        from its beginning with it."""
        self.sampler.seed = seed
        if self.infinite:
            self.sampler.indices = self.sampler._indices_of_rank()
            self._drawn = 0

    def __len__(self) -> int:
        return len(self.sampler)


class ResumableBatchSampler:
    """Batches of another batch sampler, from a chosen batch on.

    Wraps ``batch_sampler`` (a config built with ``sampler`` and
    ``batch_size``, e.g. mmdet's ``AspectRatioBatchSampler``) or, when it
    is None, torch's ``BatchSampler``. Which batches an epoch has is the
    wrapped one's business; this one only:

    - starts the next pass at batch ``start`` (:meth:`start_at`): the
      batches before it are formed from indices (cheap, no data is loaded)
      and dropped, so the pass continues exactly where an interrupted one
      stopped, whatever the batching rule;
    - once :attr:`seed` is set, yields every index as a :class:`SampleKey`
      of the run's seed and the pass (:class:`SampleSeededDataset` seeds
      the sample's transforms from it).

    ``len()`` is the whole pass's number of batches, as before.

    Args:
        sampler (Sampler): The sampler (given by mmengine's
            ``build_dataloader``).
        batch_size (int): Images per batch (given by mmengine).
        batch_sampler (dict, optional): Config of the batch sampler to wrap.
            Defaults to None: torch's ``BatchSampler``.
        drop_last (bool): With the default batch sampler, drop the last
            incomplete batch. Defaults to False.
    """

    def __init__(self,
                 sampler: Sampler,
                 batch_size: int,
                 batch_sampler: Optional[dict] = None,
                 drop_last: bool = False) -> None:
        self._keyed = _KeyedSampler(sampler)
        if batch_sampler is None:
            self.batch_sampler = BatchSampler(self._keyed, batch_size,
                                              drop_last)
        else:
            self.batch_sampler = DATA_SAMPLERS.build(
                batch_sampler,
                default_args=dict(sampler=self._keyed, batch_size=batch_size))
        self.batch_size = batch_size
        self._start = 0

    @property
    def sampler(self) -> _KeyedSampler:
        """What ``set_epoch`` goes to (mmengine's ``DistSamplerSeedHook``
        looks here)."""
        return self._keyed

    @property
    def infinite(self) -> bool:
        """Whether the stream is endless (mmengine's ``InfiniteSampler``)."""
        return self._keyed.infinite

    @property
    def seed(self) -> Optional[int]:
        """The run's seed in every :class:`SampleKey`; None: plain ints."""
        return self._keyed.seed

    @seed.setter
    def seed(self, seed: Optional[int]) -> None:
        self._keyed.seed = seed

    @property
    def sampler_seed(self) -> Optional[int]:
        """The wrapped sampler's seed (its shuffle order), None if it has
        none."""
        return getattr(self._keyed.sampler, 'seed', None)

    @sampler_seed.setter
    def sampler_seed(self, seed: int) -> None:
        self._keyed.reseed(seed)

    def set_epoch(self, epoch: int) -> None:
        self._keyed.set_epoch(epoch)

    def start_at(self, batch: int) -> None:
        """Make the next pass (the next ``iter()``) begin at batch
        ``batch``; later passes begin at 0 again."""
        self._start = batch

    def __iter__(self) -> Iterator[List[int]]:
        start, self._start = self._start, 0
        for i, batch in enumerate(self.batch_sampler):
            if i >= start:
                yield batch

    def __len__(self) -> int:
        return len(self.batch_sampler)
