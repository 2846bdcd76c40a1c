# Copyright (c) mmdetr contributors. All rights reserved.
"""tools/test.py --eval: bbox/segm through CocoMetric, pq through
CocoPanopticMetric (the config's, or one for the test dataset)."""
import os.path as osp

import pytest

from helpers import ROOT, load_tool

tool = load_tool('tools/test.py', 'test_tool_eval_metrics')
CONFIG = 'configs/detr_r18_shapes_demo.py'
PANOPTIC_DATA = [
    '--cfg-options', 'test_dataloader.dataset.data_root=data/pan/',
    'test_dataloader.dataset.ann_file=annotations/panoptic_val.json',
    'test_dataloader.dataset.data_prefix.seg=annotations/panoptic_val/',
    'test_evaluator=[]'
]


@pytest.fixture
def ckpt(tmp_path):
    path = tmp_path / 'model.pth'
    path.write_bytes(b'')
    return str(path)


def _evaluators(*argv):
    cfg = tool.build_cfg(tool.parse_args(list(argv)))
    return [dict(ev) for ev in cfg.test_evaluator]


def test_bbox_and_segm_share_the_configs_coco_metric(ckpt):
    (ev, ) = _evaluators(CONFIG, ckpt, '--eval', 'segm', 'bbox')
    assert ev['type'] == 'CocoMetric' and ev['metric'] == ['bbox', 'segm']
    assert ev['ann_file'].endswith('annotations/instances_val.json')
    (ev, ) = _evaluators(CONFIG, ckpt, '--eval', 'bbox')
    assert ev['metric'] == ['bbox']


def test_pq_builds_a_panoptic_metric_for_the_test_dataset(ckpt):
    (ev, ) = _evaluators(CONFIG, ckpt, '--eval', 'pq', *PANOPTIC_DATA)
    assert ev == dict(type='CocoPanopticMetric',
                      ann_file='data/pan/annotations/panoptic_val.json',
                      seg_prefix='data/pan/annotations/panoptic_val/',
                      format_only=False)


def test_pq_with_bbox_and_eval_options(ckpt):
    coco, pan = _evaluators(CONFIG, ckpt, '--eval', 'pq', 'bbox',
                            '--eval-options', 'classwise=True',
                            *PANOPTIC_DATA[:-1])
    assert coco['type'] == 'CocoMetric' and coco['metric'] == ['bbox']
    assert pan['type'] == 'CocoPanopticMetric' and pan['classwise'] is True


def test_pq_uses_the_configs_panoptic_metric(ckpt, tmp_path):
    cfg = tmp_path / 'panoptic_cfg.py'
    cfg.write_text(
        f'_base_ = {osp.join(ROOT, CONFIG)!r}\n'
        'test_evaluator = [dict(type="CocoPanopticMetric", '
        'ann_file="x.json", seg_prefix="segs/")]\n')
    (ev, ) = _evaluators(str(cfg), ckpt, '--eval', 'pq')
    assert (ev['ann_file'], ev['seg_prefix']) == ('x.json', 'segs/')


def test_pq_without_a_png_folder_is_refused(ckpt, capsys):
    with pytest.raises(SystemExit) as e:
        _evaluators(CONFIG, ckpt, '--eval', 'pq')
    assert 'data_prefix.seg' in str(e.value)
    with pytest.raises(SystemExit):
        tool.parse_args([CONFIG, ckpt, '--eval', 'panoptic'])
    assert "invalid choice: 'panoptic'" in capsys.readouterr().err
