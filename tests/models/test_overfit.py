# Copyright (c) mmdetr contributors. All rights reserved.
"""A tiny DETR learns a few generated images by heart.

The whole learning path runs for real: mmdet's data pipeline and
CocoDataset, Hungarian matching, the set losses, gradients through the
transformer and the backbone, AdamW, then prediction and mmdet's CocoMetric
(pycocotools), with a plain DETR of its own (the COCO recipe, shrunk). If any of it breaks silently (a wrong target box format, a
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
    """The COCO recipe shrunk to a plain DETR that trains from scratch: a
    1/8-width ResNet-18 cut at stride 16 with trainable BN, a 64-d
    transformer with 1 + 2 layers and 10 queries, trained and tested on the
    same 4 images (no augmentation)."""
    cfg = Config.fromfile(osp.join(ROOT, 'configs',
                                   'detr_r50_8x2_150e_coco.py'))
    pipeline = [
        dict(type='LoadImageFromFile'),
        dict(type='LoadAnnotations', with_bbox=True),
        dict(type='Resize', scale=(IMG_SIZE, IMG_SIZE), keep_ratio=True),
        dict(type='PackDetInputs')
    ]
    data = dict(
        data_root=str(data_root) + '/',
        ann_file='annotations/instances_train.json',
        data_prefix=dict(img='train/'))
    cfg.merge_from_dict(dict(
        work_dir=str(work_dir),
        log_level='WARNING',
        model=dict(
            backbone=dict(
                depth=18, base_channels=16, num_stages=3, strides=(1, 2, 2),
                dilations=(1, 1, 1), out_indices=(2, ), frozen_stages=-1,
                norm_cfg=dict(type='BN', requires_grad=True),
                norm_eval=False, zero_init_residual=False, init_cfg=None),
            bbox_head=dict(
                num_classes=len(shapes.CLASSES),
                in_channels=64,  # 16 * 4 channels at stage 3
                num_query=10,
                transformer=dict(
                    embed_dims=64,
                    num_heads=4,
                    num_encoder_layers=1,
                    num_decoder_layers=2,
                    feedforward_channels=128,
                    dropout=0.0),
                positional_encoding=dict(num_feats=32),
                loss_cls=dict(bg_cls_weight=0.75)),
            test_cfg=dict(max_per_img=10)),
        train_dataloader=dict(
            batch_size=NUM_IMAGES,
            num_workers=0,
            persistent_workers=False,
            # mmengine's IterBasedTrainLoop sleeps 2 s whenever a finite
            # sampler runs out, here every iteration; this one never does.
            sampler=dict(type='InfiniteSampler', shuffle=True),
            batch_sampler=None,
            dataset=dict(
                metainfo=dict(classes=shapes.CLASSES),
                filter_cfg=dict(filter_empty_gt=False),
                pipeline=pipeline, **data)),
        test_dataloader=dict(
            batch_size=NUM_IMAGES,
            num_workers=0,
            persistent_workers=False,
            dataset=dict(
                metainfo=dict(classes=shapes.CLASSES), test_mode=True,
                pipeline=pipeline, **data)),
        test_evaluator=dict(
            _delete_=True,
            type='CocoMetric',
            metric='bbox',
            ann_file=osp.join(str(data_root), data['ann_file'])),
        optim_wrapper=dict(
            optimizer=dict(lr=1e-3),
            paramwise_cfg=dict(custom_keys={'backbone': dict(lr_mult=1.0)})),
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


@pytest.mark.slow
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


@pytest.mark.slow
def test_tiny_detr_overfits_with_dropout(tiny_shapes, tmp_path, capsys,
                                         monkeypatch):
    """The same with DETR's dropout 0.1 everywhere: on a CPU the training
    attention then runs through SoftmaxDropoutAttention (its own backward),
    which must learn as well. Dropout slows the memorising down and makes it
    vary, so this trains twice as long."""
    from mmdetr.speed import attention
    calls = []
    apply = attention.SoftmaxDropoutAttention.apply
    monkeypatch.setattr(attention.SoftmaxDropoutAttention, 'apply',
                        lambda *args: calls.append(1) or apply(*args))
    iters = 400
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
