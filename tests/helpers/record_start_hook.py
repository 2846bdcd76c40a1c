# Copyright (c) mmdetr contributors. All rights reserved.
"""A hook for tests: record where each rank starts training."""
import json
import os
import os.path as osp
import sys

from mmengine.hooks import Hook
from mmengine.registry import HOOKS


@HOOKS.register_module()
class RecordStartHook(Hook):
    """Write ``start_rank{RANK}.json`` to ``$RECORD_DIR`` before training:
    iteration, epoch, the optimizer's step count, and the
    CUBLAS_WORKSPACE_CONFIG the process sees. With ``$STOP_AFTER_RECORD``
    set, the process then ends (exit status 0): the rest of the training is
    not what the test looks at."""

    def before_train(self, runner) -> None:
        state = runner.optim_wrapper.optimizer.state
        steps = [float(s['step']) for s in state.values() if 'step' in s]
        record = dict(
            iter=runner.iter, epoch=runner.epoch,
            adam_step=max(steps, default=0.0),
            cublas=os.environ.get('CUBLAS_WORKSPACE_CONFIG'))
        rank = os.environ.get('RANK', '0')
        with open(osp.join(os.environ['RECORD_DIR'],
                           f'start_rank{rank}.json'), 'w') as f:
            json.dump(record, f)
        if os.environ.get('STOP_AFTER_RECORD'):
            sys.exit(0)
