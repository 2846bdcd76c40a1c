# Copyright (c) mmdetr contributors. All rights reserved.
"""Official panoptic checkpoint keys (detr.*, bbox_attention.*, mask_head.*)
-> mmdetr keys; the 251-logit classifier -> mmdet's 133 classes."""
from collections import OrderedDict

import pytest
import torch
from mmdet.datasets import CocoPanopticDataset

from mmdetr.models import DETRMaskHead
from mmdetr.utils import CheckpointLayoutError, convert_state_dict
from mmdetr.utils.panoptic_convert import (COCO_PANOPTIC_CATEGORY_IDS,
                                           OFFICIAL_PANOPTIC_LOGITS,
                                           convert_official_panoptic,
                                           is_official_panoptic,
                                           split_official_panoptic)
from references.reference_detr import official_state_dict
from references.reference_panoptic import official_mask_state_dict

D, HEADS, FPN_DIMS = 128, 8, (256, 128, 64)  # ResNet-18 levels 3, 2, 1


def _official_panoptic(num_logits=OFFICIAL_PANOPTIC_LOGITS):
    detr = official_state_dict(depth=18, d=D, ffn=64, enc=1, dec=1,
                               queries=5, num_logits=num_logits)
    sd = OrderedDict((f'detr.{k}', v) for k, v in detr.items())
    sd.update(official_mask_state_dict(D, HEADS, FPN_DIMS))
    return sd


def test_category_ids_are_mmdets_panoptic_classes_in_order():
    meta = CocoPanopticDataset.METAINFO
    ids = COCO_PANOPTIC_CATEGORY_IDS
    assert len(ids) == len(meta['classes']) == 133
    num_things = len(meta['thing_classes'])
    assert num_things == 80 and meta['classes'][:80] == meta['thing_classes']
    assert list(ids) == sorted(ids) and ids[-1] == 200
    # COCO panoptic: things are the ids <= 90, stuff the ids above
    assert max(ids[:num_things]) <= 90 < min(ids[num_things:])


def test_convert_renames_mask_keys_and_picks_classifier_rows():
    sd = _official_panoptic()
    assert is_official_panoptic(sd)
    notes = []
    ours = convert_official_panoptic(sd, notes)
    detr_only = convert_state_dict(
        {k[len('detr.'):]: v for k, v in sd.items() if k.startswith('detr.')},
        'official')
    for key, value in detr_only.items():
        if key.startswith('bbox_head.fc_cls'):
            continue
        assert torch.equal(ours[key], value), key
    rows = list(COCO_PANOPTIC_CATEGORY_IDS) + [250]
    assert torch.equal(ours['bbox_head.fc_cls.weight'],
                       sd['detr.class_embed.weight'][rows])
    assert torch.equal(ours['bbox_head.fc_cls.bias'],
                       sd['detr.class_embed.bias'][rows])
    assert len(ours['bbox_head.fc_cls.bias']) == 134
    assert torch.equal(ours['mask_head.bbox_attention.q_linear.weight'],
                       sd['bbox_attention.q_linear.weight'])
    assert torch.equal(ours['mask_head.conv_head.adapter3.bias'],
                       sd['mask_head.adapter3.bias'])
    assert any('251 official panoptic logits' in n for n in notes)
    assert not any('kept as they are' in n for n in notes)
    # the mask head part loads strictly
    head = DETRMaskHead(D, HEADS, FPN_DIMS)
    head.load_state_dict({k[len('mask_head.'):]: v for k, v in ours.items()
                          if k.startswith('mask_head.')}, strict=True)


def test_other_classifier_sizes_are_kept():
    ours = convert_official_panoptic(_official_panoptic(num_logits=7))
    assert len(ours['bbox_head.fc_cls.weight']) == 7


def test_layout_detection_and_stray_keys():
    sd = _official_panoptic()
    assert not is_official_panoptic({k[len('detr.'):]: v for k, v in sd.items()
                                     if k.startswith('detr.')})
    assert not is_official_panoptic({})
    sd['extra.weight'] = torch.zeros(1)
    assert not is_official_panoptic(sd)
    with pytest.raises(CheckpointLayoutError, match='extra.weight'):
        split_official_panoptic(sd)
