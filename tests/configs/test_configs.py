# Copyright (c) mmdetr contributors. All rights reserved.
"""Every config in configs/ builds: model (with mmdetr's classes) and
optimizer. Built, not trained; no pretrained weights are loaded."""
import glob
import os.path as osp

import pytest
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from mmengine.registry import MODELS, DefaultScope

from mmdetr.engine import DeferredGradNormOptimWrapper

from helpers import ROOT  # noqa: E402
CONFIGS = sorted(
    p for p in glob.glob(osp.join(ROOT, 'configs', '**', '*.py'),
                         recursive=True) if '_base_' not in p)


def test_there_are_configs():
    assert any(p.endswith('detr_r50_8x2_150e_coco.py') for p in CONFIGS)


@pytest.mark.parametrize('path', CONFIGS, ids=osp.basename)
def test_config_builds(path):
    cfg = Config.fromfile(path)
    with DefaultScope.overwrite_default_scope(cfg.get('default_scope',
                                                      'mmdet')):
        model = MODELS.build(cfg.model)
        optim_wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    assert type(model).__module__.startswith('mmdetr.')
    assert type(model.bbox_head).__module__.startswith('mmdetr.')
    # clipping, in every config, logs its norm without a wait of its own
    assert cfg.optim_wrapper.clip_grad
    assert type(optim_wrapper) is DeferredGradNormOptimWrapper
    # a pretrained backbone learns at a tenth of the lr; one trained from
    # scratch (the shapes demo) at the full lr
    lrs = {g['lr'] for g in optim_wrapper.optimizer.param_groups}
    base_lr = cfg.optim_wrapper.optimizer.lr
    assert base_lr in lrs
    init_cfg = cfg.model.backbone.get('init_cfg') or {}
    if init_cfg.get('type') == 'Pretrained':
        assert any(lr == pytest.approx(base_lr * 0.1) for lr in lrs)
    else:
        assert lrs == {base_lr}
