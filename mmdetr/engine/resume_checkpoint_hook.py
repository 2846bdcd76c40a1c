# Copyright (c) mmdetr contributors. All rights reserved.
"""Checkpoints to resume from: every N iterations or M minutes, mid-epoch,
and on a stop signal (preemption), after which training exits with
:data:`EXIT_RESUMABLE`."""
import glob
import logging
import os
import os.path as osp
import re
import time
from typing import Optional, Sequence, Union

import torch.distributed as dist
from mmengine.dist import is_main_process
from mmengine.hooks import Hook
from mmengine.logging import print_log

from mmdetr.engine.stop_signals import (IgnoreSignalsInWorker, StopSignals,
                                        agree, agreement_group)
from mmdetr.registry import HOOKS

# sysexits.h EX_TEMPFAIL: "a temporary failure; the user is invited to
# retry". The run stopped on a signal after writing a checkpoint; the same
# command with --resume continues it.
EXIT_RESUMABLE = 75


@HOOKS.register_module()
class ResumeCheckpointHook(Hook):
    """Write ``resume_iter_{N}.pth`` (N: iterations done) for resuming, and
    stop cleanly on a signal.

    - Periodically, mid-epoch: every ``interval`` iterations and/or every
      ``interval_minutes`` minutes, so a killed run or a dead node loses at
      most that much. The newest ``max_keep_ckpts`` are kept; older ones are
      removed only after the new one is complete.
    - On a stop signal (``signals``; SIGTERM, and SIGUSR1 which SLURM sends
      ahead of a time limit with ``--signal``): every rank finishes the
      iteration in progress, all agree on the same one (the flags of all
      ranks are all-reduced every ``sync_interval`` iterations), a
      checkpoint is written, the loop ends without finishing the epoch and
      the process exits with status ``exit_code`` (:data:`EXIT_RESUMABLE`,
      75). ``tools/train.py CONFIG --resume`` continues exactly there.
      Signals during the write wait for it; data loader workers ignore
      the signals (the training process ends them).

    Checkpoints are written by the runner (atomically by mmdetr's Runner)
    with ``meta`` epoch and iter as mmengine's iteration checkpoints;
    resuming one mid-epoch needs mmdetr's resumable training loops
    (``train_cfg.type='mmdetr.ResumableEpochBasedTrainLoop'`` or
    ``'mmdetr.ResumableIterBasedTrainLoop'``); with another loop this hook
    only warns and does nothing.

    Args:
        interval (int): Save every this many iterations; <= 0: not by
            count. Defaults to -1.
        interval_minutes (float, optional): Save when this many minutes have
            passed since the last save (or the start). Defaults to None.
        max_keep_ckpts (int): How many ``resume_iter_*.pth`` to keep; at
            least 1. Defaults to 2, so that one whole file remains should
            the newest be damaged.
        signals (Sequence[str | int]): The stop signals. Defaults to
            ``('SIGTERM', 'SIGUSR1')``.
        sync_interval (int): Agree on stops and timed saves every this many
            iterations: a stop comes at most this many iterations after the
            signal. Defaults to 1.
        exit_code (int): Exit status after a stop. Defaults to 75.
    """

    priority = 'LOWEST'  # after the logger and mmengine's checkpoints

    def __init__(self,
                 interval: int = -1,
                 interval_minutes: Optional[float] = None,
                 max_keep_ckpts: int = 2,
                 signals: Sequence[Union[str, int]] = ('SIGTERM', 'SIGUSR1'),
                 sync_interval: int = 1,
                 exit_code: int = EXIT_RESUMABLE) -> None:
        if max_keep_ckpts < 1:
            raise ValueError('ResumeCheckpointHook: max_keep_ckpts must be '
                             f'at least 1, got {max_keep_ckpts}')
        if sync_interval < 1:
            raise ValueError('ResumeCheckpointHook: sync_interval must be '
                             f'at least 1, got {sync_interval}')
        if interval_minutes is not None and interval_minutes <= 0:
            raise ValueError('ResumeCheckpointHook: interval_minutes must be '
                             f'positive, got {interval_minutes}')
        self.interval = interval
        self.interval_minutes = interval_minutes
        self.max_keep_ckpts = max_keep_ckpts
        self.stop_signals = StopSignals(signals)
        self.sync_interval = sync_interval
        self.exit_code = exit_code
        self.enabled = False
        self.stopped_at: Optional[int] = None
        self._group = None
        self._last_save = 0.0

    def before_train(self, runner) -> None:
        self.enabled = getattr(runner.train_loop, 'resumable', False)
        if not self.enabled:
            print_log(
                f'ResumeCheckpointHook is off: train_cfg.type is '
                f'{type(runner.train_loop).__name__}, whose mid-epoch '
                'checkpoints would not resume where they were written; use '
                'mmdetr.ResumableEpochBasedTrainLoop or '
                'mmdetr.ResumableIterBasedTrainLoop',
                logger='current', level=logging.WARNING)
            return
        self.out_dir = runner.work_dir
        self._group = agreement_group()
        self._last_save = time.monotonic()
        self.stop_signals.install()
        # undone when the loop ends, also by an exception (mmengine then
        # skips after_run)
        runner.train_loop.on_exit.callback(self._release_signals)
        for loop in (runner.train_loop, runner.val_loop):
            loader = getattr(loop, 'dataloader', None)
            if loader is not None and getattr(loader, 'num_workers', 0) > 0:
                loader.worker_init_fn = IgnoreSignalsInWorker(
                    self.stop_signals.signals, loader.worker_init_fn)
        names = '/'.join(s.name for s in self.stop_signals.signals)
        every = [f'every {self.interval} iterations'] * (self.interval > 0)
        every += [f'every {self.interval_minutes} minutes'
                  ] * (self.interval_minutes is not None)
        print_log(
            f'checkpoints to resume from: {" and ".join(every) or "none"} '
            f'periodically (keeping {self.max_keep_ckpts}), and on '
            f'{names}: then exit status {self.exit_code}',
            logger='current')

    def after_train_iter(self,
                         runner,
                         batch_idx: int,
                         data_batch=None,
                         outputs=None) -> None:
        if not self.enabled:
            return
        done = runner.iter + 1  # iterations finished, this one included
        save = self.interval > 0 and done % self.interval == 0
        stop = False
        if done % self.sync_interval == 0:
            stop, timed = agree([self.stop_signals.requested,
                                 self._time_is_up()], self._group)
            save = save or timed
        if save or stop:
            self._save(runner, done)
            if not stop:  # a signal during the save: this checkpoint will do
                stop, = agree([self.stop_signals.requested], self._group)
        if stop:
            self._stop(runner, done)

    def _time_is_up(self) -> bool:
        return self.interval_minutes is not None and (
            time.monotonic() - self._last_save >= 60 * self.interval_minutes)

    def _save(self, runner, done: int) -> None:
        filename = f'resume_iter_{done}.pth'
        start = time.monotonic()
        with self.stop_signals.saving():
            runner.save_checkpoint(
                self.out_dir, filename, meta=dict(epoch=runner.epoch,
                                                  iter=done),
                by_epoch=False)
            if is_main_process():
                path = osp.join(self.out_dir, filename)
                with open(osp.join(runner.work_dir, 'last_checkpoint'),
                          'w') as f:
                    f.write(path)
                self._remove_old()
        self._last_save = time.monotonic()
        print_log(
            f'saved {filename} in {self._last_save - start:.2f} s',
            logger='current')

    def _remove_old(self) -> None:
        found = []
        for path in glob.glob(osp.join(self.out_dir, 'resume_iter_*.pth')):
            m = re.fullmatch(r'resume_iter_(\d+)\.pth', osp.basename(path))
            if m:
                found.append((int(m.group(1)), path))
        for _, path in sorted(found)[:-self.max_keep_ckpts]:
            os.remove(path)

    def _stop(self, runner, done: int) -> None:
        if self._group is not None:
            # nobody exits before rank 0's file is complete
            dist.barrier(group=self._group)
        names = sorted({s.name for s in self.stop_signals.received})
        why = ', '.join(names) or 'a signal to another rank'
        print_log(
            f'stopping after iteration {done} on {why}: '
            f'resume_iter_{done}.pth written; exit status {self.exit_code}; '
            'run the same command with --resume to continue',
            logger='current', level=logging.WARNING)
        self.stopped_at = done
        runner.train_loop.stop_training = True

    def _release_signals(self) -> None:
        """The signals back to their previous handlers; after a stop in
        distributed training, ignored instead: the launcher ends the other
        ranks (torchrun: SIGTERM) as soon as the first one has exited with
        the stop's status, and a stopped rank on its way out ignores that
        and exits with its own."""
        self.stop_signals.uninstall()
        if self.stopped_at is not None and self._group is not None:
            self.stop_signals.ignore()

    def after_run(self, runner) -> None:
        if self.stopped_at is not None:
            raise SystemExit(self.exit_code)
