# Copyright (c) mmdetr contributors. All rights reserved.
"""Bad COCO panoptic annotations fail before training, naming the file and
the segment id, and nothing is written."""
import hashlib
import json
import os
import os.path as osp
import shutil

import cv2
import numpy as np
import pytest
from mmengine.registry import DefaultScope

from helpers import (PANOPTIC_CLASSES, shapes_panoptic_cfg,
                     write_shapes_panoptic)
from mmdetr.datasets import (CocoPanopticDataset, PanopticAnnotationError,
                             check_panoptic_annotations)
from mmdetr.registry import DATASETS

CLASSES = PANOPTIC_CLASSES


@pytest.fixture(scope='module')
def clean(tmp_path_factory):
    return write_shapes_panoptic(tmp_path_factory.mktemp('shapes_panoptic'))


@pytest.fixture
def data(clean, tmp_path):
    """A fresh copy to break."""
    shutil.copytree(clean, tmp_path / 'panoptic')
    return tmp_path / 'panoptic'


def _paths(root):
    ann = root / 'annotations' / 'panoptic_train.json'
    return ann, root / 'annotations' / 'panoptic_train'


def _digest(root):
    h = hashlib.sha256()
    for dirpath, _, files in sorted(os.walk(root)):
        for name in sorted(files):
            with open(osp.join(dirpath, name), 'rb') as f:
                h.update(name.encode() + f.read())
    return h.hexdigest()


def _edit_json(ann, change):
    coco = json.load(open(ann))
    change(coco)
    json.dump(coco, open(ann, 'w'))
    return coco


def _dataset_cfg(root, classes=CLASSES):
    return shapes_panoptic_cfg(root, classes)


def test_clean_annotations_load_with_mmdet_default_scope(clean):
    ann, seg = _paths(clean)
    assert check_panoptic_annotations(str(ann), str(seg), CLASSES) > 6
    with DefaultScope.overwrite_default_scope('mmdet'):
        dataset = DATASETS.build(_dataset_cfg(clean))
    assert type(dataset) is CocoPanopticDataset
    assert len(dataset) == 3
    info = dataset.get_data_info(0)
    assert info['seg_map_path'].endswith('annotations/panoptic_train/'
                                         '000000.png')
    assert info['segments_info']


def _first_segment(ann):
    coco = json.load(open(ann))
    a = coco['annotations'][0]
    return a['file_name'], a['image_id'], a['segments_info'][-1]['id']


def test_missing_png(data):
    ann, seg = _paths(data)
    png, image_id, _ = _first_segment(ann)
    os.remove(seg / png)
    before = _digest(data)
    with pytest.raises(PanopticAnnotationError) as e:
        DATASETS.build(_dataset_cfg(data))
    assert f'segment PNG not found: {seg / png}' in str(e.value)
    assert f'image_id {image_id}' in str(e.value)
    assert _digest(data) == before, 'nothing written'


def test_json_segment_id_not_in_png(data):
    ann, seg = _paths(data)
    png, _, seg_id = _first_segment(ann)

    def rename(coco):
        coco['annotations'][0]['segments_info'][-1]['id'] = 999999

    _edit_json(ann, rename)
    with pytest.raises(PanopticAnnotationError) as e:
        check_panoptic_annotations(str(ann), str(seg), CLASSES)
    msg = str(e.value)
    assert '[999999]' in msg and str(seg / png) in msg
    assert 'not in' in msg
    # the PNG's own id, now unlisted, is the other half of the mismatch
    coco = json.load(open(ann))
    coco['annotations'][0]['segments_info'].pop()
    json.dump(coco, open(ann, 'w'))
    with pytest.raises(PanopticAnnotationError,
                       match=rf'holds segment id\(s\) \[{seg_id}\] that the '
                       'json does not list'):
        check_panoptic_annotations(str(ann), str(seg), CLASSES)
    # read_pngs=False only checks that the PNGs exist
    assert check_panoptic_annotations(str(ann), str(seg), CLASSES,
                                      read_pngs=False) > 0


def test_category_not_in_the_config(data):
    ann, seg = _paths(data)
    classes = tuple(c for c in CLASSES if c != 'checker')
    coco = json.load(open(ann))
    used = [(a['image_id'], s['id']) for a in coco['annotations']
            for s in a['segments_info'] if s['category_id'] == 5]
    assert used, 'the fixture has a checker region'
    with pytest.raises(PanopticAnnotationError) as e:
        DATASETS.build(_dataset_cfg(data, classes))
    msg = str(e.value)
    assert "'checker' (id 5)" in msg and 'config\'s classes' in msg
    assert f'image_id {used[0][0]}' in msg and f'segment id {used[0][1]}' \
        in msg


def test_unknown_category_and_repeated_segment_id(data):
    ann, seg = _paths(data)

    def unknown(coco):
        coco['annotations'][1]['segments_info'][0]['category_id'] = 77

    _edit_json(ann, unknown)
    with pytest.raises(PanopticAnnotationError,
                       match="category_id 77, which is not in the file's"):
        check_panoptic_annotations(str(ann), str(seg))

    def repeat(coco):
        info = coco['annotations'][1]['segments_info']
        info[0]['category_id'] = 4
        info.append(dict(info[0]))

    _edit_json(ann, repeat)
    with pytest.raises(PanopticAnnotationError, match='listed twice'):
        check_panoptic_annotations(str(ann), str(seg))


def test_unreadable_png_and_missing_json(data):
    ann, seg = _paths(data)
    png, _, _ = _first_segment(ann)
    (seg / png).write_bytes(b'not a png')
    with pytest.raises(PanopticAnnotationError,
                       match='cannot read the segment PNG'):
        check_panoptic_annotations(str(ann), str(seg))
    with pytest.raises(PanopticAnnotationError, match='not found'):
        check_panoptic_annotations(str(data / 'nope.json'), str(seg))
    (data / 'bad.json').write_text('{"images": []}')
    with pytest.raises(PanopticAnnotationError, match='no "annotations"'):
        check_panoptic_annotations(str(data / 'bad.json'), str(seg))


def test_png_ids_follow_panopticapi_encoding(clean):
    """The generator's PNGs decode (R + 256 G + 256^2 B) to the json ids."""
    ann, seg = _paths(clean)
    coco = json.load(open(ann))
    for a in coco['annotations']:
        rgb = cv2.imread(str(seg / a['file_name']))[..., ::-1].astype(int)
        ids = rgb[..., 0] + 256 * rgb[..., 1] + 65536 * rgb[..., 2]
        assert sorted(np.unique(ids).tolist()) == sorted(
            s['id'] for s in a['segments_info'])
        for s in a['segments_info']:
            assert (ids == s['id']).sum() == s['area']
