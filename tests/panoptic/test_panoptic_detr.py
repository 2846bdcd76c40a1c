# Copyright (c) mmdetr contributors. All rights reserved.
"""PanopticDETR: the mask head on a frozen detector, its losses from the
one matching, predictions in mmdet's data structures, clear errors."""
import copy

import pytest
import torch

from helpers import (build_mmdetr, make_batch, panoptic_detr_cfg, preprocess,
                     randomize_, with_box_masks)
from mmdetr.models import SetTargets
from mmdetr.panoptic import PanopticDETR, panoptic_merge, panoptic_to_sem_seg
from references.reference_panoptic import official_mask_losses

NUM_BOXES = (3, 4)


def _model(seed=0, **cfg_overrides):
    torch.manual_seed(seed)
    cfg = panoptic_detr_cfg()
    cfg.update(cfg_overrides)
    model = build_mmdetr(cfg)
    randomize_(model, seed)
    return model


def _batch():
    return with_box_masks(make_batch(num_boxes=NUM_BOXES))


def _outputs(model, data):
    inputs = preprocess(model, data, True)
    metas = [s.metainfo for s in inputs['data_samples']]
    return (model.forward_outputs(inputs['inputs'], metas),
            inputs['data_samples'], metas)


def test_only_the_mask_head_learns_and_the_backbone_stays_frozen():
    model = _model()
    assert isinstance(model, PanopticDETR)
    model.train()
    assert not model.backbone.training and model.bbox_head.training
    assert model.mask_head.training
    losses = model(**preprocess(model, _batch(), True), mode='loss')
    assert {'loss_cls', 'loss_bbox', 'loss_iou', 'd0.loss_cls', 'loss_mask',
            'loss_dice'} <= set(losses)
    assert losses['loss_mask'] > 0 and losses['loss_dice'] > 0
    sum(v for v in losses.values()).backward()
    for name, p in model.named_parameters():
        if name.startswith('mask_head.'):
            assert p.requires_grad and p.grad is not None, name
        else:
            assert not p.requires_grad and p.grad is None, name
    assert any(p.grad.abs().sum() > 0 for p in model.mask_head.parameters())


def test_an_unfrozen_detector_learns_too():
    model = _model(freeze_detector=False)
    model.train()
    losses = model(**preprocess(model, _batch(), True), mode='loss')
    (losses['loss_mask'] + losses['loss_dice']).backward()
    assert model.bbox_head.transformer.decoder_layers[-1].linear1.weight.grad\
        .abs().sum() > 0


def test_mask_losses_are_officials_on_the_last_layers_matches(monkeypatch):
    """One matching per step; the masks of the matched queries alone,
    scored as official ``loss_masks`` scores all queries' masks."""
    model = _model()
    model.train()
    outputs, samples, metas = _outputs(model, _batch())
    assigner = model.bbox_head.assigner
    gts = [s.gt_instances for s in samples]
    targets = SetTargets.build([g.bboxes for g in gts],
                               [g.labels for g in gts], metas)
    with torch.no_grad():
        matches = assigner.match(outputs['cls_scores'], outputs['bbox_preds'],
                                 targets)
        all_masks = model.mask_logits(outputs)
    img, query, gt = (t.tolist() for t in matches[-1])
    indices = [(torch.tensor([q for i, q in zip(img, query) if i == b]),
                torch.tensor([g for i, g in zip(img, gt) if i == b]))
               for b in range(len(samples))]
    assert sum(len(q) for q, _ in indices) == sum(NUM_BOXES)
    # official pads the targets to the batch's largest image: the canvas
    canvas = metas[0]['batch_input_shape']
    gt_masks = []
    for g in gts:
        m = torch.zeros(len(g), *canvas, dtype=torch.bool)
        t = g.masks.to_tensor(torch.bool, 'cpu')
        m[:, :t.shape[1], :t.shape[2]] = t
        gt_masks.append(m)
    expected = official_mask_losses(all_masks, gt_masks, indices,
                                    float(sum(NUM_BOXES)))

    calls = []
    match = assigner.match

    def counted(*args, **kwargs):
        calls.append(1)
        return match(*args, **kwargs)

    monkeypatch.setattr(assigner, 'match', counted)
    losses = model.loss_by_outputs(outputs, samples, metas)
    assert len(calls) == 1
    for key in ('loss_mask', 'loss_dice'):
        assert losses[key].item() == pytest.approx(expected[key], rel=1e-4)


def _vary_classes_(model, data):
    """Random weights give every query nearly the same decoder output, and
    so the same class: spread the queries, classify what differs between
    them."""
    model.eval()
    with torch.no_grad():
        model.bbox_head.query_embedding.weight.mul_(30)
        outputs, _, _ = _outputs(model, data)
        mean = outputs['hidden_states'][-1].mean((0, 1))
        fc_cls = model.bbox_head.fc_cls
        fc_cls.weight.mul_(20)
        fc_cls.bias.copy_(-fc_cls.weight @ mean)


def test_predictions_fill_mmdets_structures_with_detrs_things():
    model = _model()
    _vary_classes_(model, _batch())
    model.panoptic_postprocess.threshold = 0.0  # random weights: keep all
    model.eval()
    plain = build_mmdetr(
        {k: v for k, v in panoptic_detr_cfg().items()
         if k not in ('mask_head', 'num_things_classes')} | dict(type='DETR'))
    plain.load_state_dict({k: v for k, v in model.state_dict().items()
                           if not k.startswith('mask_head.')}, strict=True)
    # frozen as the panoptic model's detector: torch's attention takes
    # another kernel for weights that need no gradient (1e-6 apart)
    plain.requires_grad_(False)
    plain.eval()
    data = _batch()
    inputs = preprocess(model, data, False)
    ours = model.predict(inputs['inputs'],
                         copy.deepcopy(inputs['data_samples']))
    ref = plain.predict(inputs['inputs'],
                        copy.deepcopy(inputs['data_samples']))
    with torch.no_grad():
        outputs, _, metas = _outputs(model, data)
        masks = model.mask_logits(outputs)
    for i, (o, r) in enumerate(zip(ours, ref)):
        # instances are DETR's detections of things, in DETR's order
        things = r.pred_instances.labels < 3
        assert 0 < things.sum() < 10
        for key in ('bboxes', 'scores', 'labels'):
            assert torch.equal(o.pred_instances[key],
                               r.pred_instances[key][things])
        ori_h, ori_w = o.metainfo['ori_shape']
        assert o.pred_instances.masks.shape == (things.sum(), ori_h, ori_w)
        assert o.pred_instances.masks.dtype == torch.bool
        sem_seg = o.pred_panoptic_seg.sem_seg
        assert sem_seg.shape == (1, ori_h, ori_w)
        seg_map, segments = panoptic_merge(
            outputs['cls_scores'][-1, i], masks[i], [True] * 3 + [False] * 2,
            o.metainfo['img_shape'], (ori_h, ori_w), threshold=0.0)
        assert segments, 'random weights keep queries at threshold 0'
        assert torch.equal(sem_seg,
                           panoptic_to_sem_seg(seg_map, segments, 5))


def test_switches_and_official_defaults():
    model = _model()
    assert model.panoptic_postprocess.threshold == 0.85
    assert model.panoptic_postprocess.min_area == 4
    model = _model(test_cfg=dict(max_per_img=10, panoptic_on=False,
                                 instance_on=False))
    model.eval()
    inputs = preprocess(model, _batch(), False)
    out = model.predict(inputs['inputs'], inputs['data_samples'])
    assert 'pred_panoptic_seg' not in out[0]
    assert 'masks' not in out[0].pred_instances


@pytest.mark.parametrize('change, error', [
    (dict(num_things_classes=6), 'num_things_classes must be an integer'),
    (dict(mask_feat_indices=(1, 0)), '3 of them'),
    (dict(backbone=dict(out_indices=(3, ))), r'out_indices=\(0, 1, 2, 3\)'),
])
def test_bad_configs_are_named(change, error):
    cfg = panoptic_detr_cfg()
    for key, value in change.items():
        if isinstance(value, dict):
            cfg[key] = dict(cfg[key], **value)
        else:
            cfg[key] = value
    with pytest.raises(ValueError, match=error):
        build_mmdetr(cfg)


def test_classifier_and_head_type_are_checked():
    cfg = panoptic_detr_cfg()
    cfg['bbox_head']['loss_cls'] = dict(
        type='FocalLoss', use_sigmoid=True, loss_weight=2.0)
    with pytest.raises(ValueError, match='softmax classifier'):
        build_mmdetr(cfg)
    cfg = panoptic_detr_cfg()
    cfg['bbox_head'] = dict(cfg['bbox_head'], type='GroupDETRHead',
                            num_query_groups=2)
    with pytest.raises(TypeError, match='has a loss of its own'):
        build_mmdetr(cfg)


def test_missing_masks_and_wrong_channels_are_named():
    model = _model()
    model.train()
    data = make_batch(num_boxes=NUM_BOXES)  # boxes, no masks
    with pytest.raises(KeyError, match='LoadPanopticTargets'):
        model(**preprocess(model, data, True), mode='loss')
    cfg = panoptic_detr_cfg()
    cfg['mask_head']['in_channels'] = (256, 128, 32)
    model = build_mmdetr(cfg)
    model.eval()
    inputs = preprocess(model, _batch(), False)
    with pytest.raises(ValueError, match=r'in_channels=\(256, 128, 32\)'):
        model.predict(inputs['inputs'], inputs['data_samples'])
