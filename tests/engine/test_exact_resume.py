# Copyright (c) mmdetr contributors. All rights reserved.
"""Interrupted runs of the demo model end bit-identical to the run that was
never interrupted: stopped by SIGTERM mid-epoch (exit status 75, then
--resume), killed by SIGKILL mid-epoch (--resume from the last periodic
checkpoint, one iteration trained again), with 0 and with 2 loader workers
(both compared with the 0-worker run: augmentation does not depend on the
workers). 8 images, batch 2: 4 iterations an epoch, 2 epochs."""
import sys

import pytest

from helpers import (assert_same_training, run, write_demo_config,
                     write_shapes)


def train(cfg, work_dir, *extra, returncode=0):
    proc = run(sys.executable, 'tools/train.py', cfg, '--work-dir', work_dir,
               *extra, check=False)
    assert proc.returncode == returncode, (
        f'{cfg}: exit status {proc.returncode}, expected {returncode}\n'
        f'{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}')
    return proc.stdout + proc.stderr


@pytest.fixture(scope='module')
def shapes(tmp_path_factory):
    tmp = tmp_path_factory.mktemp('exact_resume')
    root = write_shapes(tmp / 'shapes')
    ref_cfg = write_demo_config(tmp / 'ref.py', root)
    train(ref_cfg, tmp / 'ref')
    return dict(root=root, ref=str(tmp / 'ref'))


SIGTERM_AT = "dict(type='SignalTrainingHook', iter={})"
SIGKILL_AFTER = "dict(type='KillTrainingHook', iter={})"


@pytest.mark.slow
@pytest.mark.parametrize('num_workers,first,second', [
    # SIGTERM during iteration 3 (epoch 1), then SIGKILL after iteration 7
    # (epoch 2; the periodic checkpoint of iteration 6 is the latest)
    (0, SIGTERM_AT.format(3), SIGKILL_AFTER.format(7)),
    # SIGKILL after iteration 3 (back to the periodic one of 2), then
    # SIGTERM during iteration 5 (the first of epoch 2)
    (2, SIGKILL_AFTER.format(3), SIGTERM_AT.format(5)),
])
def test_interrupted_twice_ends_bit_identical(shapes, tmp_path, num_workers,
                                              first, second):
    work = tmp_path / 'work'
    status = {'Signal': 75, 'KillTr': -9}
    cfgs = [
        write_demo_config(tmp_path / f'run{i}.py', shapes['root'],
                          num_workers, hooks=hooks)
        for i, hooks in enumerate([[first], [second], []])
    ]
    out = train(cfgs[0], work, returncode=status[first[11:17]])
    out = train(cfgs[1], work, '--resume',
                returncode=status[second[11:17]])
    if 'Signal' in first:
        assert 'resumed epoch: 0, iter: 3' in out
    else:
        assert 'resumed epoch: 0, iter: 2' in out
    out = train(cfgs[2], work, '--resume')
    resumed = 'iter: 6' if 'Signal' in first else 'iter: 5'
    assert f'resumed epoch: 1, {resumed}' in out
    assert_same_training(str(work), shapes['ref'])
