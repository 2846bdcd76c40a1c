# Copyright (c) mmdetr contributors. All rights reserved.
"""The resumable loops in an iteration-based config: resumed from a
mid-run checkpoint they end with the uninterrupted run's weights, bit for
bit, with an endless sampler and with one walked pass after pass (the
resume then crosses a pass boundary). The tiny model, 6 images, batch 2."""
import pytest
import torch
from mmengine.config import Config

from helpers import load_ckpt, write_tiny_train_config
from mmdetr.engine import Runner

pytestmark = pytest.mark.slow


def train(cfg_path, work_dir, sampler, resume_from=None):
    cfg = Config.fromfile(cfg_path)
    cfg.merge_from_dict({
        'train_cfg': dict(_delete_=True,
                          type='mmdetr.ResumableIterBasedTrainLoop',
                          max_iters=4, val_interval=100),
        'train_dataloader.sampler': dict(type=sampler, shuffle=True),
        'param_scheduler': [dict(type='LinearLR', start_factor=0.5,
                                 by_epoch=False, begin=0, end=3)],
        'default_hooks.checkpoint': dict(by_epoch=False, interval=4),
        'default_hooks.resume_checkpoint.interval': 2,
        'log_processor.by_epoch': False,
        'model.bbox_head.transformer.dropout': 0.1,
        'val_cfg': None, 'val_dataloader': None, 'val_evaluator': None,
    })
    cfg.work_dir = str(work_dir)
    if resume_from is not None:
        cfg.resume, cfg.load_from = True, resume_from
    Runner.from_cfg(cfg).train()
    return load_ckpt(str(work_dir / 'iter_4.pth'))


@pytest.mark.parametrize('sampler', ['InfiniteSampler', 'DefaultSampler'])
def test_iteration_based_resume_is_exact(coco_root, tmp_path, sampler):
    cfg = write_tiny_train_config(tmp_path / 'cfg.py', coco_root)
    ref = train(cfg, tmp_path / 'ref', sampler)
    ours = train(cfg, tmp_path / 'resumed', sampler,
                 resume_from=str(tmp_path / 'ref' / 'resume_iter_2.pth'))
    assert ours['meta']['iter'] == ref['meta']['iter'] == 4
    for key, value in ref['state_dict'].items():
        assert torch.equal(ours['state_dict'][key], value), key
