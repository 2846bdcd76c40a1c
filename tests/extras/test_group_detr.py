# Copyright (c) mmdetr contributors. All rights reserved.
"""Group DETR (GroupDETRHead(num_query_groups=K)): training only, inference
is plain DETR."""
import pytest
import torch
import torch.nn as nn

from helpers import (assert_identical_predictions, build_mmdetr, count_step,
                     make_batch, mmdetr_cfg, preprocess)
from mmdetr.extras.group_detr import groups_as_images, within_groups
from mmdetr.checkpoints import convert_state_dict

K = 3


def grouped_cfg(num_groups=K, **overrides):
    cfg = mmdetr_cfg(**overrides)
    cfg['bbox_head'].update(type='GroupDETRHead', num_query_groups=num_groups)
    return cfg


def test_within_groups_equals_attention_masked_between_groups():
    torch.manual_seed(0)
    mha = nn.MultiheadAttention(16, 4, batch_first=True).eval()
    q, k, v = (torch.randn(2, K * 5, 16) for _ in range(3))
    out = within_groups(
        lambda q, k, v: mha(q, k, v, need_weights=False)[0], K, q, k, v)
    group = torch.arange(K * 5) // 5
    blocked = group[:, None] != group[None, :]  # True = may not attend
    ref, _ = mha(q, k, v, attn_mask=blocked, need_weights=False)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)
    # and it differs from attention across groups, so the test can fail
    assert not torch.allclose(out, mha(q, k, v, need_weights=False)[0],
                              atol=1e-3)


def test_groups_as_images_puts_group_g_of_image_i_at_g_times_bs_plus_i():
    layers, bs, q = 2, 3, 4
    # value = 100 * image + query index within all groups
    scores = (torch.arange(bs)[:, None] * 100 +
              torch.arange(K * q)[None]).float()
    scores = scores[None, :, :, None].expand(layers, bs, K * q, 5)
    boxes = scores[..., :4]
    metas = [dict(i=i) for i in range(bs)]
    s, b, (m, ) = groups_as_images(scores, boxes, K, metas)
    assert s.shape == (layers, K * bs, q, 5) and b.shape == (layers, K * bs,
                                                            q, 4)
    for g in range(K):
        for i in range(bs):
            expected = i * 100 + g * q + torch.arange(q)
            assert torch.equal(s[1, g * bs + i, :, 0], expected.float())
            assert m[g * bs + i] == dict(i=i)


def test_training_forward_has_every_group_and_group_0_is_plain_detr():
    torch.manual_seed(0)
    grouped = build_mmdetr(grouped_cfg())
    plain = build_mmdetr(mmdetr_cfg())
    plain.load_state_dict(grouped.state_dict())  # drops the extra groups
    data = make_batch(num_boxes=(2, 3))
    grouped.train()
    plain.train()  # dropout is 0 in the tiny config
    inputs = preprocess(grouped, data, True)
    scores_g, boxes_g = grouped._forward(inputs['inputs'],
                                         inputs['data_samples'])
    scores_p, boxes_p = plain._forward(inputs['inputs'],
                                       inputs['data_samples'])
    num_query = plain.bbox_head.num_query
    assert scores_g[0].shape[2] == K * num_query
    # group 0 never sees the other groups: exactly DETR's own computation
    torch.testing.assert_close(scores_g[0][:, :, :num_query], scores_p[0],
                               rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(boxes_g[0][:, :, :num_query], boxes_p[0],
                               rtol=1e-5, atol=1e-5)


def test_inference_is_plain_detr_bit_for_bit():
    torch.manual_seed(0)
    grouped = build_mmdetr(grouped_cfg()).eval()
    plain = build_mmdetr(mmdetr_cfg()).eval()
    result = plain.load_state_dict(grouped.state_dict(), strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    data = make_batch(num_boxes=(2, 3))
    assert_identical_predictions(plain, grouped, data)
    inputs = preprocess(grouped, data, False)
    raw_g = grouped._forward(inputs['inputs'], inputs['data_samples'])
    assert raw_g[0][0].shape[2] == grouped.bbox_head.num_query


def test_identical_groups_give_the_plain_loss():
    """K copies of the same queries predict K copies of the same sets; each
    group's loss is the plain loss, and the K-fold normalisation makes the
    total equal to it: the group loss is the plain one, per group."""
    torch.manual_seed(0)
    grouped = build_mmdetr(grouped_cfg())
    plain = build_mmdetr(mmdetr_cfg())
    plain.load_state_dict(grouped.state_dict())
    head = grouped.bbox_head
    with torch.no_grad():
        head.group_query_embedding.weight.copy_(
            head.query_embedding.weight.repeat(K - 1, 1))
    data = make_batch(num_boxes=(2, 5))
    grouped.train()
    plain.train()
    loss_g = grouped(**preprocess(grouped, data, True), mode='loss')
    loss_p = plain(**preprocess(plain, data, True), mode='loss')
    assert loss_g.keys() == loss_p.keys()
    for key in loss_p:
        torch.testing.assert_close(loss_g[key], loss_p[key], rtol=1e-5,
                                   atol=1e-6, msg=key)


def test_distinct_groups_change_the_loss_and_train_every_group():
    torch.manual_seed(0)
    grouped = build_mmdetr(grouped_cfg())
    plain = build_mmdetr(mmdetr_cfg())
    plain.load_state_dict(grouped.state_dict())
    data = make_batch(num_boxes=(2, 5))
    grouped.train()
    plain.train()
    loss_g = grouped(**preprocess(grouped, data, True), mode='loss')
    loss_p = plain(**preprocess(plain, data, True), mode='loss')
    assert not torch.allclose(loss_g['loss_cls'], loss_p['loss_cls'])
    sum(loss_g.values()).backward()
    grad = grouped.bbox_head.group_query_embedding.weight.grad
    assert grad is not None
    # every extra group's queries learn
    assert (grad.reshape(K - 1, -1).abs().sum(1) > 0).all()


def test_matching_of_every_group_is_one_batched_call(monkeypatch):
    torch.manual_seed(0)
    model = build_mmdetr(grouped_cfg())
    assigner = model.bbox_head.assigner
    calls = []
    batched = assigner.match

    def spy(pred_scores, *args, **kwargs):
        calls.append(tuple(pred_scores.shape))
        return batched(pred_scores, *args, **kwargs)

    monkeypatch.setattr(assigner, 'match', spy)
    data = make_batch(num_boxes=(2, 5))
    model.train()
    model(**preprocess(model, data, True), mode='loss')
    num_layers = model.bbox_head.transformer.num_decoder_layers
    bs, q = len(data['inputs']), model.bbox_head.num_query
    # every layer, every group of every image: one cost computation
    assert calls == [(num_layers, K * bs, q, model.bbox_head.cls_out_channels)]


def test_groups_add_no_host_sync():
    """The extra matching work of K groups rides on the same single copy of
    the cost matrix to the host (and the one copy of the matches back)."""
    counter, _ = count_step(build_mmdetr(grouped_cfg()))
    assert counter.counts == {'to_host': 2}, counter.events
    assert counter.copies == {'to_device': 1}, counter.events


def test_converter_drops_the_training_only_groups():
    model = build_mmdetr(grouped_cfg())
    state = model.state_dict()
    notes = []
    theirs = convert_state_dict(state, 'auto', 'mmdet3', notes)
    assert not any('group' in k for k in theirs)
    assert any('training-only' in n for n in notes)
    back = convert_state_dict(theirs, 'mmdet3', 'mmdetr')
    assert set(back) == set(state) - {'bbox_head.group_query_embedding.weight'}
    for key, value in back.items():
        assert torch.equal(value, state[key]), key


@pytest.mark.parametrize('bad', [0, 1, -1, 2.0, '3', True])
def test_bad_num_query_groups_is_named(bad):
    with pytest.raises(ValueError, match='num_query_groups'):
        build_mmdetr(grouped_cfg(bad))


def test_core_knows_nothing_of_groups():
    """The plain head and transformer have no group branch: the group
    count lives in the extra's classes only."""
    plain = build_mmdetr(mmdetr_cfg())
    grouped = build_mmdetr(grouped_cfg())
    assert not hasattr(plain.bbox_head, 'num_query_groups')
    assert type(grouped.bbox_head.transformer).__name__ == \
        'GroupDetrTransformer'
    assert all(layer.num_groups == K
               for layer in grouped.bbox_head.transformer.decoder_layers)
