# Copyright (c) mmdetr contributors. All rights reserved.
"""The panoptic demo's configs: the box model predicts every segment with
DETR's own head (stuff included), the mask head trains on it frozen, and
both read what ``make_shapes_dataset.py --panoptic`` writes."""
import os.path as osp

from mmengine.config import Config

from helpers import ROOT, load_tool

shapes = load_tool('tools/misc/make_shapes_dataset.py', 'make_shapes_dataset')
BOX_CONFIG = osp.join(ROOT, 'configs', 'detr_r18_shapes_panoptic_boxes.py')
CONFIG = osp.join(ROOT, 'configs', 'detr_r18_shapes_panoptic.py')


def test_box_model_has_no_duplicate_weight():
    """DuplicateWeightDETRHead weighs "no object" up for every unmatched
    query whose box overlaps a ground truth; the stuff boxes overlap each
    other and most things, and a box model trained with it detected about a
    fifth of the striped and checked regions. The panoptic box model is
    plain DETR."""
    for path in (BOX_CONFIG, CONFIG):
        head = Config.fromfile(path).model.bbox_head
        assert head.type == 'DETRHead', path
        assert not [k for k in head if k.startswith('duplicate_')], path


def test_classes_things_first_and_queries_enough():
    box = Config.fromfile(BOX_CONFIG)
    cfg = Config.fromfile(CONFIG)
    things, stuff = box.thing_classes, box.stuff_classes
    assert tuple(box.classes) == tuple(things) + tuple(stuff)
    assert cfg.model.num_things_classes == len(things)
    assert box.model.bbox_head.num_classes == len(things) + len(stuff)
    # the panoptic model's detector is the box model's, frozen
    assert cfg.model.freeze_detector
    for key in ('num_classes', 'num_query', 'transformer'):
        assert cfg.model.bbox_head[key] == box.model.bbox_head[key], key


def test_reads_what_the_generator_writes():
    box = Config.fromfile(BOX_CONFIG)
    cfg = Config.fromfile(CONFIG)
    train = box.train_dataloader.dataset
    assert train.data_root == 'data/shapes/panoptic/'
    assert train.ann_file == 'annotations/panoptic_train.json'
    assert cfg.train_dataloader.dataset.ann_file == train.ann_file
    val = cfg.val_dataloader.dataset
    assert val.ann_file == 'annotations/panoptic_val.json'
    assert val.data_prefix == dict(img='val/',
                                   seg='annotations/panoptic_val/')
    panoptic, coco = cfg.val_evaluator
    assert panoptic.type == 'CocoPanopticMetric'
    assert panoptic.ann_file.endswith('annotations/panoptic_val.json')
    assert coco.ann_file.endswith('annotations/instances_val.json')
    assert tuple(box.thing_classes) == shapes.CLASSES
    assert tuple(box.stuff_classes) == shapes.STUFF_CLASSES
    assert box.model.bbox_head.num_query >= shapes.MAX_OBJECTS + len(
        shapes.STUFF_CLASSES)
