# Copyright (c) mmdetr contributors. All rights reserved.
"""Bad input, faults and safe loading: clear errors, nothing lost, nothing
executed. Each case of the robustness table (docs/robustness.md) has a test
here."""
import json
import os
import os.path as osp
import re
import sys

import pytest
import torch
from mmengine.config import Config

from helpers import (CLASSES, load_ckpt, run, scalars, train,
                     write_coco_split, write_tiny_train_config)
from mmdetr.datasets import AnnotationFileError, CocoDataset
from mmdetr.engine import DataCheckError, Runner


def bad_boxes_root(root):
    """A dataset whose annotations hold every kind of bad box."""
    write_coco_split(str(root), 'train', 4, seed=3, empty=(0, ))
    write_coco_split(str(root), 'val', 2, seed=4, empty=())
    path = osp.join(root, 'annotations', 'train.json')
    with open(path) as f:
        data = json.load(f)
    data['categories'].append(dict(id=99, name='not_configured'))
    img = data['images'][1]
    w = img['width']
    bad = [
        [5, 5, 0, 10],  # zero width
        [5, 5, 10, -3],  # negative height
        [w + 5, 5, 10, 10],  # outside the image
        [float('nan'), 5, 10, 10],  # NaN
        [-4, -4, 20, 20],  # crosses the border: clipped, kept
    ]
    next_id = max(a['id'] for a in data['annotations']) + 1
    for i, bbox in enumerate(bad):
        data['annotations'].append(
            dict(id=next_id + i, image_id=img['id'], category_id=1,
                 bbox=bbox, area=100, iscrowd=0))
    data['annotations'].append(
        dict(id=next_id + 10, image_id=img['id'], category_id=99,
             bbox=[2, 2, 10, 10], area=100, iscrowd=0))
    with open(path, 'w') as f:
        json.dump(data, f)  # NaN is written as the NaN literal
    return root


def build_dataset(root, split='train', **kwargs):
    return CocoDataset(
        data_root=str(root) + '/', ann_file=f'annotations/{split}.json',
        data_prefix=dict(img=f'{split}/'), metainfo=dict(classes=CLASSES),
        filter_cfg=dict(filter_empty_gt=False), pipeline=[], **kwargs)


def test_bad_boxes_are_dropped_or_clipped_and_counted(tmp_path,
                                                      monkeypatch):
    root = bad_boxes_root(tmp_path)
    logged = []
    monkeypatch.setattr('mmdetr.datasets.coco.print_log',
                        lambda msg, **kw: logged.append(msg))
    dataset = build_dataset(root)
    assert len(dataset) == 4  # the image without boxes is kept
    assert len(logged) == 1  # reported once
    msg = logged[0]
    for expected in ('2 with zero or negative width/height',
                     '1 entirely outside their image',
                     '1 with a NaN or infinite coordinate',
                     '1 clipped to their image (kept)',
                     '1 of categories not in metainfo classes'):
        assert expected in msg, msg
    boxes = [b['bbox'] for b in dataset.get_data_info(1)['instances']]
    assert [0.0, 0.0, 16.0, 16.0] in boxes  # the clipped one
    for info in (dataset.get_data_info(i) for i in range(len(dataset))):
        for inst in info['instances']:
            x1, y1, x2, y2 = inst['bbox']
            assert 0 <= x1 < x2 <= info['width']
            assert 0 <= y1 < y2 <= info['height']


@pytest.mark.slow
def test_training_on_bad_boxes_and_empty_images(tmp_path):
    """Trains and evaluates: finite losses, empty images included."""
    root = bad_boxes_root(tmp_path / 'data')
    cfg = Config.fromfile(
        write_tiny_train_config(tmp_path / 'cfg.py', root, max_epochs=1))
    cfg.work_dir = str(tmp_path / 'work')
    runner = Runner.from_cfg(cfg)
    runner.train()
    rows = [r for r in scalars(cfg.work_dir) if 'loss' in r]
    assert rows and all(
        torch.isfinite(torch.tensor(v)) for r in rows
        for k, v in r.items() if 'loss' in k)
    assert len(runner.train_dataloader.dataset) == 4
    assert 'coco/bbox_mAP' in runner.test()


@pytest.mark.parametrize('content,match', [
    (None, 'annotation file not found'),
    ('{"images": [', 'is not valid JSON'),
    ('{"images": [], "categories": []}', 'no "annotations" key'),
    ('[1, 2]', 'expected a JSON object'),
])
def test_bad_annotation_files_are_named(tmp_path, content, match):
    os.makedirs(tmp_path / 'annotations')
    path = tmp_path / 'annotations' / 'train.json'
    if content is not None:
        path.write_text(content)
    with pytest.raises(AnnotationFileError, match=match) as e:
        build_dataset(tmp_path)
    assert 'train.json' in str(e.value)


def test_corrupt_image_names_the_file(tmp_path):
    write_coco_split(str(tmp_path), 'train', 2, seed=5)
    victim = tmp_path / 'train' / 'train_001.jpg'
    victim.write_bytes(b'not a jpeg at all')
    dataset = CocoDataset(
        data_root=str(tmp_path) + '/', ann_file='annotations/train.json',
        data_prefix=dict(img='train/'), metainfo=dict(classes=CLASSES),
        pipeline=[dict(type='LoadImageFromFile')])
    with pytest.raises(RuntimeError, match='train_001.jpg'):
        dataset[1]


def _runner(tmp_path, root, **cfg_options):
    cfg = Config.fromfile(
        write_tiny_train_config(tmp_path / 'cfg.py', root, max_epochs=1))
    cfg.merge_from_dict(cfg_options)
    cfg.work_dir = str(tmp_path / 'work')
    return Runner.from_cfg(cfg)


@pytest.mark.slow
def test_missing_images_stop_training_up_front(tmp_path):
    write_coco_split(str(tmp_path), 'train', 3, seed=6)
    write_coco_split(str(tmp_path), 'val', 2, seed=7)
    os.remove(tmp_path / 'train' / 'train_002.jpg')
    runner = _runner(tmp_path, tmp_path)
    with pytest.raises(DataCheckError, match=r'1 of 3 images .*train_002'):
        runner.train()
    assert not os.path.exists(tmp_path / 'work' / 'epoch_1.pth')


@pytest.mark.slow
def test_num_classes_mismatch_stops_up_front(tmp_path, coco_root):
    runner = _runner(tmp_path, coco_root,
                     **{'model.bbox_head.num_classes': 5})
    with pytest.raises(DataCheckError,
                       match=r'num_classes=5 .* 3 classes'):
        runner.train()


@pytest.mark.slow
def test_non_finite_loss_stops_with_iteration_and_key(tmp_path, coco_root):
    """Poisoned weights at iteration 5 (epoch 2): the run stops naming it,
    epoch 1's checkpoint is intact and --resume carries on from it."""
    cfg = write_tiny_train_config(
        tmp_path / 'nan.py', coco_root, max_epochs=3,
        extra="custom_imports = dict(imports=['mmdetr', 'helpers.kill_hook'], "
        'allow_failed_imports=False)\n'
        "custom_hooks = [dict(type='mmdetr.DataCheckHook'), "
        "dict(type='NaNWeightsHook', iter=5)]\n")
    work_dir = tmp_path / 'work'
    proc = train(cfg, work_dir, check=False)
    assert proc.returncode != 0
    assert re.search(r'non-finite loss at iteration 5: .*loss_bbox=nan',
                     proc.stderr), proc.stderr[-3000:]
    assert not (work_dir / 'epoch_2.pth').exists()
    intact = load_ckpt(str(work_dir / 'epoch_1.pth'))
    assert all(torch.isfinite(v).all()
               for v in intact['state_dict'].values())

    clean = write_tiny_train_config(tmp_path / 'clean.py', coco_root,
                                    max_epochs=3)
    proc = train(clean, work_dir, '--resume')
    assert 'resumed epoch: 1, iter: 3' in proc.stdout + proc.stderr
    assert (work_dir / 'epoch_3.pth').exists()


@pytest.mark.slow
def test_kill_while_saving_leaves_the_previous_checkpoint_latest(
        tmp_path, coco_root):
    cfg = write_tiny_train_config(
        tmp_path / 'kill.py', coco_root, max_epochs=3,
        extra="custom_imports = dict(imports=['mmdetr', 'helpers.kill_hook'], "
        'allow_failed_imports=False)\n'
        "custom_hooks = [dict(type='KillWhileSavingHook', epoch=2)]\n")
    work_dir = tmp_path / 'work'
    proc = train(cfg, work_dir, check=False)
    assert proc.returncode == -9, proc.stderr[-3000:]
    names = os.listdir(work_dir)
    assert 'epoch_1.pth' in names and 'epoch_2.pth' not in names
    assert any(n.startswith('.epoch_2.pth.tmp') for n in names)  # the torso

    clean = write_tiny_train_config(tmp_path / 'clean.py', coco_root,
                                    max_epochs=3)
    proc = train(clean, work_dir, '--resume')
    assert 'resumed epoch: 1, iter: 3' in proc.stdout + proc.stderr
    assert load_ckpt(str(work_dir / 'epoch_3.pth'))['meta']['epoch'] == 3


def _evil_checkpoint(path, marker):

    class Evil:

        def __reduce__(self):
            return (os.system, (f'touch {marker}', ))

    torch.save({'state_dict': {}, 'meta': {'x': Evil()}}, path)


@pytest.mark.slow
def test_crafted_checkpoint_is_refused_by_test_and_resume(
        tmp_path, coco_root):
    marker = tmp_path / 'pwned'
    evil = tmp_path / 'evil.pth'
    _evil_checkpoint(evil, marker)
    cfg = write_tiny_train_config(tmp_path / 'cfg.py', coco_root)
    proc = run(sys.executable, 'tools/test.py', cfg, evil, '--eval', 'bbox',
               '--work-dir', tmp_path / 't', check=False)
    assert proc.returncode != 0
    assert 'refusing to load checkpoint' in proc.stderr
    assert 'evil.pth' in proc.stderr
    proc = train(cfg, tmp_path / 'w', '--resume', evil, check=False)
    assert proc.returncode != 0
    assert 'refusing to load checkpoint' in proc.stderr
    assert not marker.exists()


@pytest.mark.slow
def test_same_seed_deterministic_runs_give_identical_losses(
        tmp_path, coco_root):
    cfg = write_tiny_train_config(tmp_path / 'cfg.py', coco_root,
                                  max_epochs=1)
    losses = []
    for name in ('a', 'b'):
        train(cfg, tmp_path / name, '--cfg-options', 'randomness.seed=7',
              'randomness.deterministic=True')
        losses.append([(r['iter'], r['loss'], r['loss_cls'])
                       for r in scalars(str(tmp_path / name)) if 'loss' in r])
    assert len(losses[0]) == 3
    assert losses[0] == losses[1]
