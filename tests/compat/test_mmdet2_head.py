# Copyright (c) mmdetr contributors. All rights reserved.
"""mmdet 2.x's DETRHead (mmdetr.compat.DETRHead): forward_train,
get_bboxes tuples, simple_test(_bboxes), get_targets and _get_target_single,
with img_metas as 2.x wrote them; the 3.x runner path keeps returning
InstanceData."""
import numpy as np
import pytest
import torch
from mmengine.structures import InstanceData

from helpers import (build_mmdetr, head_outputs_and_targets, make_batch,
                     mmdetr_cfg, preprocess)
from mmdetr.compat import DETRHead, normalise_img_meta


def build_mmdet2(**overrides):
    """The tiny DETR of the helpers with mmdet 2.x's head."""
    cfg = mmdetr_cfg(**overrides)
    cfg['bbox_head']['type'] = DETRHead
    return build_mmdetr(cfg)


@pytest.fixture(scope='module')
def model():
    m = build_mmdet2()
    m.eval()
    return m


def mmdet2_metas(h=(64, 48), w=(80, 72), scale=1.5):
    """img_metas as mmdet 2.x's pipeline wrote them: (h, w, 3) shapes and a
    (w, h, w, h) float32 scale factor."""
    return [
        dict(img_shape=(hi, wi, 3), pad_shape=(max(h), max(w), 3),
             batch_input_shape=(max(h), max(w)),
             scale_factor=np.array([scale, scale * 1.25, scale, scale * 1.25],
                                   dtype=np.float32))
        for hi, wi in zip(h, w)
    ]


def feats(model, metas, seed=0):
    gen = torch.Generator().manual_seed(seed)
    h, w = metas[0]['batch_input_shape']
    c = model.bbox_head.in_channels
    return [torch.rand(len(metas), c, h // 32 + 1, w // 32 + 1,
                       generator=gen)]


def gts(metas, seed=1):
    gen = torch.Generator().manual_seed(seed)
    boxes, labels = [], []
    for n, meta in zip((2, 3), metas):
        h, w = meta['img_shape'][:2]
        xy = torch.rand(n, 2, generator=gen) * torch.tensor([w / 2, h / 2])
        boxes.append(torch.cat([xy, xy + torch.tensor([w / 3, h / 3])], 1))
        labels.append(torch.randint(0, 5, (n, ), generator=gen))
    return boxes, labels


def test_forward_train_is_forward_then_loss(model):
    head = model.bbox_head
    metas = mmdet2_metas()
    x = feats(model, metas)
    boxes, labels = gts(metas)
    losses = head.forward_train(x, metas, boxes, labels)
    expected = head.loss(*head(x, metas), boxes, labels, metas)
    assert losses.keys() == expected.keys()
    assert {'loss_cls', 'loss_bbox', 'loss_iou', 'd0.loss_cls'} <= set(losses)
    for k in losses:
        torch.testing.assert_close(losses[k], expected[k], msg=k)
        assert losses[k] > 0, k


def test_get_bboxes_returns_mmdet2_tuples_with_score_last(model):
    head = model.bbox_head
    metas = mmdet2_metas()
    outs = head(feats(model, metas), metas)
    results = head.get_bboxes(*outs, metas)
    instances = head.predict_by_feat(
        *outs, [normalise_img_meta(m) for m in metas])
    assert len(results) == 2
    for (det_bboxes, det_labels), inst, meta in zip(results, instances,
                                                    metas):
        assert isinstance(inst, InstanceData)
        n = head.test_cfg['max_per_img']
        assert det_bboxes.shape == (n, 5) and det_labels.shape == (n, )
        torch.testing.assert_close(det_bboxes[:, :4], inst.bboxes)
        torch.testing.assert_close(det_bboxes[:, 4], inst.scores)
        assert torch.equal(det_labels, inst.labels)
        # scores sorted, boxes inside the image
        assert torch.all(det_bboxes[:-1, 4] >= det_bboxes[1:, 4])
        h, w = meta['img_shape'][:2]
        assert det_bboxes[:, 0::2].max() <= w and det_bboxes[:, 1::2].max(
        ) <= h


@pytest.mark.parametrize('form', ['number', 'pair', 'array4', 'tensor4'])
def test_rescale_takes_every_mmdet2_scale_factor_form(model, form):
    head = model.bbox_head
    metas = mmdet2_metas(scale=2.0)
    outs = head(feats(model, metas), metas)
    plain = head.get_bboxes(*outs, metas, rescale=False)
    for m in metas:
        sw, sh = float(m['scale_factor'][0]), float(m['scale_factor'][1])
        m['scale_factor'] = {
            'number': sw,
            'pair': (sw, sh),
            'array4': np.array([sw, sh, sw, sh]),
            'tensor4': torch.tensor([sw, sh, sw, sh]),
        }[form]
    rescaled = head.get_bboxes(*outs, metas, rescale=True)
    for (b0, _), (b1, _), m in zip(plain, rescaled, metas):
        sw = float(np.asarray(m['scale_factor']).ravel()[0])
        sh = sw if form == 'number' else float(
            np.asarray(m['scale_factor']).ravel()[1])
        scale = b0.new_tensor([sw, sh, sw, sh])
        torch.testing.assert_close(b1[:, :4], b0[:, :4] / scale)
        torch.testing.assert_close(b1[:, 4], b0[:, 4])


def test_simple_test_is_forward_then_get_bboxes(model):
    head = model.bbox_head
    metas = mmdet2_metas()
    x = feats(model, metas)
    expected = head.get_bboxes(*head(x, metas), metas, rescale=True)
    for results in (head.simple_test(x, metas, rescale=True),
                    head.simple_test_bboxes(x, metas, rescale=True)):
        for (b, lab), (eb, elab) in zip(results, expected):
            torch.testing.assert_close(b, eb)
            assert torch.equal(lab, elab)


def test_runner_predict_still_returns_instance_data_matching_get_bboxes():
    model = build_mmdet2()
    model.eval()
    data = preprocess(model, make_batch(num_boxes=(1, 2)), False)
    samples = model(**data, mode='predict')
    metas = [s.metainfo for s in samples]
    outs = model.bbox_head(model.extract_feat(data['inputs']), metas)
    tuples = model.bbox_head.get_bboxes(*outs, metas, rescale=True)
    for sample, (det_bboxes, det_labels) in zip(samples, tuples):
        pred = sample.pred_instances
        assert isinstance(pred, InstanceData)
        torch.testing.assert_close(pred.bboxes, det_bboxes[:, :4])
        torch.testing.assert_close(pred.scores, det_bboxes[:, 4])
        assert torch.equal(pred.labels, det_labels)


def test_img_meta_normalisation():
    meta = normalise_img_meta(
        dict(img_shape=(10, 20, 3), scale_factor=np.array([2., 3., 2., 3.]),
             other='kept'))
    assert meta == dict(img_shape=(10, 20), scale_factor=(2., 3.),
                        other='kept')
    assert normalise_img_meta(dict(scale_factor=0.5))['scale_factor'] == (
        0.5, 0.5)
    with pytest.raises(ValueError, match='scale_factor'):
        normalise_img_meta(dict(scale_factor=(1., 2., 3.)))
    with pytest.raises(ValueError, match='scale_factor'):
        normalise_img_meta(dict(scale_factor=(1., 2., 3., 4.)))


def test_bad_mmdet2_calls_fail_clearly(model):
    head = model.bbox_head
    metas = mmdet2_metas()
    x = feats(model, metas)
    boxes, labels = gts(metas)
    with pytest.raises(ValueError, match='proposal_cfg'):
        head.forward_train(x, metas, boxes, labels, proposal_cfg=dict())
    with pytest.raises(ValueError, match='gt_labels'):
        head.forward_train(x, metas, boxes)
    for m in metas:
        del m['batch_input_shape']
    with pytest.raises(KeyError, match='batch_input_shape'):
        head.simple_test(x, metas)


def test_target_entry_points_equal_the_reference():
    """get_targets and _get_target_single (mmdet 2.x's interface) match as a
    batch of one layer / one image and give the reference's dense targets
    (tests/references/reference_matching.py)."""
    from references.reference_matching import reference_targets
    torch.manual_seed(0)
    model = build_mmdet2()
    outs, gt_bboxes, gt_labels, metas = head_outputs_and_targets(
        model, make_batch(num_boxes=(3, 0), seed=4))
    head = model.bbox_head
    cls_scores, bbox_preds = outs[0][-1][-1], outs[1][-1][-1]
    batch = head.get_targets(list(cls_scores), list(bbox_preds), gt_bboxes,
                             gt_labels, metas)
    assert batch[4] == 3 and batch[5] == 2 * 20 - 3
    for i in range(2):
        want = reference_targets(head, cls_scores[i],
                                 bbox_preds[i], gt_bboxes[i], gt_labels[i],
                                 metas[i])
        single = head._get_target_single(cls_scores[i], bbox_preds[i],
                                         gt_bboxes[i], gt_labels[i],
                                         metas[i])
        for k in range(4):
            torch.testing.assert_close(single[k], want[k], rtol=0, atol=1e-7)
            torch.testing.assert_close(batch[k][i], want[k], rtol=0,
                                       atol=1e-7)
        pos_inds, neg_inds = single[4], single[5]
        assert len(pos_inds) == want[4] and len(neg_inds) == 20 - want[4]
        assert torch.equal(single[3][pos_inds], torch.ones(want[4], 4))
    with pytest.raises(NotImplementedError, match='gt_bboxes_ignore'):
        head.get_targets(list(cls_scores), list(bbox_preds), gt_bboxes,
                         gt_labels, metas, [None, None])
    with pytest.raises(NotImplementedError, match='gt_bboxes_ignore'):
        head.loss_single(cls_scores, bbox_preds, gt_bboxes, gt_labels, metas,
                         [None, None])


def test_network_and_3x_methods_are_the_core_heads():
    """The 2.x head is the core head plus methods: the same parameters, the
    same outputs and losses for the same weights."""
    from mmdetr.models import DETRHead as CoreHead
    torch.manual_seed(0)
    old = build_mmdet2()
    core = build_mmdetr()
    assert type(core.bbox_head) is CoreHead
    assert isinstance(old.bbox_head, CoreHead)
    core.load_state_dict(old.state_dict(), strict=True)
    data = make_batch(num_boxes=(2, 4), seed=2)
    old.train()
    core.train()
    ours = old(**preprocess(old, data, True), mode='loss')
    theirs = core(**preprocess(core, data, True), mode='loss')
    assert set(ours) == set(theirs)
    for key, value in ours.items():
        assert torch.equal(value, theirs[key]), key
