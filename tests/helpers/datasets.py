# Copyright (c) mmdetr contributors. All rights reserved.
"""Tiny COCO-format datasets on disk and the training config that uses
them, as a user's own dataset and delta config would look."""
import json
import os
import os.path as osp
import uuid

import cv2
import numpy as np

from .tools import ROOT

CLASSES = ('red', 'green', 'blue')


def write_coco_split(root, split, num_images, seed=0, empty=(0, )):
    """Write ``root/split/*.jpg`` and ``root/annotations/split.json``: noisy
    images with 1-3 filled rectangles each (colour = class), except the
    images whose index is in ``empty``, which have none."""
    rng = np.random.RandomState(seed)
    os.makedirs(os.path.join(root, split), exist_ok=True)
    os.makedirs(os.path.join(root, 'annotations'), exist_ok=True)
    images, annotations = [], []
    colours = [(0, 0, 255), (0, 255, 0), (255, 0, 0)]  # BGR: red green blue
    for i in range(num_images):
        h, w = int(rng.randint(56, 80)), int(rng.randint(56, 80))
        img = rng.randint(0, 60, (h, w, 3)).astype(np.uint8)
        name = f'{split}_{i:03d}.jpg'
        for _ in range(0 if i in empty else rng.randint(1, 4)):
            bw, bh = int(rng.randint(12, w // 2)), int(rng.randint(12, h // 2))
            x, y = int(rng.randint(0, w - bw)), int(rng.randint(0, h - bh))
            label = int(rng.randint(0, 3))
            img[y:y + bh, x:x + bw] = colours[label]
            annotations.append(
                dict(id=len(annotations) + 1, image_id=i + 1,
                     category_id=label + 1, bbox=[x, y, bw, bh],
                     area=bw * bh, iscrowd=0))
        cv2.imwrite(os.path.join(root, split, name), img)
        images.append(dict(id=i + 1, file_name=name, height=h, width=w))
    categories = [dict(id=k + 1, name=n) for k, n in enumerate(CLASSES)]
    with open(os.path.join(root, 'annotations', f'{split}.json'), 'w') as f:
        json.dump(dict(images=images, annotations=annotations,
                       categories=categories), f)


def pipelines_text(scale, flip=False):
    """Config lines defining ``train_pipeline`` (with a random flip if
    ``flip``) and ``test_pipeline``, both resizing to ``scale``."""
    random_flip = "    dict(type='RandomFlip', prob=0.5),\n" if flip else ''
    return f'''train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
{random_flip}    dict(type='Resize', scale={scale!r}, keep_ratio=True),
    dict(type='PackDetInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale={scale!r}, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                    'scale_factor'))
]'''


def write_tiny_train_config(path, data_root, base='detr_r50_8x2_150e_coco.py',
                            max_epochs=2, val_interval=1, extra=''):
    """A config inheriting ``configs/<base>`` with a tiny model and the
    dataset at ``data_root``: what a user's delta config looks like."""
    text = f'''
_base_ = {osp.join(ROOT, 'configs', base)!r}
data_root = {str(data_root) + '/'!r}
metainfo = dict(classes={CLASSES!r})
model = dict(
    backbone=dict(depth=18, init_cfg=None, zero_init_residual=False),
    bbox_head=dict(
        num_classes=3, in_channels=512, num_query=10,
        transformer=dict(type='DetrTransformer', embed_dims=32, num_heads=2,
                         num_encoder_layers=1, num_decoder_layers=1,
                         feedforward_channels=64, dropout=0.0),
        positional_encoding=dict(type='SinePositionalEncoding',
                                 num_feats=16, normalize=True)),
    test_cfg=dict(max_per_img=10))
{pipelines_text((96, 64))}
train_dataloader = dict(
    batch_size=2, num_workers=0, persistent_workers=False,
    batch_sampler=None,
    dataset=dict(data_root=data_root, metainfo=metainfo,
                 ann_file='annotations/train.json',
                 data_prefix=dict(img='train/'),
                 filter_cfg=dict(filter_empty_gt=False, min_size=0),
                 pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=1, num_workers=0, persistent_workers=False,
    dataset=dict(data_root=data_root, metainfo=metainfo,
                 ann_file='annotations/val.json',
                 data_prefix=dict(img='val/'), pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(type='CocoMetric',
                     ann_file=data_root + 'annotations/val.json',
                     metric='bbox')
test_evaluator = val_evaluator
optim_wrapper = dict(optimizer=dict(lr=1e-3))
train_cfg = dict(max_epochs={max_epochs},
                 val_interval={val_interval})
param_scheduler = [dict(type='MultiStepLR', begin=0, end={max_epochs},
                        by_epoch=True, milestones=[{max_epochs} - 1],
                        gamma=0.1)]
default_hooks = dict(logger=dict(interval=1),
                     checkpoint=dict(interval=1, max_keep_ckpts=-1))
''' + logged_run_text() + extra
    return write_text(path, text)


def logged_run_text():
    """Config lines shared by the tests' training configs: every
    iteration's values logged unsmoothed, seed 0, a visualizer of its
    own."""
    return f'''log_processor = dict(window_size=1)
randomness = dict(seed=0)
# the visualizer is a process-wide named instance: a fresh name per config
# keeps runners built in one test process from logging into each other's dirs
visualizer = dict(name='visualizer_{uuid.uuid4().hex[:8]}')
'''


def write_text(path, text):
    """Write ``text`` to ``path``; return the path as a string."""
    with open(path, 'w') as f:
        f.write(text)
    return str(path)
