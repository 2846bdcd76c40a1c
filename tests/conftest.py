# Copyright (c) mmdetr contributors. All rights reserved.
"""Shared helpers: tiny DETR configs for mmdetr and mmdet, synthetic batches.

Nothing is downloaded; every model is randomly initialised.
"""
import copy
import glob
import json
import os
import os.path as osp
import re
import subprocess
import sys
import uuid

import pytest
import torch
from mmdet.structures import DetDataSample
from mmengine.registry import DefaultScope
from mmengine.structures import InstanceData

import mmdetr  # noqa: F401  registers mmdetr's components

TINY = dict(
    depth=18, embed_dims=64, num_heads=4, ffn=128, enc=2, dec=2, queries=20,
    num_classes=5, dropout=0.0)


def _backbone(depth):
    return dict(
        type='ResNet',
        depth=depth,
        num_stages=4,
        out_indices=(3, ),
        frozen_stages=1,
        norm_cfg=dict(type='BN', requires_grad=False),
        norm_eval=True,
        style='pytorch',
        init_cfg=None)


_PREPROCESSOR = dict(
    type='DetDataPreprocessor',
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    bgr_to_rgb=True,
    pad_size_divisor=1)

_LOSSES = dict(
    loss_cls=dict(
        type='CrossEntropyLoss',
        bg_cls_weight=0.1,
        use_sigmoid=False,
        loss_weight=1.0,
        class_weight=1.0),
    loss_bbox=dict(type='L1Loss', loss_weight=5.0),
    loss_iou=dict(type='GIoULoss', loss_weight=2.0))

_TRAIN_CFG = dict(
    assigner=dict(
        type='HungarianAssigner',
        match_costs=[
            dict(type='ClassificationCost', weight=1.),
            dict(type='BBoxL1Cost', weight=5.0, box_format='xywh'),
            dict(type='IoUCost', iou_mode='giou', weight=2.0)
        ]))


def mmdetr_cfg(**overrides):
    """Model config of a tiny mmdetr DETR (``_scope_='mmdetr'``)."""
    a = dict(TINY, **overrides)
    in_channels = 512 if a['depth'] in (18, 34) else 2048
    return dict(
        _scope_='mmdetr',
        type='DETR',
        data_preprocessor=copy.deepcopy(_PREPROCESSOR),
        backbone=_backbone(a['depth']),
        bbox_head=dict(
            type='DETRHead',
            num_classes=a['num_classes'],
            in_channels=in_channels,
            num_query=a['queries'],
            transformer=dict(
                type='DetrTransformer',
                embed_dims=a['embed_dims'],
                num_heads=a['num_heads'],
                num_encoder_layers=a['enc'],
                num_decoder_layers=a['dec'],
                feedforward_channels=a['ffn'],
                dropout=a['dropout'],
                normalize_before=a.get('normalize_before', False)),
            positional_encoding=a.get(
                'positional_encoding',
                dict(
                    type='SinePositionalEncoding',
                    num_feats=a['embed_dims'] // 2,
                    normalize=True)),
            **copy.deepcopy(_LOSSES)),
        train_cfg=copy.deepcopy(_TRAIN_CFG),
        test_cfg=dict(max_per_img=a['queries']))


def mmdet_cfg(**overrides):
    """The same architecture as mmdet 3.x's own DETR config."""
    a = dict(TINY, **overrides)
    in_channels = 512 if a['depth'] in (18, 34) else 2048
    d = a['embed_dims']

    def attn():
        return dict(
            embed_dims=d,
            num_heads=a['num_heads'],
            dropout=a['dropout'],
            batch_first=True)

    def ffn():
        return dict(
            embed_dims=d,
            feedforward_channels=a['ffn'],
            num_fcs=2,
            ffn_drop=a['dropout'],
            act_cfg=dict(type='ReLU', inplace=True))

    return dict(
        type='DETR',
        num_queries=a['queries'],
        data_preprocessor=copy.deepcopy(_PREPROCESSOR),
        backbone=_backbone(a['depth']),
        neck=dict(
            type='ChannelMapper',
            in_channels=[in_channels],
            kernel_size=1,
            out_channels=d,
            act_cfg=None,
            norm_cfg=None,
            num_outs=1),
        encoder=dict(
            num_layers=a['enc'],
            layer_cfg=dict(self_attn_cfg=attn(), ffn_cfg=ffn())),
        decoder=dict(
            num_layers=a['dec'],
            layer_cfg=dict(
                self_attn_cfg=attn(), cross_attn_cfg=attn(), ffn_cfg=ffn()),
            return_intermediate=True),
        positional_encoding=dict(num_feats=d // 2, normalize=True),
        bbox_head=dict(
            type='DETRHead',
            num_classes=a['num_classes'],
            embed_dims=d,
            **copy.deepcopy(_LOSSES)),
        train_cfg=copy.deepcopy(_TRAIN_CFG),
        test_cfg=dict(max_per_img=a['queries']))


def build_mmdetr(cfg=None, scope='mmdet', **overrides):
    """Build mmdetr's DETR the way a runner does: from mmengine's root
    registry with the default scope set (mmdet's, by default)."""
    from mmengine.registry import MODELS
    cfg = cfg or mmdetr_cfg(**overrides)
    with DefaultScope.overwrite_default_scope(scope):
        model = MODELS.build(copy.deepcopy(cfg))
    model.init_weights()
    return model


def build_mmdet(**overrides):
    """Build mmdet 3.x's own DETR (the reference)."""
    from mmdet.registry import MODELS
    with DefaultScope.overwrite_default_scope('mmdet'):
        model = MODELS.build(mmdet_cfg(**overrides))
    model.init_weights()
    return model


def random_boxes(n, h, w, gen):
    """n valid absolute x1y1x2y2 boxes inside an h x w image."""
    xy = torch.rand(n, 2, generator=gen) * torch.tensor([w * 0.7, h * 0.7])
    wh = (torch.rand(n, 2, generator=gen) * 0.5 + 0.1) * torch.tensor([w, h])
    x2y2 = torch.minimum(xy + wh, torch.tensor([w - 1., h - 1.]))
    return torch.cat([xy, x2y2], dim=1)


def make_batch(sizes=((96, 128), (128, 80)),
               num_boxes=(0, 7),
               num_classes=5,
               seed=0):
    """Raw model input: images of different sizes (so the batch is padded)
    with ``num_boxes[i]`` random boxes each."""
    gen = torch.Generator().manual_seed(seed)
    inputs, samples = [], []
    for (h, w), n in zip(sizes, num_boxes):
        inputs.append(torch.randint(0, 256, (3, h, w), generator=gen,
                                    dtype=torch.uint8))
        sample = DetDataSample(
            metainfo=dict(
                img_shape=(h, w),
                ori_shape=(int(h * 1.25), int(w * 1.5)),
                scale_factor=(1 / 1.5, 1 / 1.25)))
        sample.gt_instances = InstanceData(
            bboxes=random_boxes(n, h, w, gen),
            labels=torch.randint(0, num_classes, (n, ), generator=gen))
        samples.append(sample)
    return dict(inputs=inputs, data_samples=samples)


def preprocess(model, data, training):
    """Run the model's data preprocessor on a deep copy of ``data``."""
    return model.data_preprocessor(copy.deepcopy(data), training)


@pytest.fixture
def gen():
    return torch.Generator().manual_seed(0)


# ---------------------------------------------------------------- datasets
CLASSES = ('red', 'green', 'blue')


def write_coco_split(root, split, num_images, seed=0, empty=(0, )):
    """Write ``root/split/*.jpg`` and ``root/annotations/split.json``: noisy
    images with 1-3 filled rectangles each (colour = class), except the
    images whose index is in ``empty``, which have none."""
    import json
    import os

    import cv2
    import numpy as np
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


def write_tiny_train_config(path, data_root, base='detr_r50_8x2_150e_coco.py',
                            max_epochs=2, val_interval=1, extra=''):
    """A config inheriting ``configs/<base>`` with a tiny model and the
    dataset at ``data_root``: what a user's delta config looks like."""
    import os.path as osp
    root = osp.dirname(osp.dirname(osp.abspath(__file__)))
    text = f'''
_base_ = {osp.join(root, 'configs', base)!r}
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
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='Resize', scale=(96, 64), keep_ratio=True),
    dict(type='PackDetInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(96, 64), keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                    'scale_factor'))
]
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
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs={max_epochs},
                 val_interval={val_interval})
param_scheduler = [dict(type='MultiStepLR', begin=0, end={max_epochs},
                        by_epoch=True, milestones=[{max_epochs} - 1],
                        gamma=0.1)]
default_hooks = dict(logger=dict(interval=1),
                     checkpoint=dict(interval=1, max_keep_ckpts=-1))
log_processor = dict(window_size=1)
randomness = dict(seed=0)
# the visualizer is a process-wide named instance: a fresh name per config
# keeps runners built in one test process from logging into each other's dirs
visualizer = dict(name='visualizer_{uuid.uuid4().hex[:8]}')
''' + extra
    with open(path, 'w') as f:
        f.write(text)
    return str(path)


@pytest.fixture(scope='session')
def coco_root(tmp_path_factory):
    """A tiny COCO-format dataset: 6 train images, 3 val images."""
    root = tmp_path_factory.mktemp('coco')
    write_coco_split(str(root), 'train', 6, seed=1)
    write_coco_split(str(root), 'val', 3, seed=2)
    return root


# ---------------------------------------------------------------- tools
ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
TESTS = osp.join(ROOT, 'tests')


def run(*cmd, env=None, check=True, timeout=600):
    full_env = dict(os.environ)
    full_env['PYTHONPATH'] = os.pathsep.join(
        [ROOT, TESTS, full_env.get('PYTHONPATH', '')])
    full_env.update(env or {})
    proc = subprocess.run([str(c) for c in cmd], cwd=ROOT, env=full_env,
                          capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f'{cmd} exited {proc.returncode}\n'
                             f'{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}')
    return proc


def train(cfg, work_dir, *extra, check=True):
    return run(sys.executable, 'tools/train.py', cfg, '--work-dir', work_dir,
               *extra, check=check)


def copypaste_ap(output: str) -> str:
    found = re.findall(r'bbox_mAP_copypaste: ([\d. -]+)', output)
    assert found, output[-3000:]
    return found[-1].strip()


def scalars(work_dir):
    files = glob.glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json'))
    assert files, f'no scalars log under {work_dir}'
    with open(sorted(files)[-1]) as f:
        return [json.loads(line) for line in f]


def load_ckpt(path):
    from mmdetr.utils import load_checkpoint_file
    return load_checkpoint_file(path)


