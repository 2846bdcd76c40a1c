# Copyright (c) mmdetr contributors. All rights reserved.
"""The official panoptic layout (``DETRsegm``: detr.*, bbox_attention.*,
mask_head.*) -> mmdetr keys; the 251-logit classifier -> mmdet's 133
classes."""
from collections import OrderedDict

import pytest
import torch
from mmdet.datasets import CocoPanopticDataset

from mmdetr.checkpoints import (CheckpointLayoutError, convert_state_dict,
                                detect_layout)
from mmdetr.checkpoints.class_names import source_classes
from mmdetr.checkpoints.convert import (COCO_CATEGORY_IDS,
                                        COCO_PANOPTIC_STUFF_IDS,
                                        OFFICIAL_PANOPTIC_LOGITS)
from mmdetr.panoptic import DETRMaskHead
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
    ids = COCO_CATEGORY_IDS + COCO_PANOPTIC_STUFF_IDS
    assert len(ids) == len(meta['classes']) == 133
    assert len(meta['thing_classes']) == len(COCO_CATEGORY_IDS) == 80
    assert meta['classes'][:80] == meta['thing_classes']
    assert list(ids) == sorted(ids) and ids[-1] == 200
    # COCO panoptic: things are the ids <= 90, stuff the ids above
    assert max(COCO_CATEGORY_IDS) <= 90 < min(COCO_PANOPTIC_STUFF_IDS)


def test_convert_renames_mask_keys_and_picks_classifier_rows():
    sd = _official_panoptic()
    assert detect_layout(sd) == 'official_panoptic'
    notes = []
    ours = convert_state_dict(sd, 'auto', 'mmdetr', notes)
    detector = convert_state_dict(
        {k[len('detr.'):]: v for k, v in sd.items() if k.startswith('detr.')},
        'official')
    for key, value in detector.items():
        if not key.startswith('bbox_head.fc_cls'):
            assert torch.equal(ours[key], value), key
    rows = list(COCO_CATEGORY_IDS + COCO_PANOPTIC_STUFF_IDS) + [250]
    for p in ('weight', 'bias'):
        assert torch.equal(ours[f'bbox_head.fc_cls.{p}'],
                           sd[f'detr.class_embed.{p}'][rows])
    assert len(ours['bbox_head.fc_cls.bias']) == 134
    assert torch.equal(ours['mask_head.bbox_attention.q_linear.weight'],
                       sd['bbox_attention.q_linear.weight'])
    assert torch.equal(ours['mask_head.conv_head.adapter3.bias'],
                       sd['mask_head.adapter3.bias'])
    assert any('251 official panoptic logits' in n for n in notes)
    assert not any('kept as they are' in n for n in notes)
    # the class names the converter records: mmdet's COCO panoptic ones
    names = source_classes({'model': sd}, sd, 'official_panoptic', [])
    assert names == CocoPanopticDataset.METAINFO['classes']
    # the mask head part loads strictly
    head = DETRMaskHead(D, HEADS, FPN_DIMS)
    head.load_state_dict({k[len('mask_head.'):]: v for k, v in ours.items()
                          if k.startswith('mask_head.')}, strict=True)
    # mmdetr's own panoptic keys are mmdetr's layout, and have no place in
    # mmdet's DETR
    assert detect_layout(ours) == 'mmdetr'
    with pytest.raises(CheckpointLayoutError, match='mask_head.'):
        convert_state_dict(ours, 'mmdetr', 'mmdet3')


def test_other_classifier_sizes_are_kept():
    notes = []
    ours = convert_state_dict(_official_panoptic(num_logits=7),
                              'official_panoptic', 'mmdetr', notes)
    assert len(ours['bbox_head.fc_cls.weight']) == 7
    assert any('kept as they are' in n for n in notes)


def test_a_stray_key_is_named():
    sd = _official_panoptic()
    sd['extra.weight'] = torch.zeros(1)
    with pytest.raises(CheckpointLayoutError, match='extra.weight'):
        detect_layout(sd)
    with pytest.raises(CheckpointLayoutError, match='extra.weight'):
        convert_state_dict(sd, 'official_panoptic')
