# Copyright (c) mmdetr contributors. All rights reserved.
"""tools/misc/make_shapes_dataset.py: deterministic, COCO-loadable, disjoint
splits, empty images, boxes inside their images."""
import filecmp
import hashlib
import json
import os
import os.path as osp

import cv2
import numpy as np
import pytest
from pycocotools.coco import COCO

from helpers import load_tool

shapes = load_tool('tools/misc/make_shapes_dataset.py', 'make_shapes_dataset')


@pytest.fixture(scope='module')
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp('shapes')
    assert shapes.main([str(out), '--num-train', '24', '--num-val', '20',
                        '--seed', '3']) == 0
    return out


def _digest(folder):
    h = hashlib.sha256()
    for name in sorted(os.listdir(folder)):
        with open(osp.join(folder, name), 'rb') as f:
            h.update(name.encode() + f.read())
    return h.hexdigest()


def test_same_seed_same_bytes_other_seed_differs(dataset, tmp_path):
    shapes.main([str(tmp_path / 'a'), '--num-train', '24', '--num-val', '20',
                 '--seed', '3'])
    shapes.main([str(tmp_path / 'b'), '--num-train', '24', '--num-val', '20',
                 '--seed', '4'])
    for sub in ('train', 'val', 'annotations'):
        assert _digest(dataset / sub) == _digest(tmp_path / 'a' / sub), sub
        assert _digest(dataset / sub) != _digest(tmp_path / 'b' / sub), sub


def test_more_images_only_appends(dataset, tmp_path):
    """Image i depends on (seed, split, i) only, not on the split size
    (empty images are chosen per size, so compare a non-empty one)."""
    shapes.main([str(tmp_path), '--num-train', '30', '--num-val', '0',
                 '--seed', '3'])
    big = json.load(open(tmp_path / 'annotations' / 'instances_train.json'))
    small = json.load(open(dataset / 'annotations' / 'instances_train.json'))
    empties = (shapes.empty_indices(3, 'train', 24)
               | shapes.empty_indices(3, 'train', 30))
    same = [i for i in range(24) if i not in empties]
    assert same
    for i in same:
        name = f'{i:06d}.jpg'
        assert filecmp.cmp(dataset / 'train' / name,
                           tmp_path / 'train' / name, shallow=False)
        boxes = [(a['bbox'], a['category_id']) for a in small['annotations']
                 if a['image_id'] == i + 1]
        assert boxes == [(a['bbox'], a['category_id'])
                         for a in big['annotations'] if a['image_id'] == i + 1]


@pytest.mark.parametrize('split,num', [('train', 24), ('val', 20)])
def test_pycocotools_loads_it_and_boxes_are_valid(dataset, split, num):
    coco = COCO(str(dataset / 'annotations' / f'instances_{split}.json'))
    assert len(coco.getImgIds()) == num
    assert [c['name'] for c in coco.loadCats(coco.getCatIds())] == list(
        shapes.CLASSES)
    per_image = [len(coco.getAnnIds(imgIds=[i])) for i in coco.getImgIds()]
    assert max(per_image) <= shapes.MAX_OBJECTS
    assert 0 in per_image, 'some images have no object'
    assert sum(n > 0 for n in per_image) >= num * 0.8
    for img_info in coco.loadImgs(coco.getImgIds()):
        img = cv2.imread(str(dataset / split / img_info['file_name']))
        assert img is not None and img.shape == (img_info['height'],
                                                 img_info['width'], 3)
        for ann in coco.loadAnns(coco.getAnnIds(imgIds=[img_info['id']])):
            x, y, w, h = ann['bbox']
            assert w > 1 and h > 1 and ann['area'] > 0 and ann['iscrowd'] == 0
            assert 0 <= x and 0 <= y
            assert x + w <= img_info['width'] and y + h <= img_info['height']


def test_objects_vary_and_all_classes_appear(dataset):
    anns = json.load(open(dataset / 'annotations' /
                          'instances_train.json'))['annotations']
    sides = np.array([max(a['bbox'][2:]) for a in anns])
    centres = np.array([[a['bbox'][0] + a['bbox'][2] / 2,
                         a['bbox'][1] + a['bbox'][3] / 2] for a in anns])
    assert {a['category_id'] for a in anns} == {1, 2, 3}
    assert sides.max() > 2 * sides.min(), 'object sizes vary'
    assert centres.std(axis=0).min() > 20, 'positions vary'


def test_splits_are_disjoint(dataset):
    def hashes(split):
        folder = dataset / split
        return {
            hashlib.sha256(cv2.imread(str(folder / n)).tobytes()).hexdigest()
            for n in os.listdir(folder)
        }

    train, val = hashes('train'), hashes('val')
    assert len(train) == 24 and len(val) == 20
    assert not train & val


def test_bad_arguments_are_refused(tmp_path, capsys):
    with pytest.raises(SystemExit):
        shapes.main([str(tmp_path), '--num-train', '-1'])
    assert '--num-train must be >= 0' in capsys.readouterr().err
