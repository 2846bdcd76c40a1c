# Copyright (c) mmdetr contributors. All rights reserved.
"""configs/detr_r18_shapes_demo.py trains from scratch: nothing in its
backbone may be frozen or start at zero, and it reads what the generator
writes."""
import copy
import os.path as osp

import torch
from mmengine.config import Config
from mmengine.registry import MODELS, DefaultScope
from torch.nn.modules.batchnorm import _BatchNorm

from helpers import ROOT, assert_identical_predictions, load_tool, make_batch

shapes = load_tool('tools/misc/make_shapes_dataset.py', 'make_shapes_dataset')
CONFIG = osp.join(ROOT, 'configs', 'detr_r18_shapes_demo.py')


def test_backbone_learns_from_scratch():
    cfg = Config.fromfile(CONFIG)
    with DefaultScope.overwrite_default_scope('mmdet'):
        model = MODELS.build(cfg.model)
    model.init_weights()
    model.train()
    backbone = model.backbone
    assert all(p.requires_grad for p in backbone.parameters())
    norms = [m for m in backbone.modules() if isinstance(m, _BatchNorm)]
    assert norms and all(m.training for m in norms)
    # mmdet's ResNet zero-initialises the last norm of every residual branch
    # (zero_init_residual); with frozen norms and no pretrained weights those
    # branches would stay zero for ever.
    for m in norms:
        assert not torch.all(m.weight == 0), 'a residual branch starts at 0'
    # the head gets the channels of the stage the backbone returns
    x = torch.zeros(1, 3, 64, 64)
    feat = backbone(x)[-1]
    assert feat.shape[1] == cfg.model.bbox_head.in_channels


def test_data_is_what_the_generator_writes():
    cfg = Config.fromfile(CONFIG)
    for split, loader in (('train', cfg.train_dataloader),
                          ('val', cfg.val_dataloader),
                          ('val', cfg.test_dataloader)):
        dataset = loader.dataset
        assert dataset.data_root == 'data/shapes/'
        assert dataset.ann_file == f'annotations/instances_{split}.json'
        assert dataset.data_prefix.img == f'{split}/'
        assert tuple(dataset.metainfo.classes) == shapes.CLASSES
    assert cfg.model.bbox_head.num_classes == len(shapes.CLASSES)
    coco, duplicates = cfg.val_evaluator
    assert coco.type == 'CocoMetric'
    assert coco.ann_file == 'data/shapes/annotations/instances_val.json'
    assert duplicates.type == 'mmdetr.DuplicateMetric'


def plain_detr_cfg(cfg):
    """The demo's model with the training extras taken out: the core's
    DETR and DETRHead, the same network."""
    model = copy.deepcopy(cfg.model)
    model.type = 'DETR'
    model.pop('aux_head')
    model.pop('aux_loss_weight', None)
    model.bbox_head.type = 'DETRHead'
    for key in [k for k in model.bbox_head if k.startswith('duplicate_')]:
        model.bbox_head.pop(key)
    return model


def test_demo_extras_are_training_only():
    """Whatever the demo's extras and their values: its checkpoint loads
    strictly into plain DETR, which then predicts bit for bit what the demo
    model predicts; and the COCO recipe it derives from has no extras."""
    cfg = Config.fromfile(CONFIG)
    with DefaultScope.overwrite_default_scope('mmdet'):
        demo = MODELS.build(copy.deepcopy(cfg.model))
        plain = MODELS.build(plain_detr_cfg(cfg))
    demo.init_weights()
    assert type(demo) is not type(plain)
    result = plain.load_state_dict(demo.state_dict(), strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    data = make_batch(sizes=((160, 160), (120, 160)), num_boxes=(2, 3),
                      num_classes=len(shapes.CLASSES))
    assert_identical_predictions(plain, demo, data)
    # DETR returns one detection per query: no more than there are
    assert cfg.model.test_cfg.max_per_img == cfg.model.bbox_head.num_query
    base = Config.fromfile(osp.join(osp.dirname(CONFIG),
                                    'detr_r50_8x2_150e_coco.py'))
    assert (base.model.type, base.model.bbox_head.type) == ('DETR',
                                                            'DETRHead')
    assert base.model.bbox_head.loss_cls.bg_cls_weight == 0.1  # the paper
