# Copyright (c) mmdetr contributors. All rights reserved.
"""A hook for tests: SIGKILL the training process at a chosen point, the way
an out-of-memory killer or a preempted node would."""
import os
import signal

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
