# Copyright (c) mmdetr contributors. All rights reserved.
"""The panoptic demo config with the normal tools on a tiny panoptic shapes
dataset: tools/train.py trains the mask head on a frozen box model,
tools/test.py --eval pq segm prints PQ, SQ and RQ for all, things and stuff
and the things' mask AP; bad panoptic data stops the run before training
and writes over nothing."""
import os
import re
import shutil
import sys

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import MODELS, DefaultScope

from helpers import (PANOPTIC_CLASSES, ROOT, load_ckpt, run, train,
                     write_shapes_panoptic)
from mmdetr.engine import DataCheckError
from mmdetr.engine.hooks import DataCheckHook

CONFIG = f'{ROOT}/configs/detr_r18_shapes_panoptic.py'
BOX_CONFIG = f'{ROOT}/configs/detr_r18_shapes_panoptic_boxes.py'


def write_config(root, data_root, box_ckpt):
    """The demo's panoptic config on ``data_root`` (its train split for
    training and evaluation), from ``box_ckpt``, one epoch."""
    path = root / 'panoptic_tiny.py'
    path.write_text(f'''_base_ = {CONFIG!r}
data_root = {str(data_root) + '/'!r}
split = dict(data_root=data_root, ann_file='annotations/panoptic_train.json',
             data_prefix=dict(img='train/',
                              seg='annotations/panoptic_train/'))
train_dataloader = dict(batch_size=2, dataset=dict(data_root=data_root))
val_dataloader = dict(batch_size=2, dataset=split)
test_dataloader = val_dataloader
val_evaluator = [
    dict(type='CocoPanopticMetric',
         ann_file=data_root + 'annotations/panoptic_train.json',
         seg_prefix=data_root + 'annotations/panoptic_train/'),
    dict(type='CocoMetric', metric=['bbox', 'segm'],
         ann_file=data_root + 'annotations/instances_train.json')
]
test_evaluator = val_evaluator
train_cfg = dict(max_epochs=1, val_interval=1)
default_hooks = dict(logger=dict(interval=1))
load_from = {str(box_ckpt)!r}
''')
    return path


@pytest.fixture(scope='module')
def tiny_run(tmp_path_factory):
    """Four 48-pixel panoptic shapes images, a box model of the demo's
    architecture (random weights) and the config."""
    root = tmp_path_factory.mktemp('panoptic_tools')
    data_root = write_shapes_panoptic(root, num_train=4, img_size=48)
    torch.manual_seed(0)
    with DefaultScope.overwrite_default_scope('mmdet'):
        boxes = MODELS.build(Config.fromfile(BOX_CONFIG).model)
    box_ckpt = root / 'boxes.pth'
    torch.save(dict(state_dict=boxes.state_dict(),
                    meta=dict(dataset_meta=dict(classes=PANOPTIC_CLASSES))),
               box_ckpt)
    return root, data_root, box_ckpt, write_config(root, data_root,
                                                   box_ckpt)


@pytest.mark.slow
def test_train_then_test_print_panoptic_quality(tiny_run):
    root, _, box_ckpt, cfg = tiny_run
    work_dir = root / 'work'
    proc = train(cfg, work_dir)
    ckpt = load_ckpt(str(work_dir / 'epoch_1.pth'))['state_dict']
    boxes = load_ckpt(str(box_ckpt))['state_dict']
    # the detector is the box model's, untouched; the mask head trained
    assert any(k.startswith('mask_head.') for k in ckpt)
    for key, value in boxes.items():
        assert torch.equal(ckpt[key], value), key
    assert re.search(r'loss_mask: [\d.]+ .*loss_dice: [\d.]+', proc.stdout)

    proc = run(sys.executable, 'tools/test.py', cfg,
               work_dir / 'epoch_1.pth', '--eval', 'pq', 'segm',
               '--work-dir', root / 'test')
    out = proc.stdout + proc.stderr
    header = re.search(r'\|\s*\|\s*PQ\s*\|\s*SQ\s*\|\s*RQ\s*\|', out)
    assert header, out[-3000:]
    for row in ('All', 'Things', 'Stuff'):
        assert re.search(rf'\|\s*{row}\s*\|\s*[\d.]+\s*\|', out), row
    assert re.search(r'coco_panoptic/PQ: [\d.]+', out)
    # and the things' mask AP, on the instances json beside the panoptic one
    assert re.search(r'coco/segm_mAP: [\d.-]+', out), out[-3000:]
    assert not re.search(r'coco/bbox_mAP', out)  # --eval segm alone


@pytest.mark.slow
def test_bad_panoptic_data_stops_before_training(tiny_run, tmp_path):
    _, data_root, box_ckpt, _ = tiny_run
    broken = tmp_path / 'panoptic'
    shutil.copytree(data_root, broken)
    png = broken / 'annotations' / 'panoptic_train' / '000001.png'
    os.remove(png)
    cfg = write_config(tmp_path, broken, box_ckpt)
    work_dir = tmp_path / 'work'
    work_dir.mkdir()
    kept = {'epoch_1.pth': b'an earlier run', 'last_checkpoint': b'kept'}
    for name, data in kept.items():
        (work_dir / name).write_bytes(data)

    proc = train(cfg, work_dir, check=False)
    assert proc.returncode != 0
    assert f'segment PNG not found: {png}' in proc.stderr, \
        proc.stderr[-3000:]
    assert 'image_id 2 (000001.png)' in proc.stderr
    assert not re.search(r'Epoch\(train\)', proc.stdout)
    for name, data in kept.items():
        assert (work_dir / name).read_bytes() == data
    assert sorted(p.name for p in work_dir.glob('*.pth')) == ['epoch_1.pth']


def test_things_and_stuff_must_agree_with_the_model():
    """DataCheckHook: labels below num_things_classes are things."""
    model = type('Model', (), dict(num_things_classes=3))()
    things, stuff = PANOPTIC_CLASSES[:3], PANOPTIC_CLASSES[3:]
    ok = dict(classes=things + stuff, thing_classes=things)
    DataCheckHook._check_things(model, ok, 'train', 'p.json')
    for bad in (dict(ok, thing_classes=things[:2]),
                dict(ok, classes=stuff + things)):
        with pytest.raises(DataCheckError,
                           match=r'num_things_classes=3 but the train '
                           r'dataset \(p.json\)'):
            DataCheckHook._check_things(model, bad, 'train', 'p.json')
