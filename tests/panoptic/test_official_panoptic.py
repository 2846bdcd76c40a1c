# Copyright (c) mmdetr contributors. All rights reserved.
"""An official panoptic checkpoint (``DETRsegm``) through the converter
tool: detected, loaded strictly, and on a padded batch of 2 the official
per-query masks (1e-4) and panoptic maps of the reference."""
from collections import OrderedDict

import torch

from helpers import (ROOT, build_mmdetr, make_batch, panoptic_detr_cfg,
                     preprocess, run_script)
from mmdetr.panoptic import panoptic_to_sem_seg
from mmdetr.checkpoints import load_checkpoint_file
from mmdetr.checkpoints.convert import (COCO_CATEGORY_IDS,
                                        COCO_PANOPTIC_STUFF_IDS,
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
    assert run_script(TOOL, src, dst, '--config', config) == 0
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
    assert images.shape[-2:] == (128, 128)  # both images padded

    ours, ref = both_models(model, sd, images, samples)
    assert ref['masks'].std() > 0.1, 'random weights give varied masks'
    torch.testing.assert_close(ours['masks'], ref['masks'], atol=1e-4,
                               rtol=0)

    sharpen_(sd, model)
    ours, ref = both_models(model, sd, images, samples)
    is_official_thing = [i in COCO_CATEGORY_IDS
                         for i in range(OFFICIAL_PANOPTIC_LOGITS - 1)]
    is_thing = [label < 80 for label in range(133)]
    kinds, num_segments = set(), 0
    for i, pred in enumerate(ours['preds']):
        sem_seg = pred.pred_panoptic_seg.sem_seg
        # official PostProcessPanoptic on official logits and masks: masks
        # 1e-4 apart only tip the argmax over queries where two queries
        # tie, a few pixels on their borders
        expected, _ = official_sem_seg(ref['logits'][i], ref['masks'][i],
                                       is_official_thing, pred.metainfo,
                                       KEPT)
        assert (sem_seg == expected).float().mean() > 0.999
        # on our logits and masks, official post-processing gives our map
        # exactly
        expected, segments = official_sem_seg(
            ours['logits'][i], ours['masks'][i], is_thing, pred.metainfo)
        assert torch.equal(sem_seg, expected)
        kinds.update(s['is_thing'] for s in segments)
        num_segments += len(segments)
    # things and stuff, and stuff queries of one class merged (image 2:
    # every query is that stuff class, one segment)
    assert kinds == {True, False} and num_segments >= 3


def both_models(model, sd, images, samples):
    """Ours (its last layer's logits, mask logits and predictions) and the
    reference's (logits and mask logits) on the same padded batch."""
    metas = [s.metainfo for s in samples]
    with torch.inference_mode():
        outputs = model.forward_outputs(images, metas)
        ours = dict(logits=outputs['cls_scores'][-1],
                    masks=model.mask_logits(outputs),
                    preds=model.predict(images, samples))
    logits, masks = official_segm_forward(
        sd, images, [m['img_shape'] for m in metas], HEADS)
    return ours, dict(logits=logits, masks=masks)


def official_sem_seg(logits, masks, is_thing, meta, labels=None):
    """Official ``PostProcessPanoptic`` of one image (threshold 0) in
    mmdet's encoding, and its segments; ``labels`` maps the logits'
    classes to ours (None: they are ours)."""
    ids, segments = official_panoptic(logits, masks, is_thing,
                                      meta['img_shape'],
                                      tuple(meta['ori_shape']),
                                      threshold=0.0)
    assert segments
    segments = [dict(label=labels.index(s['category_id']) if labels else
                     s['category_id'],
                     is_thing=is_thing[s['category_id']]) for s in segments]
    return panoptic_to_sem_seg(torch.from_numpy(ids), segments,
                               133), segments
