# Copyright (c) mmdetr contributors. All rights reserved.
"""DETRMaskHead (MHAttentionMap + MaskHeadSmallConv) against the official
reference on random official-layout weights, a padded batch of 2."""
import pytest
import torch
from mmengine.registry import DefaultScope

from mmdetr.panoptic import DETRMaskHead, MaskHeadSmallConv, MHAttentionMap
from mmdetr.registry import build_model
from mmdetr.checkpoints import convert_state_dict
from references.reference_panoptic import (attention_maps, official_masks,
                                           official_mask_state_dict)

D, HEADS, FPN_DIMS = 128, 8, (48, 24, 16)  # the smallest GroupNorm(8) fits
# two images padded to 64x96: strides 32, 16, 8, 4
IMG_SHAPES = ((64, 96), (40, 60))


def _batch(gen, num_query=5):
    """The detector's tensors for a padded batch of 2."""
    big_h, big_w = 64, 96
    mask = torch.ones(2, big_h // 32, big_w // 32, dtype=torch.bool)
    for i, (h, w) in enumerate(IMG_SHAPES):
        mask[i, :-(-h // 32), :-(-w // 32)] = False
    assert mask[1].any() and not mask[0].any()
    fpns = [
        torch.randn(2, c, big_h // s, big_w // s, generator=gen)
        for c, s in zip(FPN_DIMS, (16, 8, 4))
    ]
    return dict(
        hidden_state=torch.randn(2, num_query, D, generator=gen),
        memory=torch.randn(2, D, big_h // 32, big_w // 32, generator=gen),
        memory_mask=mask,
        proj_feat=torch.randn(2, D, big_h // 32, big_w // 32, generator=gen),
        fpn_feats=fpns)


def _converted_head(sd):
    """mmdetr's head holding the official weights, through the converter's
    key mapping (loaded strictly)."""
    ours = convert_state_dict(sd, 'official_panoptic')
    head = DETRMaskHead(D, HEADS, FPN_DIMS)
    head.load_state_dict(
        {k[len('mask_head.'):]: v
         for k, v in ours.items()}, strict=True)
    return head.eval()


def test_masks_match_the_official_reference_on_a_padded_batch(gen):
    sd = official_mask_state_dict(D, HEADS, FPN_DIMS, seed=1)
    head = _converted_head(sd)
    x = _batch(gen)
    with torch.no_grad():
        ours = head(**x)
    ref = official_masks(sd, x['hidden_state'], x['memory'],
                         x['memory_mask'], x['proj_feat'], x['fpn_feats'],
                         HEADS)
    assert ours.shape == (2, 5, 16, 24)
    assert ref.std() > 0.1, 'random weights give varied logits'
    torch.testing.assert_close(ours, ref, atol=1e-4, rtol=0)


def test_attention_maps_are_one_distribution_per_query_zero_at_padding(gen):
    sd = official_mask_state_dict(D, HEADS, FPN_DIMS, seed=2)
    attn = _converted_head(sd).bbox_attention
    x = _batch(gen)
    maps = attn(x['hidden_state'], x['memory'], x['memory_mask'])
    assert maps.shape == (2, 5, HEADS, 2, 3)
    # one softmax over heads and pixels jointly, not one per head
    torch.testing.assert_close(maps.sum((2, 3, 4)), torch.ones(2, 5))
    assert not torch.allclose(maps.sum((3, 4)), torch.full((2, 5, HEADS),
                                                           1 / HEADS))
    pad = x['memory_mask'][:, None, None].expand_as(maps)
    assert (maps[pad] == 0).all() and (maps[~pad] > 0).all()
    torch.testing.assert_close(
        maps,
        attention_maps(sd, x['hidden_state'], x['memory'], x['memory_mask'],
                       HEADS),
        atol=1e-6, rtol=1e-5)


def test_a_query_mask_depends_on_its_image_only(gen):
    """Per-query expansion is image-major: image 1's masks do not change
    when image 0's inputs do."""
    head = DETRMaskHead(D, HEADS, FPN_DIMS).eval()
    x = _batch(gen)
    y = {k: (v.clone() if torch.is_tensor(v) else [f.clone() for f in v])
         for k, v in x.items()}
    y['hidden_state'][0] += 1
    y['fpn_feats'][2][0] += 1
    with torch.no_grad():
        a, b = head(**x), head(**y)
    assert torch.equal(a[1], b[1])
    assert not torch.allclose(a[0], b[0])


def test_official_initialisation_and_parameter_names():
    head = DETRMaskHead(D, HEADS, FPN_DIMS)
    names = set(head.state_dict())
    # official bbox_attention.* keep their names, mask_head.* -> conv_head.*
    ref = {
        k.replace('mask_head.', 'conv_head.', 1)
        for k in official_mask_state_dict(D, HEADS, FPN_DIMS)
    }
    assert names == ref
    assert (head.bbox_attention.q_linear.bias == 0).all()
    assert (head.conv_head.lay3.bias == 0).all()
    assert head.conv_head.lay1.weight.abs().max() > 0


def test_built_from_config_with_mmdet_default_scope():
    cfg = dict(type='DETRMaskHead', embed_dims=D, num_heads=HEADS,
               in_channels=FPN_DIMS)
    with DefaultScope.overwrite_default_scope('mmdet'):
        head = build_model(cfg)
    assert type(head) is DETRMaskHead
    assert isinstance(head.bbox_attention, MHAttentionMap)
    assert isinstance(head.conv_head, MaskHeadSmallConv)


@pytest.mark.parametrize('kwargs,message', [
    (dict(dim=136, fpn_dims=(8, 8, 8), context_dim=64), 'multiples of 8'),
    (dict(dim=132, fpn_dims=(8, 8, 8), context_dim=128), 'multiples of 8'),
    (dict(dim=136, fpn_dims=(8, 8), context_dim=128), '3 backbone levels'),
])
def test_bad_widths_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        MaskHeadSmallConv(**kwargs)


def test_heads_must_divide_hidden_dim():
    with pytest.raises(ValueError, match='not divisible'):
        MHAttentionMap(128, 128, 7)
