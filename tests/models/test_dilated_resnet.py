# Copyright (c) mmdetr contributors. All rights reserved.
"""DilatedResNet (mmdetr/models/dilated_resnet.py) and the DC5 configs:
official DC5 weights, converted, compute what official DETR-DC5 computes
(the paper-equation reference with torchvision's dilation)."""
import copy
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import MODELS, DefaultScope

from helpers import ROOT, make_batch, mmdetr_cfg, preprocess
from mmdetr.registry import build_model
from mmdetr.checkpoints.convert import convert_state_dict
from references.reference_detr import (OFFICIAL_COCO_NAMES, official_forward,
                                       official_state_dict)

KEEP = [i for i, name in enumerate(OFFICIAL_COCO_NAMES) if name != 'N/A'
        ] + [91]
DC5 = dict(type='DilatedResNet', strides=(1, 2, 2, 1), dilations=(1, 1, 1, 2))
# official-layout weights: a ResNet-50 at a quarter of its width, a small
# transformer
OFFICIAL_DC5 = dict(depth=50, width=16, d=32, ffn=64, enc=1, dec=1,
                    queries=10)
SIZES = ((64, 96), (80, 56))  # two images, so the batch is padded
MMDETR_DC5 = dict(depth=50, embed_dims=32, ffn=64, enc=1, dec=1, queries=10,
                  num_classes=80)


def dc5_cfg(**backbone):
    cfg = mmdetr_cfg(**MMDETR_DC5)
    cfg['backbone'].update(DC5, base_channels=16, **backbone)
    cfg['bbox_head']['in_channels'] = 16 * 32
    return cfg


def build(cfg):
    with DefaultScope.overwrite_default_scope('mmdet'):
        return MODELS.build(copy.deepcopy(cfg))


def assert_dc5_layer4(backbone):
    layer4 = backbone.layer4
    assert layer4[0].conv2.stride == (1, 1)
    assert layer4[0].conv2.dilation == layer4[0].conv2.padding == (1, 1)
    assert layer4[0].downsample[0].stride == (1, 1)
    for block in list(layer4)[1:]:
        assert block.conv2.dilation == block.conv2.padding == (2, 2)


def test_dilated_stage_starts_with_the_previous_dilation():
    backbone = build_model(dict(dc5_cfg()['backbone']))
    assert_dc5_layer4(backbone)
    # the earlier stages are mmdet's
    assert backbone.layer3[0].conv2.stride == (2, 2)
    assert backbone.layer3[1].conv2.dilation == (1, 1)
    backbone.eval()
    with torch.no_grad():
        feat = backbone(torch.zeros(1, 3, 64, 96))[-1]
    assert feat.shape[-2:] == (4, 6)  # stride 16


@pytest.mark.parametrize('name', ['detr_r50_dc5_8x2_500e_coco.py',
                                  'detr_r101_dc5_8x2_500e_coco.py'])
def test_dc5_configs_dilate_as_official_detr(name):
    cfg = Config.fromfile(osp.join(ROOT, 'configs', name))
    backbone_cfg = dict(cfg.model.backbone, init_cfg=None)
    assert backbone_cfg['type'] == 'DilatedResNet'
    backbone = build_model(backbone_cfg)
    assert backbone.depth == (101 if 'r101' in name else 50)
    assert_dc5_layer4(backbone)
    # the rest of the recipe is the 500-epoch one
    base = Config.fromfile(
        osp.join(ROOT, 'configs', name.replace('_dc5', '')))
    assert cfg.train_cfg == base.train_cfg
    assert cfg.optim_wrapper == base.optim_wrapper


@pytest.fixture(scope='module')
def official_dc5():
    return official_state_dict(**OFFICIAL_DC5, seed=3)


def outputs(model, data):
    model.eval()
    with torch.no_grad():
        inputs = preprocess(model, data, False)
        cls, boxes = model(**inputs, mode='tensor')
    shapes = [s.img_shape for s in inputs['data_samples']]
    return inputs['inputs'], shapes, cls[-1], boxes[-1]


def test_official_dc5_checkpoint_matches_official_dc5(official_dc5):
    """Converted into the DC5 model, official DETR-DC5's outputs; into
    mmdet's ResNet with the same strides and dilations (which dilates
    layer4's first block too), other outputs: why DilatedResNet exists."""
    converted = convert_state_dict(official_dc5, 'official')
    model = build(dc5_cfg())
    model.load_state_dict(converted, strict=True)
    data = make_batch(sizes=SIZES, num_classes=80)
    images, shapes, cls, boxes = outputs(model, data)
    with torch.no_grad():
        ref_logits, ref_boxes = official_forward(official_dc5, images,
                                                 shapes, 4, dilation=True)
    torch.testing.assert_close(cls, ref_logits[..., KEEP], rtol=1e-4,
                               atol=1e-4)
    torch.testing.assert_close(boxes, ref_boxes, rtol=1e-4, atol=1e-4)

    mmdet_dilated = build(dc5_cfg(type='ResNet'))
    mmdet_dilated.load_state_dict(converted, strict=True)
    assert mmdet_dilated.backbone.layer4[0].conv2.dilation == (2, 2)
    _, _, cls, _ = outputs(mmdet_dilated, data)
    assert (cls - ref_logits[..., KEEP]).abs().max() > 1e-3
