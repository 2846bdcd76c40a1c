# Copyright (c) mmdetr contributors. All rights reserved.
"""configs/detr_r18_shapes_demo.py trains from scratch: nothing in its
backbone may be frozen or start at zero, and it reads what the generator
writes."""
import os.path as osp

import torch
from mmengine.config import Config
from mmengine.registry import MODELS, DefaultScope
from torch.nn.modules.batchnorm import _BatchNorm

from helpers import ROOT, load_tool

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


def test_demo_recipe_is_detr_with_training_only_extras():
    """The demo trains DETR with an auxiliary FCOS head on the encoder
    output (training only), no-object weight 0.25 and 2.0 for the last
    decoder layer's would-be duplicates, without query groups
    (measured slower at the same training time here, docs/demo.md); the
    COCO recipe keeps DETR's 0.1, no groups and no auxiliary head."""
    cfg = Config.fromfile(CONFIG)
    assert cfg.model.bbox_head.get('num_query_groups', 1) == 1
    assert cfg.model.bbox_head.loss_cls.bg_cls_weight == 0.25
    assert cfg.model.bbox_head.duplicate_cls_weight == 2.0
    assert cfg.model.bbox_head.duplicate_weight_layers == 'last'
    # DETR returns one detection per query: no more than there are
    assert cfg.model.test_cfg.max_per_img == cfg.model.bbox_head.num_query
    aux = cfg.model.aux_head
    assert aux.type == 'mmdet.FCOSHead'
    assert aux.in_channels == cfg.model.bbox_head.transformer.embed_dims
    assert aux.num_classes == cfg.model.bbox_head.num_classes
    base = Config.fromfile(osp.join(osp.dirname(CONFIG),
                                    'detr_r50_8x2_150e_coco.py'))
    assert base.model.bbox_head.get('num_query_groups', 1) == 1
    assert base.model.bbox_head.loss_cls.bg_cls_weight == 0.1
    assert base.model.bbox_head.get('duplicate_cls_weight') is None
    assert base.model.get('aux_head') is None
