# Copyright (c) mmdetr contributors. All rights reserved.
"""The AutocastWeightCache speed-up: reduced-precision weights kept between
autocast inference calls, the same outputs bit for bit."""
import torch

from helpers import build_mmdetr, make_batch, mmdetr_cfg, preprocess
from mmdetr.speed import (CachedCastLinear, FastMultiheadAttention,
                          autocast_weight_cache, cached_weights_dtype)

BF16 = dict(device_type='cpu', dtype=torch.bfloat16)


def test_cached_weights_give_autocasts_outputs_bit_for_bit():
    """Under autocast in inference the weights in bfloat16 (the folded
    backbone convolutions, the transformer's linear layers and attention)
    are kept between calls: the outputs are those of autocast casting them
    at every call, bit for bit; a changed weight is picked up."""
    torch.manual_seed(0)
    model = build_mmdetr().eval()
    data = preprocess(model, make_batch(num_boxes=(1, 1)), False)
    metas = [s.metainfo for s in data['data_samples']]

    def run(cache):
        with torch.no_grad(), torch.autocast(**BF16), \
                autocast_weight_cache(cache):
            return model.forward_outputs(data['inputs'], metas)

    fresh, first, second = run(False), run(True), run(True)
    conv = model.backbone.layer2[0].conv1
    layer = model.bbox_head.transformer.encoder_layers[0]
    assert '_autocast_weights' in conv.__dict__
    assert '_autocast_weights' in layer.linear1.__dict__
    assert '_autocast_weights' in layer.self_attn.__dict__
    assert conv.__dict__['_autocast_weights']['folded'][1][0].dtype == \
        torch.bfloat16
    for key in ('memory', 'hidden_states', 'cls_scores', 'bbox_preds'):
        assert torch.equal(first[key], fresh[key]), key
        assert torch.equal(second[key], fresh[key]), key
    # changed weights (as a load or an optimizer step changes them)
    with torch.no_grad():
        model.backbone.layer4[0].bn1.running_var.mul_(2)
        layer.linear1.weight.mul_(1.5)
        layer.self_attn.in_proj_weight.mul_(0.5)
    changed, uncached = run(True), run(False)
    for key in ('memory', 'cls_scores'):
        assert not torch.equal(changed[key], fresh[key]), key
        assert torch.equal(changed[key], uncached[key]), key


def test_no_weight_cache_in_training_float32_or_tracing():
    x = torch.ones(2)
    with torch.autocast(**BF16):
        assert cached_weights_dtype(x) is None  # autograd on: training
        with torch.no_grad():
            assert cached_weights_dtype(x) == torch.bfloat16
    with torch.no_grad():
        assert cached_weights_dtype(x) is None  # float32
    torch.manual_seed(0)
    model = build_mmdetr().eval()
    with torch.no_grad():
        model(**preprocess(model, make_batch(), False), mode='predict')
    assert not any('_autocast_weights' in m.__dict__
                   for m in model.modules())


def test_without_the_transform_nothing_is_kept():
    """speedups=[]: torch's modules, autocast casts at every call."""
    torch.manual_seed(0)
    model = build_mmdetr(mmdetr_cfg(speedups=[])).eval()
    assert not any(isinstance(m, (CachedCastLinear, FastMultiheadAttention))
                   for m in model.modules())
    data = preprocess(model, make_batch(num_boxes=(1, 1)), False)
    with torch.no_grad(), torch.autocast(**BF16):
        model(**data, mode='tensor')
    assert not any('_autocast_weights' in m.__dict__
                   for m in model.modules())
