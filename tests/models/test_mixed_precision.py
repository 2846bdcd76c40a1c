# Copyright (c) mmdetr contributors. All rights reserved.
"""Mixed precision (bfloat16 autocast, as on a CPU; the same choices hold
for float16/bfloat16 on a GPU): the parts named in mmdetr.models.precision
stay in float32, bfloat16 predictions of an R50 DETR stay within stated
tolerances of float32's, and the matching does not depend on the dtype.

Runs on any CPU: torch computes bfloat16 also where the CPU has no
bfloat16 instructions (slowly), so the numbers checked here do not need
them."""
import copy
import logging
import math
import os.path as osp

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from helpers import (ROOT, build_mmdetr, make_batch, mmdetr_cfg, preprocess,
                     randomize_)
from mmdetr.models import (SetTargets, SinePositionalEncoding,
                           feature_padding_mask)
from mmdetr.models.precision import (autocast_dtype, autocast_enabled_for,
                                     float32_region, to_float32)

BF16 = dict(device_type='cpu', dtype=torch.bfloat16)

#: bfloat16 against float32 on the same R50 weights and batch (measured on
#: an AMD EPYC with avx512_bf16: 0.012 and 0.0006, 2.5x and 3x below)
PROB_TOL = 0.03  # class probabilities, absolute
BOX_TOL = 0.002  # boxes, as a fraction of the image (2.7 px at 1333)


# --------------------------------------------------------- float32 parts
def sine_encoding_in(dtype, mask, num_feats=128):
    """The sine encoding with every step in ``dtype`` (what a model that
    computes it in its input's dtype does)."""
    not_mask = (~mask).to(dtype)
    y = not_mask.cumsum(1, dtype=dtype)
    x = not_mask.cumsum(2, dtype=dtype)
    y = y / (y[:, -1:, :] + 1e-6) * (2 * math.pi)
    x = x / (x[:, :, -1:] + 1e-6) * (2 * math.pi)
    dim_t = torch.arange(num_feats, dtype=dtype)
    dim_t = 10000**(2 * (dim_t // 2) / num_feats)
    out = []
    for pos in (y[..., None] / dim_t, x[..., None] / dim_t):
        out.append(torch.stack((pos[..., 0::2].sin(), pos[..., 1::2].cos()),
                               dim=4).flatten(3))
    return torch.cat(out, dim=3).permute(0, 3, 1, 2)


def test_positional_encoding_is_float32_and_unchanged_under_autocast():
    """Computed in bfloat16 the encoding would be 0.03 off (its phases are
    positions over wavelengths up to 10000); mmdetr computes it in float32
    from the mask, under autocast too, bit for bit."""
    pe = SinePositionalEncoding(128, normalize=True)
    mask = torch.zeros(2, 25, 42, dtype=torch.bool)
    mask[1, 20:] = True
    mask[1, :, 30:] = True
    full = pe(mask)
    with torch.autocast(**BF16):
        auto = pe(mask)
    assert auto.dtype == torch.float32
    assert torch.equal(auto, full)
    torch.testing.assert_close(sine_encoding_in(torch.float32, mask), full,
                               rtol=0, atol=1e-5)
    in_bf16 = sine_encoding_in(torch.bfloat16, mask).float()
    assert (in_bf16 - full).abs().max() > 0.02  # why it stays float32


def test_padding_mask_is_the_same_under_autocast():
    feats = torch.zeros(2, 8, 25, 42, dtype=torch.bfloat16)
    img_hw = torch.tensor([[800., 1333.], [640., 957.]])
    input_hw = torch.tensor([800, 1344])
    full = feature_padding_mask(img_hw, input_hw, feats.float())
    with torch.autocast(**BF16):
        auto = feature_padding_mask(img_hw, input_hw, feats)
    assert auto.dtype == torch.bool and torch.equal(auto, full)
    assert full[1].any() and not full[0, :, :41].any()


def test_attention_in_bfloat16_ignores_padding_and_stays_close():
    """torch's fused attention accumulates its softmax in float32 for
    bfloat16 inputs: padded keys get exactly no weight, and the output is
    within bfloat16's rounding of float32's. So mmdetr leaves the
    attention to torch under autocast."""
    torch.manual_seed(0)
    mha = nn.MultiheadAttention(64, 8, batch_first=True).eval()
    gen = torch.Generator().manual_seed(0)
    query = torch.randn(2, 10, 64, generator=gen)
    key = torch.randn(2, 50, 64, generator=gen)
    mask = torch.zeros(2, 50, dtype=torch.bool)
    mask[1, 30:] = True
    changed = key.clone()
    changed[1, 30:] = torch.randn(20, 64, generator=gen) * 100
    with torch.no_grad():
        full = mha(query, key, key, key_padding_mask=mask,
                   need_weights=False)[0]
        with torch.autocast(**BF16):
            # the inputs in bfloat16, as mmdetr's transformer passes them
            # under autocast (torch 2.1 refuses float32 ones with a mask)
            q, k, c = (x.bfloat16() for x in (query, key, changed))
            auto = mha(q, k, k, key_padding_mask=mask,
                       need_weights=False)[0]
            other = mha(q, c, c, key_padding_mask=mask,
                        need_weights=False)[0]
    assert auto.dtype == torch.bfloat16
    assert torch.equal(auto, other)  # the padding is not attended at all
    err = (auto.float() - full).abs().max() / full.abs().max()
    assert err < 0.02, err


def test_predictors_and_detections_are_float32_under_autocast():
    """Under autocast the class and box predictors read the decoder output
    in float32: the same numbers as without autocast on the same input;
    without autocast nothing is cast (float64 stays float64)."""
    torch.manual_seed(0)
    head = build_mmdetr().bbox_head.eval()
    hidden = torch.randn(2, 2, 20, 64).bfloat16()
    with torch.no_grad():
        full = head.predict_layers(hidden.float())
        with torch.autocast(**BF16):
            auto = head.predict_layers(hidden)
        # what autocast alone would give: bfloat16 linear layers
        with torch.autocast(**BF16):
            raw = head.fc_reg(head.reg_ffn(hidden)).sigmoid()
    for a, f in zip(auto, full):
        assert a.dtype == torch.float32 and torch.equal(a, f)
    assert raw.dtype == torch.bfloat16
    double = head.double().predict_layers(hidden.double())
    assert all(t.dtype == torch.float64 for t in double)


@pytest.mark.parametrize('api', ['torch >= 2.4', 'torch < 2.4'])
def test_the_autocast_state_is_read_on_every_torch(api, monkeypatch):
    """torch 2.4 asks autocast's state per device type; older torch has a
    function per device: both give the same answers."""
    from mmdetr.models import precision
    if api == 'torch < 2.4':
        monkeypatch.setattr(precision, '_BY_DEVICE_TYPE', False)
    elif not precision._BY_DEVICE_TYPE:
        pytest.skip(f'torch {torch.__version__} < 2.4')
    assert not autocast_enabled_for('cpu')
    with torch.autocast(**BF16):
        assert autocast_enabled_for('cpu')
        assert autocast_dtype('cpu') == torch.bfloat16
        assert not autocast_enabled_for('cuda')
        with float32_region(torch.ones(1)):
            assert not autocast_enabled_for('cpu')
    assert not autocast_enabled_for('cpu')


def test_helpers_do_nothing_without_autocast():
    x = torch.ones(2, dtype=torch.float64)
    assert to_float32(x) is x
    assert to_float32(torch.ones(2)).dtype == torch.float32
    assert to_float32(torch.ones(2, dtype=torch.bfloat16)).dtype == \
        torch.float32
    assert not autocast_enabled_for('cpu')
    with float32_region(x):
        assert not autocast_enabled_for('cpu')
    with torch.autocast(**BF16), float32_region(x):
        assert not autocast_enabled_for('cpu')


def test_aux_head_losses_are_float32_under_autocast():
    """The auxiliary dense head (training only) runs in float32 under
    autocast, as DETR's own losses: mmdet's heads compute their losses in
    the dtype they get."""
    from mmdetr.extras.aux_head import AuxHeadDETR  # noqa: F401
    cfg = mmdetr_cfg()
    cfg.update(type='AuxHeadDETR', aux_head=dict(
        type='mmdet.FCOSHead', num_classes=5, in_channels=64,
        feat_channels=16, stacked_convs=1, strides=[32],
        regress_ranges=((-1, 1e8), ), norm_cfg=None))
    torch.manual_seed(0)
    model = build_mmdetr(cfg).train()
    data = preprocess(model, make_batch(num_boxes=(2, 3)), True)
    with torch.autocast(**BF16):
        losses = model(**data, mode='loss')
    for key, value in losses.items():
        value = value if torch.is_tensor(value) else torch.stack(value)
        assert value.dtype == torch.float32, key
        assert torch.isfinite(value).all(), key


# ------------------------------------------------------- R50, end to end
def build_r50():
    """mmdetr's R50 DETR (the COCO config: 6+6 layers, 100 queries, 80
    classes) with random weights that make its queries differ.

    At initialisation DETR's queries give almost the same output (their
    spread is below bfloat16's rounding), so any ranking of them is noise.
    As after training, here they differ: larger query embeddings (sharper
    cross-attention), weaker encoder residual branches (a memory that
    keeps the backbone's spatial variation) and a weaker self-attention
    among the queries (which averages them)."""
    from mmengine.config import Config
    from mmengine.logging import MMLogger
    from mmengine.registry import MODELS, DefaultScope
    cfg = Config.fromfile(osp.join(ROOT, 'configs',
                                   'detr_r50_8x2_150e_coco.py'))
    cfg.model.backbone.init_cfg = None
    torch.manual_seed(0)
    with DefaultScope.overwrite_default_scope('mmdet'):
        model = MODELS.build(copy.deepcopy(cfg.model))
    level = MMLogger.get_current_instance().level
    MMLogger.get_current_instance().setLevel(logging.ERROR)
    try:
        model.init_weights()
    finally:
        MMLogger.get_current_instance().setLevel(level)
    randomize_(model, 0)
    with torch.no_grad():
        model.bbox_head.query_embedding.weight.mul_(30)
        model.bbox_head.fc_cls.weight.mul_(5)
        for layer in model.bbox_head.transformer.encoder_layers:
            layer.self_attn.out_proj.weight.mul_(0.1)
            layer.linear2.weight.mul_(0.1)
        for layer in model.bbox_head.transformer.decoder_layers:
            layer.self_attn.out_proj.weight.mul_(0.3)
    return model.eval()


def smooth_batch(sizes, num_boxes, seed=1):
    """``make_batch`` with smooth random images (objects are larger than
    pixels), so that the feature map varies over the image."""
    batch = make_batch(sizes=sizes, num_boxes=num_boxes, num_classes=80)
    gen = torch.Generator().manual_seed(seed)
    for img in batch['inputs']:
        h, w = img.shape[1:]
        low = torch.rand(1, 3, h // 32 + 1, w // 32 + 1, generator=gen)
        img.copy_((F.interpolate(low, size=(h, w), mode='bilinear')[0] *
                   255).to(torch.uint8))
    return batch


@pytest.fixture(scope='module')
def r50_outputs():
    """The R50's outputs and detections on a padded batch, float32 and
    bfloat16 autocast."""
    model = build_r50()
    batch = smooth_batch(((256, 352), (224, 288)), (4, 3))
    data = preprocess(model, batch, True)
    metas = [s.metainfo for s in data['data_samples']]
    runs = {}
    for amp in (False, True):
        with torch.no_grad(), torch.autocast(**BF16, enabled=amp):
            out = model.forward_outputs(data['inputs'], metas)
            dets = model.predict_by_outputs(out, metas, rescale=False)
        runs[amp] = out, dets
    return model, data, metas, runs


@pytest.mark.slow  # two R50 forwards: about 5 s on 2 cores
def test_r50_bfloat16_predictions_are_within_tolerance(r50_outputs):
    """Every query's class probabilities and box, and the top detections,
    of bfloat16 autocast against float32 on a padded batch."""
    model, data, metas, runs = r50_outputs
    (full, full_dets), (half, half_dets) = runs[False], runs[True]
    assert data['inputs'].shape[-2:] == (256, 352)  # the 2nd is padded
    assert half['memory'].dtype == torch.bfloat16  # autocast was on
    for key in ('cls_scores', 'bbox_preds', 'pos_embed'):
        assert half[key].dtype == torch.float32, key
    assert torch.equal(half['memory_mask'], full['memory_mask'])
    assert torch.equal(half['pos_embed'], full['pos_embed'])
    probs = full['cls_scores'].softmax(-1)
    prob_err = (half['cls_scores'].softmax(-1) - probs).abs().max()
    box_err = (half['bbox_preds'] - full['bbox_preds']).abs().max()
    assert prob_err < PROB_TOL, prob_err
    assert box_err < BOX_TOL, box_err
    # the queries differ by more than the tolerance: the ranking means
    # something
    best32 = probs[-1, ..., :-1].max(-1).values  # (bs, queries)
    best16 = half['cls_scores'][-1].softmax(-1)[..., :-1].max(-1).values
    assert (best32.max(-1).values - best32.min(-1).values).min() > \
        4 * PROB_TOL
    k = 10
    for i, (f, h) in enumerate(zip(full_dets, half_dets)):
        assert h.bboxes.dtype == h.scores.dtype == torch.float32
        f_score, f_query = best32[i].topk(k)
        h_score, h_query = best16[i].topk(k)
        torch.testing.assert_close(f.scores[:k], f_score, rtol=0, atol=0)
        torch.testing.assert_close(h.scores[:k], h_score, rtol=0, atol=0)
        # the same top detections, up to near ties (float32 scores closer
        # than twice the largest probability error): every bfloat16 top-k
        # query scores at least float32's k-th in float32, and float32's
        # clear top-k queries are all among bfloat16's
        kth = f_score[-1]
        assert (best32[i, h_query] >= kth - 2 * prob_err).all()
        clear = torch.nonzero(best32[i] > kth + 2 * prob_err).flatten()
        assert len(clear) > 0  # the check is not empty
        assert set(clear.tolist()) <= set(h_query.tolist())
        # the same detection per query: score, box and (unless two classes
        # tie) label
        hh, ww = metas[i]['img_shape']
        size = torch.tensor([ww, hh, ww, hh], dtype=torch.float32)
        for q in set(f_query.tolist()) & set(h_query.tolist()):
            a = (f_query == q).nonzero()[0, 0]
            b = (h_query == q).nonzero()[0, 0]
            assert abs(f.scores[a] - h.scores[b]) < PROB_TOL
            assert ((f.bboxes[a] - h.bboxes[b]).abs() / size).max() < \
                BOX_TOL
            top2 = probs[-1, i, q, :-1].topk(2).values
            if top2[0] - top2[1] > 2 * PROB_TOL:
                assert f.labels[a] == h.labels[b]


@pytest.mark.slow  # shares the R50 forwards of the test above
def test_matching_and_losses_do_not_depend_on_autocast(r50_outputs):
    """On the same predictions (the bfloat16 run's) the matching of every
    decoder layer and every loss term are the same, bit for bit, with and
    without autocast: DETRHead.loss matches and scores in float32."""
    model, data, metas, runs = r50_outputs
    out = runs[True][0]
    head = model.bbox_head
    targets = SetTargets.build(
        [s.gt_instances.bboxes for s in data['data_samples']],
        [s.gt_instances.labels for s in data['data_samples']], metas)
    cls, box = out['cls_scores'], out['bbox_preds']
    with torch.no_grad():
        loss_full, full = head.loss(cls.bfloat16().float(),
                                    box.bfloat16().float(), targets)
        with torch.autocast(**BF16):
            # predictions handed over in bfloat16, as a head without
            # float32 predictors would
            loss_half, auto = head.loss(cls.bfloat16(), box.bfloat16(),
                                        targets)
    for layer, layer_full in zip(auto.indices, full.indices):
        for t, t_full in zip(layer, layer_full):
            assert torch.equal(t, t_full)
    assert auto.num_boxes == full.num_boxes == [7.0] * 6
    assert set(loss_half) == set(loss_full)
    for key, value in loss_full.items():
        assert loss_half[key].dtype == torch.float32, key
        assert torch.equal(loss_half[key], value), key
