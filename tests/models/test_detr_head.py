# Copyright (c) mmdetr contributors. All rights reserved.
import pytest
import torch
import torch.nn.functional as F

from helpers import (build_mmdetr, head_outputs_and_targets, make_batch,
                     mmdetr_cfg, preprocess)
from mmdetr.models import DETRHead, SetTargets


def loss_inputs(model, data):
    """The last level's all-layer predictions of ``data`` and its targets,
    as :meth:`DETR.loss_by_outputs` hands them to the head's loss."""
    outs, gt_bboxes, gt_labels, metas = head_outputs_and_targets(model, data)
    return (outs[0][-1], outs[1][-1],
            SetTargets.build(gt_bboxes, gt_labels, metas))


def losses_of(model, data):
    model.train()
    return model(**preprocess(model, data, True), mode='loss')


def test_empty_ground_truth_gives_only_classification_loss():
    torch.manual_seed(0)
    model = build_mmdetr()
    losses = losses_of(model, make_batch(num_boxes=(0, 0)))
    for key, value in losses.items():
        if key.endswith('loss_cls'):
            assert value.item() > 0, key
        else:
            assert value.item() == 0, key


def test_one_box_gives_every_loss_positive():
    torch.manual_seed(0)
    model = build_mmdetr()
    losses = losses_of(model, make_batch(num_boxes=(1, 0)))
    assert len(losses) == 6
    for key, value in losses.items():
        assert value.item() > 0, key


def test_gradients_reach_every_trainable_parameter():
    torch.manual_seed(0)
    cfg = mmdetr_cfg()
    # mmdet's ResNet zero-initialises the last BN of each residual branch;
    # with frozen BN that would cut those branches off without pretrained
    # weights, so the check runs on a plain initialisation.
    cfg['backbone']['zero_init_residual'] = False
    model = build_mmdetr(cfg)
    losses = losses_of(model, make_batch(num_boxes=(2, 3)))
    sum(losses.values()).backward()
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    assert len(trainable) > 50
    no_grad = {n for n, p in trainable
               if p.grad is None or not torch.any(p.grad != 0)}
    # NOTE as in the official DETR: the first decoder layer's self-attention
    # sees all-zero targets, so its values are equal for every key and its
    # query/key projections (and, at initialisation, its output projection
    # and the following norm) get no gradient.
    first = 'bbox_head.transformer.decoder_layers.0.'
    allowed = {first + 'self_attn.in_proj_weight',
               first + 'self_attn.out_proj.weight', first + 'norm1.weight'}
    assert no_grad <= allowed, no_grad - allowed


def test_frozen_stem_gets_no_gradient():
    model = build_mmdetr()
    assert not model.backbone.conv1.weight.requires_grad


@pytest.mark.parametrize('variant', [
    dict(normalize_before=True),
    dict(positional_encoding=dict(
        type='LearnedPositionalEncoding', num_feats=32, row_num_embed=8,
        col_num_embed=8)),
])
def test_variants_run_and_train(variant):
    torch.manual_seed(0)
    model = build_mmdetr(**variant)
    if variant.get('normalize_before'):
        assert model.bbox_head.transformer.encoder_norm is not None
    data = make_batch(num_boxes=(2, 3))
    optim = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad], lr=1e-3)
    first = None
    for _ in range(8):
        loss = sum(losses_of(model, data).values())
        first = first if first is not None else loss.item()
        optim.zero_grad()
        loss.backward()
        optim.step()
    assert torch.isfinite(loss) and loss.item() < first
    model.eval()
    with torch.no_grad():
        out = model.test_step(data)
    assert out[0].pred_instances.bboxes.shape == (20, 4)


def test_predictions_are_rescaled_and_clamped():
    torch.manual_seed(0)
    model = build_mmdetr().eval()
    data = make_batch(num_boxes=(0, 0))
    with torch.no_grad():
        results = model.test_step(data)
        unscaled = model(**preprocess(model, data, False), mode='tensor')
    for i, result in enumerate(results):
        pred = result.pred_instances
        ori_h, ori_w = result.ori_shape
        assert (pred.bboxes >= 0).all()
        assert (pred.bboxes[:, 0::2] <= ori_w + 1e-3).all()
        assert (pred.bboxes[:, 1::2] <= ori_h + 1e-3).all()
        assert pred.scores.shape == (20, )
        assert (pred.scores[:-1] >= pred.scores[1:]).all()  # sorted
        assert (pred.labels < 5).all()  # background never predicted
    cls_scores, bbox_preds = unscaled
    assert cls_scores[-1].shape == (2, 2, 20, 6)  # layers, bs, queries, C+1
    assert bbox_preds[-1].shape == (2, 2, 20, 4)


def test_forward_uses_multi_apply_over_levels():
    """Two feature levels in, two sets of outputs out (mmdet 2.x shape)."""
    torch.manual_seed(0)
    model = build_mmdetr()
    head = model.bbox_head
    feats = (torch.randn(2, 512, 3, 4), torch.randn(2, 512, 3, 4))
    metas = [dict(img_shape=(96, 128), batch_input_shape=(96, 128))] * 2
    cls_list, box_list = head(feats, metas)
    assert len(cls_list) == len(box_list) == 2
    assert ((box_list[0] >= 0) & (box_list[0] <= 1)).all()


def test_head_rejects_mismatched_positional_encoding():
    with pytest.raises(ValueError, match='num_feats'):
        DETRHead(
            num_classes=3,
            in_channels=8,
            transformer=dict(type='DetrTransformer', embed_dims=32,
                             num_heads=4, num_encoder_layers=1,
                             num_decoder_layers=1, feedforward_channels=16),
            positional_encoding=dict(type='SinePositionalEncoding',
                                     num_feats=8))


def test_each_layer_matched_alone_gives_its_losses_in_loss():
    """loss() matches every layer at once; each layer matched and scored
    alone gives bit-identical losses. One image has more boxes (25) than
    queries (20)."""
    torch.manual_seed(0)
    model = build_mmdetr()
    model.train()
    cls_scores, bbox_preds, targets = loss_inputs(
        model, make_batch(num_boxes=(3, 25), seed=1))
    head = model.bbox_head
    losses, matches = head.loss(cls_scores, bbox_preds, targets)
    assert len(matches.indices) == 2
    for layer, prefix in enumerate(['d0.', '']):
        alone, match = head.loss(cls_scores[layer:layer + 1],
                                 bbox_preds[layer:layer + 1], targets)
        for t, t_alone in zip(matches.indices[layer], match.indices[0]):
            assert torch.equal(t, t_alone)
        for name in ['loss_cls', 'loss_bbox', 'loss_iou']:
            assert alone[name].item() > 0
            torch.testing.assert_close(
                losses[prefix + name], alone[name], rtol=0, atol=0)


def test_losses_normalise_as_the_paper(gen):
    """The matching comes back with the losses; box losses are means over
    the matched boxes, the classification loss is normalised by the total
    class weight (matched 1, "no object" bg_cls_weight); no ground truth
    gives zero box losses and a positive classification loss."""
    head = build_mmdetr().bbox_head
    cls = torch.randn(1, 2, 20, 6, generator=gen)
    box = torch.rand(1, 2, 20, 4, generator=gen) * 0.5 + 0.25
    boxes = [torch.tensor([[10., 10., 40., 30.], [5., 20., 60., 60.],
                           [0., 0., 20., 20.]]),
             torch.tensor([[30., 10., 60., 40.]])]
    metas = [dict(img_shape=(64, 80))] * 2
    targets = SetTargets.build(boxes, [torch.tensor([0, 1, 2]),
                                       torch.tensor([3])], metas)
    losses, matches = head.loss(cls, box, targets)
    (img, query, gt), = matches.indices
    assert matches.num_boxes == [4.0]
    assert img.tolist() == [0, 0, 0, 1] and sorted(gt[:3].tolist()) == \
        [0, 1, 2]
    l1 = (box[0][img, query] - targets.boxes[img, gt]).abs().sum() / 4
    torch.testing.assert_close(losses['loss_bbox'], 5.0 * l1)
    labels = torch.full((2, 20), 5)
    labels[img, query] = targets.labels[img, gt]
    weight = torch.ones(6)
    weight[-1] = 0.1
    ce = F.cross_entropy(cls[0].reshape(-1, 6), labels.reshape(-1),
                         weight=weight, reduction='sum')
    torch.testing.assert_close(losses['loss_cls'], ce / (4 + 36 * 0.1))
    assert losses['loss_iou'] > 0

    empty = SetTargets.build([torch.zeros(0, 4)] * 2,
                             [torch.zeros(0, dtype=torch.long)] * 2, metas)
    losses, matches = head.loss(cls, box, empty)
    assert matches.num_boxes == [1.0]  # at least 1
    assert losses['loss_cls'] > 0
    assert losses['loss_bbox'] == 0 and losses['loss_iou'] == 0


def test_loss_runs_in_float32_from_half_precision_outputs():
    """Under mixed precision the head's outputs arrive in half precision;
    matching and losses still run in float32 (box areas of an 800x1066
    image overflow float16): the losses equal those of the same outputs cast
    to float32."""
    torch.manual_seed(0)
    head = build_mmdetr().bbox_head
    gen = torch.Generator().manual_seed(0)
    cls_scores = torch.randn(2, 2, 20, 6, generator=gen).half()
    bbox_preds = torch.rand(2, 2, 20, 4, generator=gen).half()
    bbox_preds[..., 2:] = bbox_preds[..., 2:] * 0.5 + 0.2
    metas = [dict(img_shape=(800, 1066), batch_input_shape=(800, 1066)),
             dict(img_shape=(736, 981), batch_input_shape=(800, 1066))]
    targets = SetTargets.build(
        [torch.tensor([[10., 20., 900., 700.], [5., 5., 500., 400.]]),
         torch.tensor([[100., 100., 950., 720.]])],
        [torch.tensor([1, 3]), torch.tensor([0])], metas)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        half, _ = head.loss(cls_scores, bbox_preds, targets)
    full, _ = head.loss(cls_scores.float(), bbox_preds.float(), targets)
    assert set(half) == set(full)
    for key, value in full.items():
        assert half[key].dtype == torch.float32, key
        assert torch.isfinite(value) and value.item() > 0, key
        torch.testing.assert_close(half[key], value, rtol=0, atol=0,
                                   msg=key)


def test_predict_runs_in_inference_mode():
    torch.manual_seed(0)
    model = build_mmdetr().eval()
    results = model.test_step(make_batch(num_boxes=(0, 0)))
    assert results[0].pred_instances.bboxes.is_inference()


def test_loss_equals_the_per_image_reference():
    """The batched loss (matched predictions gathered by index, host-known
    normalisers) equals mmdet's per-image formulation with dense targets
    and weights (tests/references/reference_matching.py), layer by layer."""
    from references.reference_matching import reference_layer_loss
    torch.manual_seed(0)
    model = build_mmdetr(dec=3)
    model.train()
    outs, gt_bboxes, gt_labels, metas = head_outputs_and_targets(
        model, make_batch(num_boxes=(4, 25), seed=2))
    head = model.bbox_head
    cls_scores, bbox_preds = outs[0][-1], outs[1][-1]
    losses, _ = head.loss(cls_scores, bbox_preds,
                          SetTargets.build(gt_bboxes, gt_labels, metas))
    for layer, prefix in enumerate(['d0.', 'd1.', '']):
        want = reference_layer_loss(head, cls_scores[layer],
                                    bbox_preds[layer], gt_bboxes, gt_labels,
                                    metas)
        for name, value in zip(['loss_cls', 'loss_bbox', 'loss_iou'], want):
            assert value.item() > 0
            torch.testing.assert_close(losses[prefix + name], value,
                                       rtol=1e-6, atol=1e-7,
                                       msg=prefix + name)


def test_head_with_mmdet_costs_gives_the_same_losses():
    """mmdet's own match costs (through the registry; one image at a time)
    in mmdetr's assigner give the same losses; an assigner without the
    batched match is refused, naming it."""
    torch.manual_seed(0)
    model = build_mmdetr()
    model.train()
    inputs = loss_inputs(model, make_batch(num_boxes=(2, 6), seed=6))
    head = model.bbox_head
    ours, _ = head.loss(*inputs)
    from mmdetr.registry import build_task_util
    head.assigner = build_task_util(dict(
        type='HungarianAssigner',
        match_costs=[
            dict(type='mmdet.ClassificationCost', weight=1.),
            dict(type='mmdet.BBoxL1Cost', weight=5.0, box_format='xywh'),
            dict(type='mmdet.IoUCost', iou_mode='giou', weight=2.0)
        ]))
    assert not any(hasattr(c, 'batched') for c in head.assigner.match_costs)
    theirs, _ = head.loss(*inputs)
    for key, value in ours.items():
        torch.testing.assert_close(theirs[key], value, rtol=1e-6, atol=0,
                                   msg=key)
    cfg = mmdetr_cfg()
    cfg['train_cfg']['assigner']['type'] = 'mmdet.HungarianAssigner'
    with pytest.raises(TypeError, match='HungarianAssigner has no batched'):
        build_mmdetr(cfg)


def test_padding_mask_is_the_nearest_downsampled_input_mask():
    """The mask built from each image's valid size equals the full
    resolution mask downsampled with nearest interpolation (official DETR's
    and mmdet's way), for many padded and feature sizes, odd ratios too."""
    import numpy as np
    import torch.nn.functional as F

    from mmdetr.models import feature_padding_mask
    rng = np.random.default_rng(0)
    padded = 0
    for _ in range(30):
        big_h, big_w = (int(v) for v in rng.integers(33, 900, 2))
        shapes = [(int(rng.integers(1, big_h + 1)),
                   int(rng.integers(1, big_w + 1))) for _ in range(3)]
        shapes[0] = (big_h, shapes[0][1])
        shapes[1] = (shapes[1][0], big_w)
        full = torch.ones(3, big_h, big_w)
        for i, (h, w) in enumerate(shapes):
            full[i, :h, :w] = 0
        # ResNet's stride-32 size, or any other
        for h, w in [(-(-big_h // 32), -(-big_w // 32)),
                     tuple(int(v) for v in rng.integers(1, 12, 2))]:
            feats = torch.zeros(3, 1, h, w)
            want = F.interpolate(full[None], size=(h, w)).bool()[0]
            got = feature_padding_mask(torch.tensor(shapes),
                                       torch.tensor([big_h, big_w]), feats)
            assert torch.equal(got, want), (big_h, big_w, shapes, h, w)
            padded += bool(want.any())
    assert padded > 10  # the batches were padded
