# Copyright (c) mmdetr contributors. All rights reserved.
"""A tiny COCO panoptic dataset on disk (the shapes generator's
``--panoptic`` output) and a dataset config for it; a tiny PanopticDETR
and ground-truth masks for synthetic batches."""
from pathlib import Path
from typing import Sequence

import numpy as np
from mmdet.structures.mask import BitmapMasks

from .models import mmdetr_cfg
from .tools import load_tool

_shapes = load_tool('tools/misc/make_shapes_dataset.py',
                    'make_shapes_dataset_helpers')
# things (category ids 1-3) then stuff (4-6), mmdet's label order
PANOPTIC_THINGS = _shapes.CLASSES
PANOPTIC_STUFF = _shapes.STUFF_CLASSES
PANOPTIC_CLASSES = PANOPTIC_THINGS + PANOPTIC_STUFF


def write_shapes_panoptic(root, num_train: int = 3, seed: int = 2,
                          img_size: int = 48) -> Path:
    """Write the shapes dataset with ``--panoptic`` (train split only) under
    ``root``; returns ``root/panoptic``."""
    _shapes.make_dataset(str(root), num_train=num_train, num_val=0,
                         seed=seed, img_size=img_size, panoptic=True)
    return Path(root) / 'panoptic'


def shapes_panoptic_cfg(panoptic_root,
                        classes: Sequence[str] = PANOPTIC_CLASSES,
                        pipeline: Sequence[dict] = ()) -> dict:
    """``mmdetr.CocoPanopticDataset`` config of the train split written by
    :func:`write_shapes_panoptic`, with ``classes`` as its metainfo."""
    things = tuple(c for c in classes if c in PANOPTIC_THINGS)
    return dict(
        type='mmdetr.CocoPanopticDataset',
        data_root=str(panoptic_root),
        ann_file='annotations/panoptic_train.json',
        data_prefix=dict(img='train/', seg='annotations/panoptic_train/'),
        metainfo=dict(classes=tuple(classes), thing_classes=things,
                      stuff_classes=tuple(c for c in classes
                                          if c not in things)),
        pipeline=list(pipeline))


#: a tiny PanopticDETR: ResNet-18 (all four levels), 128-d transformer with
#: 8 heads (the smallest width whose mask head fits GroupNorm(8))
PANOPTIC_TINY = dict(embed_dims=128, num_heads=8, ffn=128, enc=1, dec=2,
                     queries=10, num_classes=5)


def panoptic_detr_cfg(num_things_classes: int = 3, **overrides) -> dict:
    """Model config of a tiny ``PanopticDETR`` (``num_classes`` things and
    stuff, the first ``num_things_classes`` things)."""
    cfg = mmdetr_cfg(**dict(PANOPTIC_TINY, **overrides))
    cfg['type'] = 'PanopticDETR'
    cfg['num_things_classes'] = num_things_classes
    cfg['backbone']['out_indices'] = (0, 1, 2, 3)
    cfg['mask_head'] = dict(
        type='DETRMaskHead',
        embed_dims=cfg['bbox_head']['transformer']['embed_dims'],
        num_heads=cfg['bbox_head']['transformer']['num_heads'],
        in_channels=(256, 128, 64))
    return cfg


def with_box_masks(data: dict) -> dict:
    """``data`` (:func:`make_batch`) with a mask per ground truth: the
    pixels of its box, at the image's size."""
    for sample in data['data_samples']:
        h, w = sample.metainfo['img_shape']
        gt = sample.gt_instances
        masks = np.zeros((len(gt), h, w), dtype=np.uint8)
        for k, (x1, y1, x2, y2) in enumerate(gt.bboxes.round().long()):
            masks[k, y1:y2 + 1, x1:x2 + 1] = 1
        gt.masks = BitmapMasks(masks, h, w)
    return data
