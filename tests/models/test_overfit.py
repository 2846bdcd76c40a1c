# Copyright (c) mmdetr contributors. All rights reserved.
"""A tiny DETR learns a few generated images by heart.

The whole learning path runs for real: the demo config's data pipeline and
CocoDataset, Hungarian matching, the set losses, gradients through the
transformer and the backbone, AdamW, then prediction and mmdet's CocoMetric
(pycocotools). If any of it breaks silently (a wrong target box format, a
detached tensor, a label off by one, boxes rescaled wrongly), AP50 on the
training images stays far below 0.9.
"""
import json
import os.path as osp
import time

import pytest
from mmengine.config import Config
from mmengine.runner import Runner

from helpers import ROOT, load_tool

shapes = load_tool('tools/misc/make_shapes_dataset.py', 'make_shapes_dataset')

NUM_IMAGES = 4
IMG_SIZE = 128


@pytest.fixture(scope='module')
def tiny_shapes(tmp_path_factory):
    """Four generated images (one of them empty) and their COCO json."""
    out = tmp_path_factory.mktemp('overfit_shapes')
    shapes.make_dataset(str(out), NUM_IMAGES, 0, seed=1, img_size=IMG_SIZE)
    return out


def overfit_cfg(data_root, work_dir, iters):
    """The demo config, shrunk: a 1/8-width ResNet-18 (3 stages), a 64-d
    transformer with 1 + 2 layers and 10 queries (and the auxiliary head on
    its 64-d encoder output), trained and tested on the
    same 4 images (no flip: the test images are not flipped)."""
    cfg = Config.fromfile(osp.join(ROOT, 'configs',
                                   'detr_r18_shapes_demo.py'))
    train_pipeline = [
        p for p in cfg.train_pipeline if p['type'] != 'RandomFlip'
    ]
    for p in train_pipeline + list(cfg.test_pipeline):
        if p['type'] == 'Resize':
            p['scale'] = (IMG_SIZE, IMG_SIZE)
    data = dict(
        data_root=str(data_root) + '/',
        ann_file='annotations/instances_train.json',
        data_prefix=dict(img='train/'))
    cfg.merge_from_dict(dict(
        work_dir=str(work_dir),
        log_level='WARNING',
        model=dict(
            backbone=dict(base_channels=16),
            bbox_head=dict(
                in_channels=64,  # 16 * 4 channels at stage 3
                num_query=10,
                transformer=dict(
                    embed_dims=64,
                    num_heads=4,
                    num_encoder_layers=1,
                    num_decoder_layers=2,
                    feedforward_channels=128),
                positional_encoding=dict(num_feats=32)),
            # the demo's training-only auxiliary head, on the 64-d memory
            aux_head=dict(in_channels=64, feat_channels=64),
            test_cfg=dict(max_per_img=10)),
        train_dataloader=dict(
            batch_size=NUM_IMAGES,
            num_workers=0,
            persistent_workers=False,
            # mmengine's IterBasedTrainLoop sleeps 2 s whenever a finite
            # sampler runs out, here every iteration; this one never does.
            sampler=dict(type='InfiniteSampler', shuffle=True),
            batch_sampler=None,
            dataset=dict(pipeline=train_pipeline, **data)),
        test_dataloader=dict(
            batch_size=NUM_IMAGES,
            num_workers=0,
            persistent_workers=False,
            dataset=dict(pipeline=cfg.test_pipeline, **data)),
        # the COCO metric alone (the demo config's list also counts
        # duplicates)
        test_evaluator=dict(
            _delete_=True,
            type='CocoMetric',
            metric='bbox',
            ann_file=osp.join(str(data_root), data['ann_file'])),
        optim_wrapper=dict(optimizer=dict(lr=1e-3)),
        param_scheduler=[
            dict(type='LinearLR', start_factor=0.1, by_epoch=False,
                 begin=0, end=20)
        ],
        train_cfg=dict(
            _delete_=True, type='IterBasedTrainLoop', max_iters=iters,
            val_interval=iters + 1),
        default_hooks=dict(
            checkpoint=dict(interval=iters + 1, save_last=False),
            logger=dict(interval=50)),
        randomness=dict(seed=0)))
    cfg.val_dataloader = None
    cfg.val_cfg = None
    cfg.val_evaluator = None
    cfg.dump(osp.join(str(work_dir), 'overfit_cfg.py'))
    return cfg


def test_tiny_detr_overfits_four_images(tiny_shapes, tmp_path, capsys):
    ann = json.load(open(tiny_shapes / 'annotations' /
                                'instances_train.json'))['annotations']
    # one empty image: false positives there cost precision
    assert len({a['image_id'] for a in ann}) == NUM_IMAGES - 1
    start = time.perf_counter()
    runner = Runner.from_cfg(overfit_cfg(tiny_shapes, tmp_path, iters=200))
    runner.train()
    metrics = runner.test()
    elapsed = time.perf_counter() - start
    with capsys.disabled():
        print(f'\noverfit: {len(ann)} objects, {metrics}, {elapsed:.0f} s')
    assert metrics['coco/bbox_mAP_50'] >= 0.9, metrics

    # The image demo draws what was learnt: the objects of an image, by name.
    image_id = min(a['image_id'] for a in ann)
    runner.save_checkpoint(str(tmp_path), 'overfit.pth')
    image_demo = load_tool('tools/demo/image_demo.py', 'image_demo')
    capsys.readouterr()
    assert image_demo.main([
        str(tiny_shapes / 'train' / f'{image_id - 1:06d}.jpg'),
        str(tmp_path / 'overfit_cfg.py'),
        str(tmp_path / 'overfit.pth'), '--out-file',
        str(tmp_path / 'demo.png'), '--score-thr', '0.5'
    ]) == 0
    printed = capsys.readouterr().out
    names = {c['id']: c['name'] for c in json.load(
        open(tiny_shapes / 'annotations' / 'instances_train.json'))[
            'categories']}
    expected = sorted(names[a['category_id']] for a in ann
                      if a['image_id'] == image_id)
    assert expected
    found = sorted(line.split()[0] for line in printed.splitlines()
                   if line.strip().split()[0] in names.values())
    assert found == expected, printed


def test_tiny_detr_overfits_with_dropout(tiny_shapes, tmp_path, capsys,
                                         monkeypatch):
    """The same with DETR's dropout 0.1 everywhere: on a CPU the training
    attention then runs through SoftmaxDropoutAttention (its own backward),
    which must learn as well. Dropout slows the memorising down and makes it
    vary (after 200 iterations, six seeds: AP50 0.73-0.97 with torch's
    attention, 0.46-1.0 with this one; after 400, 0.96-1.0 for both, with
    no-object 0.75). With the demo's heavier weight on would-be duplicates
    it varies more (seeds 0-2: AP50 0.63-1.0 after 400 iterations; 0-3:
    0.875-1.0 after 600; seeds 0 and 3 after 800: 1.0 and 0.968), so this
    trains four times as long."""
    from mmdetr.models import attention
    calls = []
    apply = attention.SoftmaxDropoutAttention.apply
    monkeypatch.setattr(attention.SoftmaxDropoutAttention, 'apply',
                        lambda *args: calls.append(1) or apply(*args))
    iters = 800
    cfg = overfit_cfg(tiny_shapes, tmp_path, iters=iters)
    cfg.model.bbox_head.transformer.dropout = 0.1
    runner = Runner.from_cfg(cfg)
    runner.train()
    # 1 encoder + 2 decoder layers (self and cross): 5 per iteration
    assert len(calls) == iters * 5
    metrics = runner.test()
    with capsys.disabled():
        print(f'\noverfit with dropout: {metrics}')
    assert metrics['coco/bbox_mAP_50'] >= 0.9, metrics
