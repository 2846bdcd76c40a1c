# Copyright (c) mmdetr contributors. All rights reserved.
"""Panoptic merging and instance masks against the official reference, on
a padded batch of 2; mmdet's panoptic encoding."""
import numpy as np
import pytest
import torch
from PIL import Image

from mmdetr.panoptic import (DETRMaskHead, DETRPanopticPostProcess,
                             instance_masks, nearest_resize_ids,
                             panoptic_merge, panoptic_to_sem_seg)
from mmdetr.panoptic.postprocess import INSTANCE_OFFSET
from mmdetr.registry import build_model
from mmdetr.checkpoints import convert_state_dict
from references.reference_panoptic import (official_masks,
                                           official_mask_state_dict,
                                           official_panoptic, official_segm)

IS_THING = (True, True, True, False, False)  # classes 0-2 things, 3-4 stuff
NUM_CLASSES = len(IS_THING)
CANVAS = (64, 96)  # the padded batch
IMG_SHAPES = ((64, 96), (44, 70))
OUT_SHAPES = ((128, 192), (31, 47))  # upscaled / downscaled originals


def _queries(gen, num_query=9):
    """Class logits with sure classes for some queries: things, a stuff
    class predicted twice, no-object, one under the threshold, and one
    whose mask wins only a few pixels."""
    logits = torch.randn(num_query, NUM_CLASSES + 1, generator=gen)
    sure = {0: 0, 1: 1, 2: 3, 3: 3, 4: 4, 5: NUM_CLASSES, 7: 0, 8: 2}
    for q, c in sure.items():
        logits[q, c] += 12
    logits[6, 2] += 1.5  # class 2 most likely, but below 0.85
    return logits


def _masks(gen, num_query=9):
    """Smooth random mask logits (bs, nq, 16, 24); query 7 is just below
    the others' best everywhere but at one pixel, where it is just above:
    after upsampling it wins a few output pixels at most."""
    coarse = torch.randn(2, num_query, 4, 6, generator=gen) * 3
    masks = torch.nn.functional.interpolate(coarse, size=(16, 24),
                                            mode='bilinear',
                                            align_corners=False)
    best = masks[:, [0, 1, 2, 4, 8]].max(1)[0]
    masks[:, 7] = best - 1
    masks[:, 7, 5, 5] = best[:, 5, 5] + 0.05
    return masks


def _same(ref, ours):
    ref_map, ref_segments = ref
    ids, segments = ours
    assert [s['category_id'] for s in ref_segments] == \
        [s['label'] for s in segments]
    assert [s['area'] for s in ref_segments] == [s['area'] for s in segments]
    if segments:
        assert np.array_equal(ref_map, ids.numpy())
    else:
        assert (ids == -1).all()


@pytest.mark.parametrize('crop', [False, True])
def test_merge_matches_the_official_reference_on_a_padded_batch(gen, crop):
    masks = _masks(gen)
    kinds = set()
    for b in range(2):
        logits = _queries(gen)
        ref = official_panoptic(logits, masks[b], IS_THING, IMG_SHAPES[b],
                                OUT_SHAPES[b],
                                crop_to=CANVAS if crop else None)
        ours = panoptic_merge(logits, masks[b], IS_THING, IMG_SHAPES[b],
                              OUT_SHAPES[b], CANVAS if crop else None)
        _same(ref, ours)
        segments = ours[1]
        assert ours[0].shape == OUT_SHAPES[b]
        # the duplicate stuff query (3) and the tiny mask (7) are gone,
        # no-object (5) and the unsure query (6) never kept
        queries = [s['query'] for s in segments]
        assert not {3, 5, 6, 7} & set(queries)
        assert [s['label'] for s in segments].count(3) <= 1
        assert all(s['area'] > 4 for s in segments)
        kinds |= {s['is_thing'] for s in segments}
    assert kinds == {True, False}


def test_the_padding_choice_matters_for_the_smaller_image(gen):
    masks = _masks(gen)
    logits = _queries(gen)
    official, _ = panoptic_merge(logits, masks[1], IS_THING, IMG_SHAPES[1])
    cropped, _ = panoptic_merge(logits, masks[1], IS_THING, IMG_SHAPES[1],
                                canvas=CANVAS)
    assert (official != cropped).float().mean() > 0.05
    # the full-size image has no padding: both agree
    a, _ = panoptic_merge(logits, masks[0], IS_THING, IMG_SHAPES[0])
    b, _ = panoptic_merge(logits, masks[0], IS_THING, IMG_SHAPES[0],
                          canvas=CANVAS)
    assert torch.equal(a, b)


def test_end_to_end_masks_and_panoptic_map_match_the_reference(gen):
    d, heads, fpn_dims = 128, 8, (48, 24, 16)
    sd = official_mask_state_dict(d, heads, fpn_dims, seed=3)
    head = DETRMaskHead(d, heads, fpn_dims).eval()
    head.load_state_dict({
        k[len('mask_head.'):]: v
        for k, v in convert_state_dict(sd, 'official_panoptic').items()
    }, strict=True)
    mask = torch.ones(2, 2, 3, dtype=torch.bool)
    mask[0] = False
    mask[1, :2, :3] = False  # 44x70 covers 2x3 cells at stride 32
    mask[1, :, 2:] = True
    hs = torch.randn(2, 9, d, generator=gen)
    memory = torch.randn(2, d, 2, 3, generator=gen)
    proj = torch.randn(2, d, 2, 3, generator=gen)
    fpns = [torch.randn(2, c, 64 // s, 96 // s, generator=gen)
            for c, s in zip(fpn_dims, (16, 8, 4))]
    with torch.no_grad():
        ours = head(hs, memory, mask, proj, fpns)
    ref = official_masks(sd, hs, memory, mask, proj, fpns, heads)
    torch.testing.assert_close(ours, ref, atol=1e-4, rtol=0)
    for b in range(2):
        logits = _queries(gen)
        _same(official_panoptic(logits, ref[b], IS_THING, IMG_SHAPES[b],
                                OUT_SHAPES[b]),
              panoptic_merge(logits, ours[b], IS_THING, IMG_SHAPES[b],
                             OUT_SHAPES[b]))


def test_nothing_kept_is_all_void_and_encoding_is_mmdets(gen):
    masks = _masks(gen)[0]
    logits = torch.zeros(9, NUM_CLASSES + 1)
    logits[:, -1] = 10  # every query says no-object
    ids, segments = panoptic_merge(logits, masks, IS_THING, (64, 96))
    assert segments == [] and (ids == -1).all()
    sem = panoptic_to_sem_seg(ids, segments, NUM_CLASSES)
    assert sem.shape == (1, 64, 96) and (sem == NUM_CLASSES).all()

    ids, segments = panoptic_merge(_queries(gen), masks, IS_THING, (64, 96))
    sem = panoptic_to_sem_seg(ids, segments, NUM_CLASSES)[0]
    things = [s for s in segments if s['is_thing']]
    stuff = [s for s in segments if not s['is_thing']]
    assert things and stuff
    for i, seg in enumerate(things, start=1):
        value = seg['label'] + i * INSTANCE_OFFSET
        assert (sem == value).sum() == seg['area']
    for seg in stuff:
        assert (sem == seg['label']).sum() == seg['area']
    assert not (sem == NUM_CLASSES).any()


def test_post_process_module_from_config(gen):
    post = build_model(dict(type='DETRPanopticPostProcess', threshold=0.85,
                            crop_padding=True))
    assert isinstance(post, DETRPanopticPostProcess)
    masks = _masks(gen)
    logits = _queries(gen)
    sem = post(logits, masks[1], IS_THING, IMG_SHAPES[1], OUT_SHAPES[1],
               CANVAS)
    ids, segments = panoptic_merge(logits, masks[1], IS_THING, IMG_SHAPES[1],
                                   OUT_SHAPES[1], CANVAS)
    assert torch.equal(sem, panoptic_to_sem_seg(ids, segments, NUM_CLASSES))
    with pytest.raises(ValueError, match='is_thing has 2 entries'):
        panoptic_merge(logits, masks[1], (True, False), IMG_SHAPES[1])


@pytest.mark.parametrize('size,out', [((7, 9), (20, 13)), ((16, 24), (3, 5)),
                                      ((13, 17), (13, 40)),
                                      ((31, 47), (64, 96)),
                                      ((640, 960), (427, 640))])
def test_nearest_resize_reads_what_pil_reads(size, out):
    ids = torch.arange(size[0] * size[1]).view(size)
    rgb = np.stack([(ids.numpy() >> (8 * c)) & 255 for c in range(3)],
                   -1).astype(np.uint8)
    pil = np.asarray(Image.fromarray(rgb).resize((out[1], out[0]),
                                                 Image.NEAREST))
    pil = pil.astype(np.int64)
    pil_ids = pil[..., 0] + 256 * pil[..., 1] + 65536 * pil[..., 2]
    assert np.array_equal(nearest_resize_ids(ids, out).numpy(), pil_ids)


def test_instance_masks_match_official_segm_on_a_padded_batch(gen):
    masks = torch.randn(2, 4, 16, 24, generator=gen) * 3
    ref = official_segm(masks, IMG_SHAPES, OUT_SHAPES)
    for b in range(2):
        ours = instance_masks(masks[b], IMG_SHAPES[b], CANVAS, OUT_SHAPES[b])
        assert ours.dtype == torch.bool and ours.shape == (4, *OUT_SHAPES[b])
        assert torch.equal(ours, ref[b][:, 0].bool())
        assert 0.1 < ours.float().mean() < 0.9
    assert instance_masks(masks[0][:0], (8, 8), (8, 8)).shape == (0, 8, 8)
