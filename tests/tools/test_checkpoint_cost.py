# Copyright (c) mmdetr contributors. All rights reserved.
"""tools/analysis_tools/checkpoint_cost.py on the tiny model: it times
training steps and a checkpoint write and prints the shares."""
import re

import pytest

from helpers import load_tool, write_tiny_train_config

cost = load_tool('tools/analysis_tools/checkpoint_cost.py', 'checkpoint_cost')


@pytest.mark.slow  # builds and trains a model
def test_prints_step_checkpoint_and_shares(coco_root, tmp_path, capsys):
    cfg = write_tiny_train_config(tmp_path / 'cfg.py', coco_root)
    assert cost.main([cfg, '--sizes', '64x96', '--repeats', '1',
                      '--out-dir', str(tmp_path), '--interval-iters',
                      '100', '--gpu-step-time', '0.5', '--disk-mb-s',
                      '100']) == 0
    out = capsys.readouterr().out
    assert re.search(r'training step, 1 images \(64x96\): [\d.]+ s', out)
    size = float(re.search(r'checkpoint: ([\d.]+) MB', out).group(1))
    assert 10 < size < 200  # R18 weights and their AdamW state
    assert re.search(r'here: every 30 min costs [\d.]+%, every 100 '
                     r'iterations [\d.]+%', out)
    # the estimate is the size over the disk speed
    gpu = float(re.search(r'disk: ([\d.]+) s a checkpoint', out).group(1))
    assert gpu == pytest.approx(size / 100, abs=0.01)
    assert list(tmp_path.glob('**/*.pth')) == []  # cleaned up


def test_bad_sizes_are_named():
    with pytest.raises(SystemExit):
        cost.parse_args(['cfg.py', '--sizes', '64by96'])
