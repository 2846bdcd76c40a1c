# Copyright (c) mmdetr contributors. All rights reserved.
"""An official panoptic checkpoint (``DETRsegm``) through the converter
tool: detected, loaded strictly, and on a padded batch of 2 the official
per-query masks (1e-4) and panoptic maps of the reference."""
import runpy
import sys
from collections import OrderedDict

import torch

from helpers import (ROOT, build_mmdetr, make_batch, panoptic_detr_cfg,
                     preprocess)
from mmdetr.panoptic import panoptic_to_sem_seg
from mmdetr.utils import load_checkpoint_file
from mmdetr.utils.convert import (COCO_CATEGORY_IDS, COCO_PANOPTIC_STUFF_IDS,
                                  OFFICIAL_PANOPTIC_LOGITS)
from references.reference_detr import official_state_dict
from references.reference_panoptic import (official_mask_state_dict,
                                           official_panoptic,
                                           official_segm_forward)

TOOL = f'{ROOT}/tools/model_converters/detr_to_mmdetr.py'
ARCH = dict(d=128, ffn=128, enc=1, dec=2, queries=10)
HEADS = 8
KEPT = COCO_CATEGORY_IDS + COCO_PANOPTIC_STUFF_IDS  # label -> official id


def official_panoptic_checkpoint(path):
    """A ``DETRsegm`` file with random weights. The logits of the category
    ids COCO panoptic never uses get a bias of -1e4, as in a trained model
    (never a target), so dropping them changes no softmax."""
    detr = official_state_dict(depth=18, num_logits=OFFICIAL_PANOPTIC_LOGITS,
                               **ARCH)
    unused = torch.ones(OFFICIAL_PANOPTIC_LOGITS, dtype=torch.bool)
    unused[list(KEPT) + [OFFICIAL_PANOPTIC_LOGITS - 1]] = False
    detr['class_embed.bias'] = torch.where(unused, -1e4, 0.0)
    # the queries' best classes with these weights are labels 4 and 75,
    # both things: make the second stuff (a swap of two stuff and thing
    # rows), so that both kinds and the merging of stuff queries are seen
    rows = [KEPT[75], KEPT[100]]
    detr['class_embed.weight'][rows] = detr['class_embed.weight'][
        rows[::-1]].clone()
    sd = OrderedDict((f'detr.{k}', v) for k, v in detr.items())
    sd.update(official_mask_state_dict(ARCH['d'], HEADS, (256, 128, 64)))
    torch.save(dict(model=sd, epoch=24), path)
    return sd


def sharpen_(official, ours):
    """The same change to both: peaked attention maps that weigh in the
    first convolution (its input channels after the projection's), and
    backbone levels that weigh less, so that the queries' masks differ by
    more than float rounding (with random weights they barely differ, and
    the panoptic merge's per-pixel argmax over queries would compare
    noise)."""
    ours = dict(ours.named_parameters())
    for theirs, mine, scale, rows in (
            ('bbox_attention.q_linear.weight',
             'mask_head.bbox_attention.q_linear.weight', 30, None),
            ('mask_head.lay1.weight', 'mask_head.conv_head.lay1.weight',
             100, slice(ARCH['d'], None)),
            *((f'mask_head.adapter{i}.weight',
               f'mask_head.conv_head.adapter{i}.weight', 0.01, None)
              for i in (1, 2, 3))):
        with torch.no_grad():
            for t in (official[theirs], ours[mine]):
                if rows is None:
                    t.mul_(scale)
                else:
                    t[:, rows] *= scale


def run_tool(*args):
    argv = sys.argv
    sys.argv = [TOOL, *map(str, args)]
    try:
        runpy.run_path(TOOL, run_name='__main__')
    except SystemExit as e:
        return e.code
    finally:
        sys.argv = argv
    return 0


def test_official_panoptic_checkpoint_gives_officials_masks_and_maps(
        tmp_path, capsys):
    src, dst = tmp_path / 'detr-panoptic.pth', tmp_path / 'converted.pth'
    sd = official_panoptic_checkpoint(src)
    model_cfg = panoptic_detr_cfg(
        num_things_classes=80, num_classes=133, queries=ARCH['queries'],
        enc=ARCH['enc'], dec=ARCH['dec'], ffn=ARCH['ffn'])
    config = tmp_path / 'panoptic_cfg.py'
    # the classes of the config: mmdet's CocoPanopticDataset's 133
    config.write_text(f'model = {model_cfg!r}\n'
                      "test_dataloader = dict(dataset=dict("
                      "type='CocoPanopticDataset'))\n")
    assert run_tool(src, dst, '--config', config) == 0
    out = capsys.readouterr().out
    assert 'detected layout: official_panoptic' in out
    assert 'loads strictly' in out

    model = build_mmdetr(model_cfg)
    model.load_state_dict(load_checkpoint_file(dst)['state_dict'],
                          strict=True)
    model.eval()
    # random weights: keep every query whose best class is not no-object
    model.panoptic_postprocess.threshold = 0.0
    data = make_batch(num_boxes=(0, 0), num_classes=133)
    inputs = preprocess(model, data, False)
    images, samples = inputs['inputs'], inputs['data_samples']
    metas = [s.metainfo for s in samples]
    img_shapes = [m['img_shape'] for m in metas]
    assert images.shape[-2:] == (128, 128)  # both images padded
    with torch.inference_mode():
        outputs = model.forward_outputs(images, metas)
        masks = model.mask_logits(outputs)
        preds = model.predict(images, samples)
    ref_logits, ref_masks = official_segm_forward(sd, images, img_shapes,
                                                  HEADS)
    assert ref_masks.std() > 0.1, 'random weights give varied masks'
    torch.testing.assert_close(masks, ref_masks, atol=1e-4, rtol=0)

    sharpen_(sd, model)
    with torch.inference_mode():
        outputs = model.forward_outputs(images, metas)
        masks = model.mask_logits(outputs)
        preds = model.predict(images, samples)
    ref_logits, ref_masks = official_segm_forward(sd, images, img_shapes,
                                                  HEADS)

    is_official_thing = [i in COCO_CATEGORY_IDS
                         for i in range(OFFICIAL_PANOPTIC_LOGITS - 1)]
    is_thing = [label < 80 for label in range(133)]
    label_of = {cat: label for label, cat in enumerate(KEPT)}
    kinds, num_segments = set(), 0
    for i, pred in enumerate(preds):
        ori_shape = tuple(metas[i]['ori_shape'])
        ours = pred.pred_panoptic_seg.sem_seg
        # official PostProcessPanoptic on official logits and masks
        ref_map, ref_segments = official_panoptic(
            ref_logits[i], ref_masks[i], is_official_thing, img_shapes[i],
            ori_shape, threshold=0.0)
        assert ref_segments
        expected = panoptic_to_sem_seg(torch.from_numpy(ref_map), [
            dict(label=label_of[s['category_id']],
                 is_thing=is_official_thing[s['category_id']])
            for s in ref_segments
        ], 133)
        # masks 1e-4 apart only tip the argmax over queries where two
        # queries tie: a few pixels on their borders
        assert (ours == expected).float().mean() > 0.999
        # on our logits and masks, official post-processing gives our map
        # exactly
        ref_map, ref_segments = official_panoptic(
            outputs['cls_scores'][-1, i], masks[i], is_thing, img_shapes[i],
            ori_shape, threshold=0.0)
        expected = panoptic_to_sem_seg(torch.from_numpy(ref_map), [
            dict(label=s['category_id'], is_thing=is_thing[s['category_id']])
            for s in ref_segments
        ], 133)
        assert torch.equal(ours, expected)
        kinds.update(is_thing[s['category_id']] for s in ref_segments)
        num_segments += len(ref_segments)
    # things and stuff, and stuff queries of one class merged (image 2:
    # every query is that stuff class, one segment)
    assert kinds == {True, False} and num_segments >= 3
