# Copyright (c) mmdetr contributors. All rights reserved.
"""Interrupted runs of the demo model end bit-identical to the run that was
never interrupted, with the same loss logged at every iteration: stopped by
SIGTERM mid-epoch (exit status 75, then --resume), killed by SIGKILL
mid-epoch (--resume from the last periodic checkpoint: one iteration is
trained again), with 0 and with 2 loader workers, both compared with the
0-worker run (augmentation does not depend on the workers). 8 images,
batch 2: 4 iterations an epoch, 2 epochs.

tools/train.py runs in this process (its ``main``) where it can, to save
the start-up of a process; the runs killed with SIGKILL are processes."""
import sys

import pytest

from helpers import (assert_same_training, load_tool, run, write_demo_config,
                     write_shapes)

pytestmark = pytest.mark.slow

TRAIN = load_tool('tools/train.py', 'train_tool')
SIGTERM_AT = "dict(type='SignalTrainingHook', iter={})"
SIGKILL_AFTER = "dict(type='KillTrainingHook', iter={})"


def train_here(cfg, work_dir, *extra, status=0):
    """tools/train.py in this process; ``status``: its exit status."""
    argv = [cfg, '--work-dir', str(work_dir), *extra]
    if status == 0:
        TRAIN.main(argv)
        return
    with pytest.raises(SystemExit) as e:
        TRAIN.main(argv)
    assert e.value.code == status


def train_killed(cfg, work_dir, *extra):
    proc = run(sys.executable, 'tools/train.py', cfg, '--work-dir', work_dir,
               *extra, check=False)
    assert proc.returncode == -9, proc.stderr[-4000:]
    return proc.stdout + proc.stderr


@pytest.fixture(scope='module')
def shapes(tmp_path_factory):
    tmp = tmp_path_factory.mktemp('exact_resume')
    root = write_shapes(tmp / 'shapes')
    train_here(write_demo_config(tmp / 'ref.py', root), tmp / 'ref')
    return dict(root=root, ref=str(tmp / 'ref'))


def test_sigterm_then_sigkill_without_workers(shapes, tmp_path, capfd):
    """SIGTERM during iteration 2 (epoch 1); resumed, SIGKILL after
    iteration 7 (epoch 2): the periodic checkpoint of iteration 6 is the
    newest; resumed, to the end."""
    work = tmp_path / 'work'
    cfg = [write_demo_config(tmp_path / f'run{i}.py', shapes['root'],
                             hooks=hooks)
           for i, hooks in enumerate([[SIGTERM_AT.format(2)],
                                      [SIGKILL_AFTER.format(7)], []])]
    train_here(cfg[0], work, status=75)
    assert 'stopping after iteration 2 on SIGTERM' in capfd.readouterr().out
    out = train_killed(cfg[1], work, '--resume')
    assert 'resumed epoch: 0, iter: 2' in out
    train_here(cfg[2], work, '--resume')
    assert 'resumed epoch: 1, iter: 6' in capfd.readouterr().out
    assert_same_training(str(work), shapes['ref'])


def test_sigkill_then_sigterm_with_two_workers(shapes, tmp_path, capfd):
    """Two persistent loader workers. SIGKILL after iteration 5 (epoch 2;
    back to the periodic checkpoint of 3: the end of epoch 1 and its
    validation come again); resumed, SIGTERM during iteration 7; resumed,
    to the end."""
    work = tmp_path / 'work'
    cfg = [write_demo_config(tmp_path / f'run{i}.py', shapes['root'],
                             num_workers=2, hooks=hooks)
           for i, hooks in enumerate([[SIGKILL_AFTER.format(5)],
                                      [SIGTERM_AT.format(7)], []])]
    train_killed(cfg[0], work)
    train_here(cfg[1], work, '--resume', status=75)
    out = capfd.readouterr().out
    assert 'resumed epoch: 0, iter: 3' in out
    assert 'stopping after iteration 7 on SIGTERM' in out
    train_here(cfg[2], work, '--resume')
    assert 'resumed epoch: 1, iter: 7' in capfd.readouterr().out
    assert_same_training(str(work), shapes['ref'])
