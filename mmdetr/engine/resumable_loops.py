# Copyright (c) mmdetr contributors. All rights reserved.
"""mmengine's training loops, resumable mid-epoch to the exact same run.

mmengine's ``EpochBasedTrainLoop`` walks the whole data loader, so a
checkpoint written mid-epoch resumes at the next epoch's start, and its
``IterBasedTrainLoop`` skips what it has seen by loading it again; neither
keeps the random draws of the resumed run equal to the uninterrupted one's.
These loops:

- continue at the checkpoint's batch: the batch sampler of the epoch (same
  shuffle seed, same epoch) skips the batches already trained by index,
  without loading them (:class:`~mmdetr.datasets.ResumableBatchSampler`);
- draw augmentation randomness per sample, seeded from (sampler seed, epoch,
  sample index) (:class:`~mmdetr.datasets.SampleSeededDataset`): the same
  whatever the number of loader workers, and after a resume;
- seed python's, numpy's and torch's generators (every GPU's too) at the
  start of each iteration from (run seed, iteration): dropout and any other
  draw in a step are the same after a resume, and nothing between steps
  (validation, a new loader iterator) moves them;
- write their position's preconditions into every checkpoint (sampler seed,
  dataset size, batches per epoch, batch size, world size) and refuse to
  resume mid-epoch where they differ
  (:class:`~mmdetr.engine.resume_checks.ResumeMismatchError`).

The position itself is the checkpoint's ``meta`` (epoch, iter) as mmengine
writes it, so epoch checkpoints, mmengine's iteration checkpoints and
:class:`~mmdetr.engine.ResumeCheckpointHook`'s all resume exactly.

A hook may stop training after any iteration by setting
``stop_training``; the loop then ends without finishing the epoch (no
``after_train_epoch``, no validation) and calls ``after_train``. A hook
that changes the process (signal handlers) registers its undoing on the
loop's :attr:`on_exit` stack, which runs however ``run`` ends: mmengine
calls ``after_run`` only when training returns.
"""
import copy
import logging
from contextlib import ExitStack
from typing import Optional

from mmengine.dist import get_world_size
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.runner import EpochBasedTrainLoop, IterBasedTrainLoop
from mmengine.runner.base_loop import BaseLoop
from mmengine.runner.utils import calc_dynamic_intervals

from mmdetr.datasets import ResumableBatchSampler, SampleSeededDataset
from mmdetr.engine.resume_checks import ResumeMismatchError
from mmdetr.registry import LOOPS
from mmdetr.datasets.seeding import ITERATION, derive_seed, seed_all


def resumable_dataloader_cfg(cfg):
    """``cfg`` (a training data loader config) with its dataset wrapped in
    :class:`SampleSeededDataset` and its batch sampler in
    :class:`ResumableBatchSampler`; a built ``DataLoader`` is returned as it
    is (it cannot be resumed exactly)."""
    if not isinstance(cfg, dict):
        return cfg
    cfg = copy.deepcopy(cfg)
    # the loop reseeds every iteration: restoring the generators after a
    # sample is loaded in this process would be wasted
    cfg['dataset'] = dict(type=SampleSeededDataset, dataset=cfg['dataset'],
                          restore_generators=False)
    cfg['batch_sampler'] = dict(
        type=ResumableBatchSampler,
        batch_sampler=cfg.get('batch_sampler'),
        # torch refuses drop_last next to a batch sampler: it goes inside
        drop_last=cfg.pop('drop_last', False))
    return cfg


class _TrainStateHook(Hook):
    """Writes the loop's :meth:`train_state` into every checkpoint's meta
    and hands a loaded checkpoint's to the loop."""

    priority = 'VERY_HIGH'

    def __init__(self, loop) -> None:
        self.loop = loop

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        checkpoint.setdefault('meta', {})['train_state'] = \
            self.loop.train_state()

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        self.loop.loaded_state = checkpoint.get('meta', {}).get('train_state')


class _ResumableMixin:
    """What both loops share: set-up, the checks, the per-iteration seed."""

    resumable = True

    def _setup(self) -> None:
        batch_sampler = getattr(self.dataloader, 'batch_sampler', None)
        self.batch_sampler: Optional[ResumableBatchSampler] = (
            batch_sampler
            if isinstance(batch_sampler, ResumableBatchSampler) else None)
        if self.batch_sampler is None:
            print_log(
                'the training DataLoader was built outside the loop: a '
                'resumed run continues at the right iteration, but with '
                'other data order and augmentation than the uninterrupted '
                'run', logger='current', level=logging.WARNING)
        self.loaded_state: Optional[dict] = None
        self.runner.register_hook(_TrainStateHook(self))
        #: callbacks run when :meth:`run` ends, by a return or an exception
        self.on_exit = ExitStack()

    def run(self):
        with self.on_exit:
            return self._run()

    def train_state(self) -> dict:
        """What a resume mid-epoch needs to be the same run: written into
        every checkpoint's ``meta['train_state']``."""
        dataset = self.dataloader.dataset
        return dict(
            sampler_seed=(self.batch_sampler.sampler_seed
                          if self.batch_sampler is not None else None),
            dataset_size=len(dataset),
            batches_per_epoch=len(self.dataloader),
            batch_size=getattr(self.batch_sampler, 'batch_size',
                               self.dataloader.batch_size),
            world_size=get_world_size())

    def _start(self, position: int) -> None:
        """Before the first iteration: check a resumed run's state, set the
        seeds of sampler and samples.

        Args:
            position (int): The batch the epoch (or the endless stream)
                resumes at; 0 for a fresh run or an epoch boundary.
        """
        if self._iter > 0:
            self._check_resume(position)
        if self.batch_sampler is None:
            return
        saved = (self.loaded_state or {}).get('sampler_seed')
        if self._iter > 0 and saved is not None and \
                saved != self.batch_sampler.sampler_seed:
            # the checkpoint's run shuffled with another seed (a config with
            # seed=None draws a new one each run): continue with it
            self.batch_sampler.sampler_seed = saved
        seed = self.batch_sampler.sampler_seed
        self.batch_sampler.seed = self.runner.seed if seed is None else seed

    def _check_resume(self, position: int) -> None:
        state, now = self.loaded_state, self.train_state()
        where = f'resuming at epoch {self._epoch}, iteration {self._iter}'
        if state is None:
            print_log(
                f'{where}: the checkpoint has no train_state (written by '
                'another loop): its data order is assumed to be this '
                'config\'s', logger='current', level=logging.WARNING)
            return
        if state['dataset_size'] != now['dataset_size']:
            raise ResumeMismatchError(
                f'{where}: the training dataset has {now["dataset_size"]} '
                f'samples, the checkpoint\'s run had '
                f'{state["dataset_size"]}: not the same data (check '
                'train_dataloader.dataset: ann_file, filter_cfg, indices)')
        diff = [
            f'{k} {state[k]} in the checkpoint, {now[k]} now'
            for k in ('batches_per_epoch', 'batch_size', 'world_size')
            if state.get(k) != now[k]
        ]
        if not diff:
            return
        if position > 0:
            raise ResumeMismatchError(
                f'{where}, {position} batches into the data: '
                f'{"; ".join(diff)}, so the batches already trained cannot '
                'be told apart from the rest. Resume with the batch size and '
                'number of processes that wrote the checkpoint')
        print_log(
            f'{where}: {"; ".join(diff)}: training goes on from this epoch '
            'boundary, but not as the checkpoint\'s run would have',
            logger='current', level=logging.WARNING)

    def _validate_if_due(self, done: int, total: int) -> None:
        """mmengine's rule: validate every ``val_interval`` epochs (or
        iterations) from ``val_begin`` on, and at the end."""
        self._decide_current_val_interval()
        if (self.runner.val_loop is not None and done >= self.val_begin
                and (done % self.val_interval == 0 or done == total)):
            self.runner.val_loop.run()

    def _seed_iteration(self) -> None:
        seed_all(derive_seed(self.runner.seed, ITERATION, self._iter))


@LOOPS.register_module()
class ResumableEpochBasedTrainLoop(_ResumableMixin, EpochBasedTrainLoop):
    """mmengine's ``EpochBasedTrainLoop`` that resumes mid-epoch exactly
    (see the module's description). Arguments are mmengine's.

    ``train_cfg = dict(type='mmdetr.ResumableEpochBasedTrainLoop',
    max_epochs=..., val_interval=...)``.
    """

    def __init__(self, runner, dataloader, *args, **kwargs) -> None:
        super().__init__(runner, resumable_dataloader_cfg(dataloader), *args,
                         **kwargs)
        self._setup()
        self._epoch_start = 0  # the batch the epoch in progress began at

    def _run(self):
        self.runner.call_hook('before_train')
        # where the epoch resumes, from the checkpoint's epoch and iteration
        # (0 when starting, or at an epoch boundary)
        self._epoch_start = self._iter - self._epoch * len(self.dataloader)
        if self._iter > 0 and not 0 <= self._epoch_start <= len(
                self.dataloader):
            raise ResumeMismatchError(
                f'the checkpoint is at iteration {self._iter} of epoch '
                f'{self._epoch}, but epochs now have {len(self.dataloader)} '
                'batches: the data or batch size differ from its run\'s')
        self._start(self._epoch_start)
        while self._epoch < self._max_epochs and not self.stop_training:
            self.run_epoch()
            if self.stop_training:
                break
            self._validate_if_due(self._epoch, self._max_epochs)
        self.runner.call_hook('after_train')
        return self.runner.model

    def run_epoch(self) -> None:
        """One epoch from batch ``_epoch_start`` on; ends early, without
        ``after_train_epoch``, when a hook sets ``stop_training``."""
        self.runner.call_hook('before_train_epoch')
        self.runner.model.train()
        start = self._epoch_start
        if self.batch_sampler is not None:
            self.batch_sampler.set_epoch(self._epoch)
            self.batch_sampler.start_at(start)
        for idx, data_batch in enumerate(self.dataloader, start=start):
            self.run_iter(idx, data_batch)
            if self.stop_training:
                return
        self.runner.call_hook('after_train_epoch')
        self._epoch += 1
        self._epoch_start = 0

    def run_iter(self, idx, data_batch) -> None:
        self._seed_iteration()
        super().run_iter(idx, data_batch)


@LOOPS.register_module()
class ResumableIterBasedTrainLoop(_ResumableMixin, IterBasedTrainLoop):
    """mmengine's ``IterBasedTrainLoop`` that resumes exactly (see the
    module's description) and skips the data already trained by index
    instead of loading it again. Arguments are mmengine's.

    With a finite sampler (``DefaultSampler``) the data is walked pass after
    pass, each reshuffled with the pass number as its epoch, as mmengine
    does; with ``InfiniteSampler`` it is one endless stream.
    """

    def __init__(self,
                 runner,
                 dataloader,
                 max_iters: int,
                 val_begin: int = 1,
                 val_interval: int = 1000,
                 dynamic_intervals=None) -> None:
        # mmengine's __init__ would start the loader (and its workers) at
        # once; this loop starts it in run(), where it knows the position
        BaseLoop.__init__(self, runner, resumable_dataloader_cfg(dataloader))
        self._max_iters = int(max_iters)
        if self._max_iters != max_iters:
            raise ValueError(f'max_iters must be an integer, got {max_iters}')
        self._max_epochs = 1
        self._epoch = 0
        self._iter = 0
        self.val_begin = val_begin
        self.val_interval = val_interval
        self.stop_training = False
        if hasattr(self.dataloader.dataset, 'metainfo'):
            self.runner.visualizer.dataset_meta = \
                self.dataloader.dataset.metainfo
        self.dynamic_milestones, self.dynamic_intervals = \
            calc_dynamic_intervals(self.val_interval, dynamic_intervals)
        self._setup()

    def _batches(self):
        """Batches from iteration ``_iter`` on, pass after pass."""
        if self.batch_sampler is None or self.batch_sampler.infinite:
            passes, skip = 0, self._iter
        else:
            passes, skip = divmod(self._iter, len(self.dataloader))
        while True:
            if self.batch_sampler is not None:
                self.batch_sampler.set_epoch(passes)
                self.batch_sampler.start_at(skip)
            elif skip:
                print_log(f'loading {skip} batches to skip them',
                          logger='current', level=logging.WARNING)
            for data_batch in self.dataloader:
                if self.batch_sampler is None and skip:
                    skip -= 1
                    continue
                yield data_batch
            skip = 0
            passes += 1

    def _run(self):
        self.runner.call_hook('before_train')
        position = self._iter
        if self.batch_sampler is not None and not self.batch_sampler.infinite:
            position = self._iter % len(self.dataloader)
        self._start(position)
        self.runner.call_hook('before_train_epoch')
        batches = self._batches()
        while self._iter < self._max_iters and not self.stop_training:
            self.runner.model.train()
            self.run_iter(next(batches))
            if self.stop_training:
                break
            self._validate_if_due(self._iter, self._max_iters)
        if not self.stop_training:
            self.runner.call_hook('after_train_epoch')
        self.runner.call_hook('after_train')
        return self.runner.model

    def run_iter(self, data_batch) -> None:
        self._seed_iteration()
        super().run_iter(data_batch)
