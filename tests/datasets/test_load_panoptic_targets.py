# Copyright (c) mmdetr contributors. All rights reserved.
"""LoadPanopticTargets: one box, label and mask per segment, things and
stuff alike, through mmdet's augmentations and packing."""
import json

import numpy as np
import pytest
from mmengine.registry import DefaultScope

from helpers import shapes_panoptic_cfg, write_shapes_panoptic
from mmdetr.registry import DATASETS


@pytest.fixture(scope='module')
def root(tmp_path_factory):
    return write_shapes_panoptic(tmp_path_factory.mktemp('shapes_targets'),
                                 seed=4)


def _dataset(root, pipeline):
    with DefaultScope.overwrite_default_scope('mmdet'):
        return DATASETS.build(shapes_panoptic_cfg(root, pipeline=pipeline))


def test_every_segment_is_a_target(root):
    dataset = _dataset(root, [
        dict(type='LoadImageFromFile'),
        dict(type='mmdetr.LoadPanopticTargets')
    ])
    coco = json.load(open(root / 'annotations' / 'panoptic_train.json'))
    for i, ann in enumerate(coco['annotations']):
        out = dataset[i]
        segs = ann['segments_info']
        assert len(out['gt_bboxes']) == len(segs) == len(out['gt_masks'])
        # labels: contiguous, things 0-2, stuff 3-5 (category ids 1-6)
        assert out['gt_bboxes_labels'].tolist() == [
            s['category_id'] - 1 for s in segs
        ]
        assert any(lab >= 3 for lab in out['gt_bboxes_labels'])
        for box, mask, seg in zip(out['gt_bboxes'].numpy(),
                                  out['gt_masks'].masks, segs):
            x, y, w, h = seg['bbox']
            assert box.tolist() == [x, y, x + w, y + h]
            assert mask.sum() == seg['area']
        assert not out['gt_ignore_flags'].any()


def test_targets_follow_flip_resize_and_pack(root):
    dataset = _dataset(root, [
        dict(type='LoadImageFromFile'),
        dict(type='mmdetr.LoadPanopticTargets'),
        dict(type='RandomFlip', prob=1.0),
        dict(type='Resize', scale=(96, 96), keep_ratio=True),
        dict(type='PackDetInputs')
    ])
    out = dataset[0]
    inst = out['data_samples'].gt_instances
    masks = inst.masks.masks
    assert masks.shape[1:] == (96, 96) and len(masks) == len(inst.bboxes)
    for box, mask in zip(inst.bboxes.numpy(), masks):
        ys, xs = np.nonzero(mask)
        # the resized mask still fills its (flipped, resized) box
        assert abs(xs.min() - box[0]) <= 2 and abs(xs.max() + 1 - box[2]) <= 2
        assert abs(ys.min() - box[1]) <= 2 and abs(ys.max() + 1 - box[3]) <= 2
