# Copyright (c) mmdetr contributors. All rights reserved.
"""tools/misc/make_shapes_dataset.py --panoptic: the detection files are
byte-identical with and without the flag; the panoptic version is
deterministic, covers every pixel and holds the detection's objects."""
import hashlib
import json
import os
import os.path as osp
from collections import Counter

import cv2
import numpy as np
import pytest

from helpers import load_tool

shapes = load_tool('tools/misc/make_shapes_dataset.py', 'make_shapes_dataset')
ARGS = ['--num-train', '10', '--num-val', '4', '--img-size', '64']


def _digest(folder):
    h = hashlib.sha256()
    for dirpath, dirs, files in os.walk(folder):
        dirs.sort()
        for name in sorted(files):
            path = osp.join(dirpath, name)
            with open(path, 'rb') as f:
                h.update(osp.relpath(path, folder).encode() + f.read())
    return h.hexdigest()


@pytest.fixture(scope='module')
def pair(tmp_path_factory):
    root = tmp_path_factory.mktemp('shapes_pair')
    assert shapes.main([str(root / 'plain'), *ARGS, '--seed', '7']) == 0
    assert shapes.main([str(root / 'pan'), *ARGS, '--seed', '7',
                        '--panoptic']) == 0
    return root / 'plain', root / 'pan'


def test_detection_files_are_byte_identical_with_and_without_the_flag(pair):
    plain, pan = pair
    assert sorted(os.listdir(plain)) == ['annotations', 'train', 'val']
    assert sorted(os.listdir(pan)) == ['annotations', 'panoptic', 'train',
                                       'val']
    for sub in ('train', 'val', 'annotations'):
        assert sorted(os.listdir(plain / sub)) == sorted(os.listdir(pan / sub))
        assert _digest(plain / sub) == _digest(pan / sub), sub


def test_panoptic_output_is_deterministic(pair, tmp_path):
    _, pan = pair
    shapes.main([str(tmp_path / 'a'), *ARGS, '--seed', '7', '--panoptic'])
    shapes.main([str(tmp_path / 'b'), *ARGS, '--seed', '8', '--panoptic'])
    assert _digest(pan / 'panoptic') == _digest(tmp_path / 'a' / 'panoptic')
    assert _digest(pan / 'panoptic') != _digest(tmp_path / 'b' / 'panoptic')


@pytest.mark.parametrize('split,num', [('train', 10), ('val', 4)])
def test_segments_cover_every_pixel_and_match_the_detection_objects(
        pair, split, num):
    _, pan = pair
    coco = json.load(open(pan / 'panoptic' / 'annotations' /
                          f'panoptic_{split}.json'))
    det = json.load(open(pan / 'annotations' / f'instances_{split}.json'))
    cats = {c['id']: c for c in coco['categories']}
    assert [c['name'] for c in coco['categories']] == list(
        shapes.CLASSES + shapes.STUFF_CLASSES)
    assert [c['isthing'] for c in coco['categories']] == [1, 1, 1, 0, 0, 0]
    assert [i['id'] for i in coco['images']] == list(range(1, num + 1))
    for ann in coco['annotations']:
        img = cv2.imread(str(pan / 'panoptic' / split /
                             ann['file_name'].replace('.png', '.jpg')))
        assert img.shape == (64, 64, 3)
        png = cv2.imread(str(pan / 'panoptic' / 'annotations' /
                             f'panoptic_{split}' / ann['file_name']))
        rgb = png[..., ::-1].astype(np.int64)
        ids = rgb[..., 0] + 256 * rgb[..., 1] + 65536 * rgb[..., 2]
        segments = ann['segments_info']
        # no void: the segments' areas add up to the image
        assert sum(s['area'] for s in segments) == 64 * 64
        assert sorted(np.unique(ids).tolist()) == sorted(s['id']
                                                         for s in segments)
        for s in segments:
            ys, xs = np.nonzero(ids == s['id'])
            assert s['area'] == len(ys) and s['iscrowd'] == 0
            assert s['bbox'] == [xs.min(), ys.min(), xs.max() - xs.min() + 1,
                                 ys.max() - ys.min() + 1]
        things = [s for s in segments if cats[s['category_id']]['isthing']]
        objects = [a for a in det['annotations']
                   if a['image_id'] == ann['image_id']]
        assert Counter(s['category_id'] for s in things) == Counter(
            a['category_id'] for a in objects)
        # each thing's visible part lies inside its detection box
        for s, a in zip(things, objects):
            x, y, w, h = a['bbox']
            sx, sy, sw, sh = s['bbox']
            assert x - 1 <= sx and y - 1 <= sy
            assert sx + sw <= x + w + 1 and sy + sh <= y + h + 1


def test_every_stuff_class_appears(pair):
    _, pan = pair
    coco = json.load(open(pan / 'panoptic' / 'annotations' /
                          'panoptic_train.json'))
    stuff = Counter(s['category_id'] for a in coco['annotations']
                    for s in a['segments_info'] if s['category_id'] > 3)
    assert set(stuff) == {4, 5, 6}
    per_image = [sum(s['category_id'] > 3 for s in a['segments_info'])
                 for a in coco['annotations']]
    assert max(per_image) >= 2, 'some images have several regions'


def test_things_are_also_coco_instances_with_their_visible_masks(pair):
    from pycocotools import mask as mask_utils
    _, pan = pair
    ann_dir = pan / 'panoptic' / 'annotations'
    coco = json.load(open(ann_dir / 'panoptic_val.json'))
    things = json.load(open(ann_dir / 'instances_val.json'))
    assert things['images'] == coco['images']
    assert [c['name'] for c in things['categories']] == list(shapes.CLASSES)
    segments = [(a['image_id'], s) for a in coco['annotations']
                for s in a['segments_info'] if s['category_id'] <= 3]
    assert len(things['annotations']) == len(segments) > 0
    assert [a['id'] for a in things['annotations']] == list(
        range(1, len(segments) + 1))
    for inst, (image_id, seg) in zip(things['annotations'], segments):
        assert inst['image_id'] == image_id
        assert (inst['category_id'], inst['bbox'], inst['area']) == (
            seg['category_id'], seg['bbox'], seg['area'])
        png = cv2.imread(str(ann_dir / 'panoptic_val' /
                             f'{image_id - 1:06d}.png'))[..., ::-1]
        ids = png.astype(np.int64) @ np.array([1, 256, 65536])
        rle = dict(inst['segmentation'], counts=inst['segmentation'][
            'counts'].encode())
        assert np.array_equal(mask_utils.decode(rle), ids == seg['id'])
