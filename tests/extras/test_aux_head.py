# Copyright (c) mmdetr contributors. All rights reserved.
"""AuxHeadDETR(aux_head=...): a training-only dense head on the encoder
output; inference, checkpoints and conversion are plain DETR's."""
import pytest
import torch

from helpers import (TINY, assert_identical_predictions, build_mmdetr,
                     count_step, make_batch, mmdetr_cfg, preprocess)
from mmdetr.checkpoints import convert_state_dict


def aux_cfg(weight=1.0):
    cfg = mmdetr_cfg()
    cfg['type'] = 'AuxHeadDETR'
    cfg['aux_head'] = dict(
        type='mmdet.FCOSHead',
        num_classes=TINY['num_classes'],
        in_channels=TINY['embed_dims'],
        feat_channels=32,
        stacked_convs=1,
        strides=[32],
        regress_ranges=((-1, 1e8), ),
        norm_cfg=dict(type='GN', num_groups=8, requires_grad=True),
        center_sampling=True,
        loss_bbox=dict(type='mmdet.GIoULoss', loss_weight=2.0))
    cfg['aux_loss_weight'] = weight
    return cfg


def built_pair(weight=1.0):
    """A model with the auxiliary head and a plain one with its weights."""
    torch.manual_seed(0)
    aux = build_mmdetr(aux_cfg(weight))
    plain = build_mmdetr(mmdetr_cfg())
    result = plain.load_state_dict(aux.state_dict(), strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    return aux, plain


def test_plain_detr_has_none():
    model = build_mmdetr(mmdetr_cfg())
    assert not hasattr(model, 'aux_head')
    assert not any(k.startswith('aux_head.') for k in model.state_dict())
    model.train()
    losses = model(**preprocess(model, make_batch(num_boxes=(2, 3)), True),
                   mode='loss')
    assert not any(k.startswith('aux.') for k in losses)


def test_detr_losses_are_unchanged_and_aux_losses_are_added():
    aux, plain = built_pair(weight=2.0)
    data = make_batch(num_boxes=(2, 5))
    aux.train()
    plain.train()
    losses_a = aux(**preprocess(aux, data, True), mode='loss')
    losses_p = plain(**preprocess(plain, data, True), mode='loss')
    extra = set(losses_a) - set(losses_p)
    assert extra == {'aux.loss_cls', 'aux.loss_bbox', 'aux.loss_centerness'}
    for key in losses_p:  # DETR's own terms: the same computation
        assert torch.equal(losses_a[key], losses_p[key]), key
    # the weight scales the head's own losses
    inputs = preprocess(aux, data, True)
    metas = [s.metainfo for s in inputs['data_samples']]
    memory = aux.forward_outputs(inputs['inputs'], metas)['memory']
    own = aux.aux_head.loss((memory, ), inputs['data_samples'])
    torch.testing.assert_close(losses_a['aux.loss_cls'],
                               2.0 * own['loss_cls'])


def test_aux_losses_train_the_encoder_and_the_backbone():
    aux, _ = built_pair()
    aux.train()
    losses = aux(**preprocess(aux, make_batch(num_boxes=(2, 5)), True),
                 mode='loss')
    sum(v for k, v in losses.items() if k.startswith('aux.')).backward()
    grads = {
        'encoder': aux.bbox_head.transformer.encoder_layers,
        'backbone': aux.backbone,
        'aux head': aux.aux_head
    }
    for name, module in grads.items():
        total = sum(p.grad.abs().sum() for p in module.parameters()
                    if p.grad is not None)
        assert total > 0, name
    # the decoder is not in the auxiliary loss
    assert all(p.grad is None or not p.grad.any()
               for p in aux.bbox_head.transformer.decoder_layers.parameters())


def test_inference_is_plain_detr_bit_for_bit_and_never_runs_the_aux_head(
        monkeypatch):
    aux, plain = built_pair()
    aux.eval()
    plain.eval()

    def refuse(*args, **kwargs):
        raise AssertionError('the auxiliary head ran at inference')

    monkeypatch.setattr(aux.aux_head, 'forward', refuse)
    monkeypatch.setattr(aux.aux_head, 'loss', refuse)
    assert_identical_predictions(plain, aux, make_batch(num_boxes=(2, 3)))


def test_memory_is_an_explicit_output_not_a_hook():
    aux, _ = built_pair()
    aux.train()
    data = preprocess(aux, make_batch(num_boxes=(1, 2)), True)
    metas = [s.metainfo for s in data['data_samples']]
    outputs = aux.forward_outputs(data['inputs'], metas)
    feat = outputs['feats'][-1]
    assert outputs['memory'].shape == (2, TINY['embed_dims'],
                                       *feat.shape[-2:])
    assert outputs['memory_mask'].shape == (2, *feat.shape[-2:])
    aux(**data, mode='loss')
    assert not any(m._forward_hooks for m in aux.modules())


def test_converter_drops_the_aux_head():
    aux, _ = built_pair()
    state = aux.state_dict()
    notes = []
    theirs = convert_state_dict(state, 'auto', 'mmdet3', notes)
    assert not any('aux' in k for k in theirs)
    assert any('training-only' in n for n in notes)
    back = convert_state_dict(theirs, 'mmdet3', 'mmdetr')
    assert set(back) == {
        k for k in state if not k.startswith('aux_head.')}
    for key, value in back.items():
        assert torch.equal(value, state[key]), key


def test_host_syncs_with_the_aux_head_are_detrs_plus_fcos_own():
    """DETR's step keeps its 2 waits + 1 copy; mmdet's FCOS loss adds its
    own reads of the number of positives (docs/demo.md says how many)."""
    plain, _ = count_step(build_mmdetr(mmdetr_cfg()))
    with_aux, _ = count_step(build_mmdetr(aux_cfg()))
    assert plain.counts == {'to_host': 2}, plain.events
    assert with_aux.counts == {'to_host': 2, 'item': 5, 'nonzero': 1}, \
        with_aux.events
    assert with_aux.copies == plain.copies == {'to_device': 1}


def test_onnx_export_is_plain_detrs(tmp_path):
    """The exported graph of a model with the auxiliary head holds none of
    its weights and predicts what plain DETR with the same weights does."""
    from mmdetr.deploy.export import export_onnx
    from mmdetr.deploy.ort_detector import make_session
    from mmdetr.deploy.verify import compare_with_pytorch, within_tolerance
    onnx = __import__('onnx')
    aux, plain = built_pair()
    path = str(tmp_path / 'aux.onnx')
    export_onnx(aux.eval(), path, shape=(96, 128), dynamic=True)
    export_onnx(plain.eval(), str(tmp_path / 'plain.onnx'), shape=(96, 128),
                dynamic=True)

    def weights(onnx_file):
        return sorted(
            tuple(t.dims) for t in onnx.load(onnx_file).graph.initializer)

    # the same tensors as plain DETR's graph: none of the head's
    assert weights(path) and weights(path) == weights(
        str(tmp_path / 'plain.onnx'))
    diffs = compare_with_pytorch(plain.eval(), make_session(path),
                                 [(96, 128), (64, 80)], seed=1)
    assert diffs['num_dets'] == 2 * plain.bbox_head.num_query
    assert within_tolerance(diffs), diffs


def _narrow_head(cfg):
    cfg['aux_head']['in_channels'] = 32


def _no_loss_head(cfg):
    cfg['aux_head'] = dict(type='mmdet.ResNet', depth=18)


def _weight(value):
    return lambda cfg: cfg.update(aux_loss_weight=value)


@pytest.mark.parametrize('change, match', [
    (_narrow_head, r'aux_head\.in_channels=32'),
    (_no_loss_head, 'has no loss'),
    (_weight(0), 'aux_loss_weight'),
    (_weight('1'), 'aux_loss_weight'),
])
def test_bad_aux_head_settings_are_named(change, match):
    cfg = aux_cfg()
    change(cfg)
    with pytest.raises((ValueError, TypeError), match=match):
        build_mmdetr(cfg)
