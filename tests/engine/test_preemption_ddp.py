# Copyright (c) mmdetr contributors. All rights reserved.
"""Two processes (torchrun, gloo): SIGTERM to rank 1 alone stops both ranks
after the same iteration with one checkpoint (status 75 each, nobody left
in a collective); --resume ends bit-identical to the uninterrupted 2-process
run. The demo model, 8 images, batch 2 per rank: 2 iterations an epoch,
2 epochs; the signal comes during iteration 3 (the first of epoch 2)."""
import os.path as osp
import shutil
import sys

import pytest

from helpers import assert_same_training, run, write_demo_config, write_shapes
from helpers.tools import GLOO_ABORT, GLOO_ATTEMPTS

pytestmark = pytest.mark.slow


def torchrun(cfg, work_dir, port, *extra, stopped=False):
    """tools/train.py on 2 processes; repeated from the same work dir
    contents when a rank died of :data:`GLOO_ABORT` (up to
    :data:`GLOO_ATTEMPTS` runs)."""
    cmd = (sys.executable, '-m', 'torch.distributed.run',
           '--nproc_per_node=2', f'--master_port={port}', 'tools/train.py',
           cfg, '--work-dir', work_dir, '--launcher', 'pytorch', *extra)
    start = f'{work_dir}.start'
    if osp.isdir(work_dir):
        shutil.copytree(work_dir, start)
    for _ in range(GLOO_ATTEMPTS):
        proc = run(*cmd, check=False)
        out = proc.stdout + proc.stderr
        done = (proc.returncode != 0 and out.count('exitcode  : 75') == 2
                if stopped else proc.returncode == 0)
        if done or GLOO_ABORT not in out:
            break
        shutil.rmtree(work_dir)
        if osp.isdir(start):
            shutil.copytree(start, work_dir)
    assert done, f'exit status {proc.returncode}\n{out[-6000:]}'
    return out


def test_sigterm_to_one_rank_stops_both_and_resumes_exactly(tmp_path):
    root = write_shapes(tmp_path / 'shapes')
    torchrun(write_demo_config(tmp_path / 'ref.py', root), tmp_path / 'ref',
             29561)
    signal_rank1 = "dict(type='SignalTrainingHook', iter=3, rank=1)"
    work = tmp_path / 'work'
    out = torchrun(write_demo_config(tmp_path / 'stop.py', root,
                                     hooks=[signal_rank1]),
                   work, 29563, stopped=True)
    assert out.count('stopping after iteration 3') == 1  # logged by rank 0
    assert 'on a signal to another rank' in out
    assert '[mmdetr rank 1]' in out and '[mmdetr rank 0]' not in out
    # one file: the periodic save of iteration 3 is the stop's too
    assert sorted(p.name for p in work.glob('*.pth')) == [
        'resume_iter_3.pth']
    out = torchrun(write_demo_config(tmp_path / 'resume.py', root), work,
                   29565, '--resume')
    assert 'resumed epoch: 1, iter: 3' in out
    assert_same_training(str(work), str(tmp_path / 'ref'))
