# Copyright (c) mmdetr contributors. All rights reserved.
"""A hook for tests: SIGKILL the training process at a chosen point, the way
an out-of-memory killer or a preempted node would."""
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
