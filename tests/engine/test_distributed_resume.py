# Copyright (c) mmdetr contributors. All rights reserved.
"""Resume with node-local work dirs, and the CUDA determinism variable, as
far as a CPU-only machine shows them (2 processes on gloo)."""
import json
import os.path as osp
import sys

import pytest
from mmengine.config import Config

from helpers import run, run_distributed, write_tiny_train_config
from mmdetr.engine import set_deterministic_env

RECORD = ("custom_imports = dict("
          "imports=['mmdetr', 'helpers.record_start_hook'], "
          'allow_failed_imports=False)\n'
          "custom_hooks = [dict(type='RecordStartHook')]\n"
          'randomness = dict(seed=0, deterministic=True)\n'
          # training only: what is tested happens before the first iteration
          'val_cfg = None\nval_dataloader = None\nval_evaluator = None\n')


@pytest.mark.slow
def test_every_rank_resumes_from_rank0s_choice(coco_root, tmp_path):
    """Rank 0 wrote the checkpoints; rank 1 cannot see them (another node's
    disk). `--resume` still resumes both ranks from the same point: rank 0
    decides which checkpoint, and sends its content to rank 1."""
    cfg = write_tiny_train_config(tmp_path / 'tiny.py', coco_root,
                                  max_epochs=2, val_interval=2, extra=RECORD)
    work_dir = tmp_path / 'work'
    env = dict(RECORD_DIR=str(tmp_path))
    # epoch 1 on "node 0" only, then stop (a preempted job)
    run(sys.executable, 'tools/train.py', cfg, '--work-dir', work_dir,
        '--cfg-options', 'train_cfg.max_epochs=1', env=env)
    assert osp.isfile(work_dir / 'epoch_1.pth')
    first = json.loads((tmp_path / 'start_rank0.json').read_text())
    assert first['iter'] == 0
    # the training process saw the variable cuBLAS needs
    assert first['cublas'] == ':4096:8'

    env['HIDE_CHECKPOINTS_FROM_RANK1'] = str(work_dir)
    env['STOP_AFTER_RECORD'] = '1'
    run_distributed(sys.executable, '-m', 'torch.distributed.run',
                    '--nproc_per_node=2', '--master_port=29547',
                    'tests/helpers/rank_view.py', cfg, '--work-dir', work_dir,
                    '--launcher', 'pytorch', '--resume', env=env)
    starts = [
        json.loads((tmp_path / f'start_rank{r}.json').read_text())
        for r in (0, 1)
    ]
    # 6 images, batch 2: epoch 1 ended at iteration 3
    assert starts[0]['epoch'] == starts[1]['epoch'] == 1
    assert starts[0]['iter'] == starts[1]['iter'] == 3
    assert starts[0]['adam_step'] == starts[1]['adam_step'] == 3
    assert starts[1]['cublas'] == ':4096:8'


def test_deterministic_runs_set_cublas_workspace(monkeypatch):
    monkeypatch.delenv('CUBLAS_WORKSPACE_CONFIG', raising=False)
    set_deterministic_env(Config(dict(randomness=dict(seed=0))))
    import os
    assert 'CUBLAS_WORKSPACE_CONFIG' not in os.environ
    set_deterministic_env(
        Config(dict(randomness=dict(seed=0, deterministic=True))))
    assert os.environ['CUBLAS_WORKSPACE_CONFIG'] == ':4096:8'
    # a value the user chose is kept
    monkeypatch.setenv('CUBLAS_WORKSPACE_CONFIG', ':16:8')
    set_deterministic_env(
        Config(dict(randomness=dict(seed=0, deterministic=True))))
    assert os.environ['CUBLAS_WORKSPACE_CONFIG'] == ':16:8'
