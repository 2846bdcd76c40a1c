# Copyright (c) mmdetr contributors. All rights reserved.
"""configs/mmdet_style_detr_r50_8x2_150e_coco.py, the way an mmdet user
writes a config (mmdet's bases + custom_imports), trains and tests with
mmdetr's components."""
import pytest
from mmengine.config import Config
from mmengine.runner import Runner

from helpers import write_tiny_train_config


@pytest.mark.slow
def test_mmdet_style_config_trains_and_tests_with_mmdetr(coco_root, tmp_path):
    cfg_file = write_tiny_train_config(
        tmp_path / 'user.py', coco_root,
        base='mmdet_style_detr_r50_8x2_150e_coco.py', max_epochs=1)
    cfg = Config.fromfile(cfg_file)
    assert cfg.default_scope == 'mmdet'  # from mmdet's runtime base
    cfg.work_dir = str(tmp_path / 'work')
    runner = Runner.from_cfg(cfg)
    model = runner.model
    head = model.bbox_head
    for obj in (model, head, head.assigner, head.transformer,
                head.positional_encoding, *head.assigner.match_costs):
        assert type(obj).__module__.startswith('mmdetr.'), type(obj)
    assert type(model.backbone).__module__.startswith('mmdet.')
    runner.train()
    metrics = runner.test()
    assert 'coco/bbox_mAP' in metrics
