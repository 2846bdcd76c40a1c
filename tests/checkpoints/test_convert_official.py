# Copyright (c) mmdetr contributors. All rights reserved.
"""Official DETR weights, converted, make mmdetr compute what official DETR
computes.

The source is a random state dict under the official keys (see
``references.reference_detr.official_state_dict``); the reference is
official DETR written from the paper's equations in
``tests/references/reference_detr.py``, reading the
unconverted weights. Class indices are translated with the test's own list of
COCO names, not the converter's.
"""
import copy

import pytest
import torch
from scipy.optimize import linear_sum_assignment

from mmengine.registry import MODELS, DefaultScope

from helpers import make_batch, mmdetr_cfg, preprocess
from mmdetr.checkpoints.convert import convert_state_dict
from references.reference_detr import (OFFICIAL_COCO_NAMES, official_forward,
                                       official_losses, official_state_dict)

# official logit index of each mmdet COCO class, then no-object
KEEP = [i for i, name in enumerate(OFFICIAL_COCO_NAMES) if name != 'N/A'
        ] + [91]
TINY = dict(depth=18, d=64, ffn=128, enc=2, dec=2, queries=20)
HEADS = 4  # helpers.TINY models have 4 heads


@pytest.fixture(scope='module')
def source():
    return official_state_dict(**TINY, seed=1)


@pytest.fixture(scope='module')
def model():
    """mmdetr's tiny DETR with COCO's 80 classes; every test loads all its
    weights (strictly), so it is built once and not initialised."""
    with DefaultScope.overwrite_default_scope('mmdet'):
        return MODELS.build(mmdetr_cfg(num_classes=80))


def assert_matches_official(model, sd, data):
    """Raw outputs of every decoder layer, detections and every loss term of
    ``model`` equal official DETR's on ``sd`` within 1e-4."""
    model.eval()
    with torch.no_grad():
        inputs = preprocess(model, data, False)
        shapes = [s.img_shape for s in inputs['data_samples']]
        ref_logits, ref_boxes = official_forward(sd, inputs['inputs'], shapes,
                                                 HEADS)
        cls, boxes = model(**inputs, mode='tensor')
        torch.testing.assert_close(cls[-1], ref_logits[..., KEEP], rtol=1e-4,
                                   atol=1e-4)
        torch.testing.assert_close(boxes[-1], ref_boxes, rtol=1e-4,
                                   atol=1e-4)
        results = model.test_step(copy.deepcopy(data))

    # detections: official PostProcess on the last layer (mmdet also clamps
    # boxes to the image; so does the reference here)
    prob = ref_logits[-1].softmax(-1)
    ref_scores, ref_ids = prob[..., :-1].max(-1)
    for i, result in enumerate(results):
        oh, ow = data['data_samples'][i].metainfo['ori_shape']
        ref_xyxy = torch.stack(
            (ref_boxes[-1, i, :, 0] - ref_boxes[-1, i, :, 2] / 2,
             ref_boxes[-1, i, :, 1] - ref_boxes[-1, i, :, 3] / 2,
             ref_boxes[-1, i, :, 0] + ref_boxes[-1, i, :, 2] / 2,
             ref_boxes[-1, i, :, 1] + ref_boxes[-1, i, :, 3] / 2),
            -1).clamp(0, 1) * torch.tensor([ow, oh, ow, oh])
        pred = result.pred_instances
        ids = torch.tensor(KEEP)[pred.labels]
        assert len(pred) == len(ref_xyxy)
        # pair each detection with a reference query (near-ties may be
        # ordered differently), then every pair must agree
        cost = (torch.cdist(pred.bboxes, ref_xyxy, p=1) +
                1e4 * (pred.scores[:, None] - ref_scores[i][None]).abs() +
                1e4 * (ids[:, None] != ref_ids[i][None]))
        rows, cols = linear_sum_assignment(cost.numpy())
        assert torch.equal(ids[rows], ref_ids[i][cols])
        torch.testing.assert_close(pred.scores[rows], ref_scores[i][cols],
                                   rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(pred.bboxes[rows], ref_xyxy[cols],
                                   rtol=1e-4, atol=1e-4)

    # losses: the paper's set loss with official class ids as targets
    targets = []
    for sample in data['data_samples']:
        h, w = sample.metainfo['img_shape']
        xyxy = sample.gt_instances.bboxes / torch.tensor([w, h, w, h])
        targets.append(dict(
            labels=torch.tensor(KEEP)[sample.gt_instances.labels],
            boxes=torch.stack(((xyxy[:, 0] + xyxy[:, 2]) / 2,
                               (xyxy[:, 1] + xyxy[:, 3]) / 2,
                               xyxy[:, 2] - xyxy[:, 0],
                               xyxy[:, 3] - xyxy[:, 1]), -1)))
    with torch.no_grad():
        ref_losses = official_losses(ref_logits, ref_boxes, targets)
    model.train()
    losses = model(**preprocess(model, data, True), mode='loss')
    assert set(losses) == set(ref_losses)
    for key, value in ref_losses.items():
        torch.testing.assert_close(
            losses[key], value, rtol=1e-4, atol=1e-6, msg=key)


def test_official_checkpoint_matches_official_detr(source, model):
    """Two images of different sizes (padding masks on), one with no box."""
    model.load_state_dict(convert_state_dict(source, 'official'), strict=True)
    assert_matches_official(model, source,
                            make_batch(num_boxes=(0, 6), num_classes=80))
    assert_matches_official(model, source,
                            make_batch(num_boxes=(3, 2), num_classes=80,
                                       seed=4))


def _swap(sd, a, b):
    sd[a], sd[b] = sd[b].clone(), sd[a].clone()


def _swap_class_rows(sd, a, b):
    for key in ('bbox_head.fc_cls.weight', 'bbox_head.fc_cls.bias'):
        rows = sd[key].clone()
        rows[[a, b]] = rows[[b, a]]
        sd[key] = rows


ENC = 'bbox_head.transformer.encoder_layers'
DEC = 'bbox_head.transformer.decoder_layers'
MISPLACED = {
    'encoder layers 0/1 linear1':
    lambda sd: _swap(sd, f'{ENC}.0.linear1.weight', f'{ENC}.1.linear1.weight'),
    'decoder layers 0/1 cross-attention':
    lambda sd: _swap(sd, f'{DEC}.0.cross_attn.in_proj_weight',
                     f'{DEC}.1.cross_attn.in_proj_weight'),
    'decoder norm2/norm3':
    lambda sd: _swap(sd, f'{DEC}.1.norm2.weight', f'{DEC}.1.norm3.weight'),
    'backbone bn1/bn2 running_var':
    lambda sd: _swap(sd, 'backbone.layer2.0.bn1.running_var',
                     'backbone.layer2.0.bn2.running_var'),
    'classes 3/4': lambda sd: _swap_class_rows(sd, 3, 4),
}


@pytest.mark.parametrize('misplace', MISPLACED.values(), ids=MISPLACED)
def test_comparison_fails_when_one_tensor_is_misplaced(source, model,
                                                       misplace):
    """The comparison is sharp: a conversion that crossed two tensors (here
    swapped after converting) no longer matches official DETR."""
    converted = convert_state_dict(source, 'official')
    misplace(converted)
    model.load_state_dict(converted, strict=True)
    with pytest.raises(AssertionError):
        assert_matches_official(model, source,
                                make_batch(num_boxes=(0, 6), num_classes=80))
