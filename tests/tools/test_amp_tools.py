# Copyright (c) mmdetr contributors. All rights reserved.
"""tools/train.py --amp and tools/test.py --amp on a CPU, end to end on a
tiny model: bfloat16 autocast without a loss scaler, non-finite steps
skipped and, when they persist, stopping training. The processes set
MMDETR_EMULATED_BF16=1, so this runs on CPUs without bfloat16
instructions too (the same numbers, slower)."""
import os.path as osp
import sys

import pytest

from helpers import (copypaste_ap, load_ckpt, run, scalars,
                     write_tiny_train_config)

pytestmark = pytest.mark.slow  # trains in subprocesses

ENV = dict(MMDETR_EMULATED_BF16='1')


@pytest.fixture(scope='module')
def amp_run(coco_root, tmp_path_factory):
    tmp = tmp_path_factory.mktemp('amp')
    cfg = write_tiny_train_config(tmp / 'tiny_amp.py', coco_root,
                                  max_epochs=1)
    work_dir = tmp / 'work'
    proc = run(sys.executable, 'tools/train.py', cfg, '--work-dir',
               work_dir, '--amp', '--amp-dtype', 'bfloat16', env=ENV)
    return dict(cfg=cfg, work_dir=work_dir, output=proc.stdout + proc.stderr)


def test_train_amp_on_a_cpu_trains_in_bfloat16(amp_run):
    assert 'train.py: --amp: bfloat16 autocast' in amp_run['output']
    dumped = open(osp.join(amp_run['work_dir'], 'tiny_amp.py')).read()
    assert 'mmdetr.BF16OptimWrapper' in dumped
    rows = [r for r in scalars(amp_run['work_dir']) if 'loss' in r]
    assert len(rows) == 3  # 6 images, batch 2
    assert all(0 < r['loss'] < 1e3 for r in rows)
    assert 'grad_norm' in rows[-1]  # logged one iteration late
    ckpt = load_ckpt(osp.join(amp_run['work_dir'], 'epoch_1.pth'))
    assert 'loss_scaler' not in ckpt['optimizer']
    weight = ckpt['state_dict']['bbox_head.fc_cls.weight']
    assert str(weight.dtype) == 'torch.float32'


def test_test_amp_evaluates_under_bfloat16(amp_run, tmp_path):
    ckpt = osp.join(amp_run['work_dir'], 'epoch_1.pth')
    proc = run(sys.executable, 'tools/test.py', amp_run['cfg'], ckpt,
               '--eval', 'bbox', '--amp', '--work-dir', tmp_path / 'test',
               env=ENV)
    output = proc.stdout + proc.stderr
    assert 'test.py: --amp: bfloat16 autocast' in output
    assert len(copypaste_ap(output).split()) == 6


def test_persistent_nonfinite_steps_under_amp_stop_training(
        coco_root, tmp_path):
    """Weights poisoned with NaN before iteration 4: its step and the next
    are skipped (counted in the log), and the second in a row stops the
    run with max_consecutive_skips=2; epoch 1's checkpoint is intact."""
    cfg = write_tiny_train_config(
        tmp_path / 'tiny_amp_nan.py', coco_root, max_epochs=2,
        extra="custom_imports = dict(imports=['mmdetr', 'helpers.kill_hook'], "
        'allow_failed_imports=False)\n'
        "custom_hooks = [dict(type='NaNWeightsHook', iter=4)]\n")
    work_dir = tmp_path / 'work'
    proc = run(sys.executable, 'tools/train.py', cfg, '--work-dir', work_dir,
               '--amp', '--cfg-options',
               'optim_wrapper.max_consecutive_skips=2', env=ENV, check=False)
    assert proc.returncode != 0
    assert 'non-finite loss or gradients in 2 consecutive steps' in \
        proc.stderr
    assert 'optimizer step skipped (1 in a row, the limit is 2)' in \
        proc.stdout + proc.stderr
    rows = [r for r in scalars(work_dir) if 'loss' in r]
    assert rows[-1]['step'] == 4 and rows[-1]['amp_skipped_steps'] == 1
    assert osp.isfile(work_dir / 'epoch_1.pth')
