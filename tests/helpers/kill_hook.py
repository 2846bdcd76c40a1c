# Copyright (c) mmdetr contributors. All rights reserved.
"""Hooks for tests: SIGKILL the training process at a chosen point, the way
an out-of-memory killer or a preempted node would; send it a stop signal
(SIGTERM, SIGUSR1) the way a scheduler does; poison or slow it."""
import os
import signal

import torch

from mmengine.hooks import Hook
from mmengine.registry import HOOKS


@HOOKS.register_module()
class KillTrainingHook(Hook):
    """Kill the process after epoch ``epoch`` ends (after its checkpoint is
    written: this hook has the lowest priority) or, with ``iter``, right
    after that training iteration."""

    priority = 'LOWEST'

    def __init__(self, epoch=None, iter=None):
        self.epoch = epoch
        self.iter = iter

    def after_train_epoch(self, runner):
        # runner.epoch counts finished epochs only after this hook
        if self.epoch is not None and runner.epoch + 1 == self.epoch:
            os.kill(os.getpid(), signal.SIGKILL)

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None):
        if self.iter is not None and runner.iter + 1 == self.iter:
            os.kill(os.getpid(), signal.SIGKILL)


@HOOKS.register_module()
class SignalTrainingHook(Hook):
    """Send ``signal`` to this process during training iteration ``iter``
    (1-based; after its step, before the hooks that follow), on rank
    ``rank`` only (every rank if None); with ``also_while_saving``, once
    more in the middle of the next checkpoint write (a second signal)."""

    priority = 'NORMAL'

    def __init__(self, iter, signal='SIGTERM', rank=None,
                 also_while_saving=False):
        self.iter = iter
        self.signal = signal
        self.rank = rank
        self.also_while_saving = also_while_saving

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None):
        rank = int(os.environ.get('RANK', '0'))
        if runner.iter + 1 != self.iter or self.rank not in (None, rank):
            return
        sig = getattr(signal, self.signal)
        os.kill(os.getpid(), sig)
        if self.also_while_saving:
            _signal_while_writing(sig)


def _signal_while_writing(sig):
    """Send ``sig`` to this process half-way through the next file the
    local backend writes."""
    from mmengine.fileio.backends import LocalBackend
    put = LocalBackend.put

    def put_with_a_signal_inside(backend, obj, filepath):
        with open(filepath, 'wb') as f:
            f.write(obj[:len(obj) // 2])
            os.kill(os.getpid(), sig)
            f.write(obj[len(obj) // 2:])
        LocalBackend.put = put

    LocalBackend.put = put_with_a_signal_inside


@HOOKS.register_module()
class NaNWeightsHook(Hook):
    """Poison the box head's weights with NaN before training iteration
    ``iter`` (1-based), as a diverged model would have them."""

    def __init__(self, iter):
        self.iter = iter

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        if runner.iter + 1 == self.iter:
            model = getattr(runner.model, 'module', runner.model)
            with torch.no_grad():
                model.bbox_head.fc_reg.weight.fill_(float('nan'))


@HOOKS.register_module()
class KillWhileSavingHook(Hook):
    """SIGKILL the process half-way through writing the checkpoint of epoch
    ``epoch``: the bytes hit the disk partly, then the process dies."""

    def __init__(self, epoch):
        self.epoch = epoch

    def before_save_checkpoint(self, runner, checkpoint):
        if checkpoint['meta']['epoch'] != self.epoch:
            return
        from mmengine.fileio.backends import LocalBackend

        def put_half_then_die(backend, obj, filepath):
            with open(filepath, 'wb') as f:
                f.write(obj[:len(obj) // 2])
                f.flush()
                os.fsync(f.fileno())
            os.kill(os.getpid(), signal.SIGKILL)

        LocalBackend.put = put_half_then_die
