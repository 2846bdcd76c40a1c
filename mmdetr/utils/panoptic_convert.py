# Copyright (c) mmdetr contributors. All rights reserved.
"""Official DETR panoptic checkpoints (``DETRsegm``) -> mmdetr keys.

Official panoptic checkpoints (``detr-r50-panoptic``, ``-dc5-``, ``-r101-``)
hold three groups of keys:

==========================  ==============================================
official                    mmdetr
==========================  ==============================================
``detr.*``                  the detector, converted as an official box
                            checkpoint (``convert_state_dict``)
``bbox_attention.*``        ``mask_head.bbox_attention.*``
                            (:class:`~mmdetr.models.MHAttentionMap`)
``mask_head.*``             ``mask_head.conv_head.*``
                            (:class:`~mmdetr.models.MaskHeadSmallConv`)
==========================  ==============================================

with the mask head (:class:`~mmdetr.models.DETRMaskHead`) at ``mask_head``
in the detector. The classifier needs one content change: official
panoptic DETR has 251 logits, one per COCO panoptic category id 0..249 and
no-object last; mmdet's ``CocoPanopticDataset`` labels are the 133 ids in
use, things (80) then stuff (53), in id order. Those rows and the no-object
row are kept.
"""
from collections import OrderedDict
from typing import Dict, List, Optional, Tuple

from torch import Tensor

from .convert import (COCO_CATEGORY_IDS, CheckpointLayoutError,
                      convert_state_dict)

# The 53 COCO panoptic stuff category ids, in id order.
COCO_PANOPTIC_STUFF_IDS: Tuple[int, ...] = (
    92, 93, 95, 100, 107, 109, 112, 118, 119, 122, 125, 128, 130, 133, 138,
    141, 144, 145, 147, 148, 149, 151, 154, 155, 156, 159, 161, 166, 168,
    171, 175, 176, 177, 178, 180, 181, 184, 185, 186, 187, 188, 189, 190,
    191, 192, 193, 194, 195, 196, 197, 198, 199, 200)
# mmdet's CocoPanopticDataset label order: things then stuff
COCO_PANOPTIC_CATEGORY_IDS: Tuple[int, ...] = (
    COCO_CATEGORY_IDS + COCO_PANOPTIC_STUFF_IDS)
OFFICIAL_PANOPTIC_LOGITS = 251  # num_classes=250 + no-object

DETR_PREFIX = 'detr.'
# official prefix -> mmdetr prefix of the mask head's parameters
MASK_HEAD_PREFIXES: Tuple[Tuple[str, str], ...] = (
    ('bbox_attention.', 'mask_head.bbox_attention.'),
    ('mask_head.', 'mask_head.conv_head.'),
)
_CLASSIFIER = ('bbox_head.fc_cls.weight', 'bbox_head.fc_cls.bias')


def is_official_panoptic(state_dict: Dict[str, Tensor]) -> bool:
    """Whether the keys are an official ``DETRsegm`` state dict (every key
    under ``detr.``, ``bbox_attention.`` or ``mask_head.``, each group
    present)."""
    groups = [DETR_PREFIX] + [p for p, _ in MASK_HEAD_PREFIXES]
    if not state_dict:
        return False
    if not all(k.startswith(tuple(groups)) for k in state_dict):
        return False
    return all(any(k.startswith(g) for k in state_dict) for g in groups)


def split_official_panoptic(
    state_dict: Dict[str, Tensor]
) -> Tuple['OrderedDict[str, Tensor]', 'OrderedDict[str, Tensor]']:
    """The detector's weights (official box layout, ``detr.`` removed) and
    the mask head's (mmdetr keys).

    Raises:
        CheckpointLayoutError: a key is in none of the three groups.
    """
    detr, mask = OrderedDict(), OrderedDict()
    stray = []
    for key, value in state_dict.items():
        if key.startswith(DETR_PREFIX):
            detr[key[len(DETR_PREFIX):]] = value
            continue
        for theirs, ours in MASK_HEAD_PREFIXES:
            if key.startswith(theirs):
                mask[ours + key[len(theirs):]] = value
                break
        else:
            stray.append(key)
    if stray:
        raise CheckpointLayoutError(
            f'{len(stray)} keys of the official panoptic checkpoint are not '
            f'under detr., bbox_attention. or mask_head., e.g. {stray[:5]}')
    return detr, mask


def convert_official_panoptic(state_dict: Dict[str, Tensor],
                              notes: Optional[List[str]] = None
                              ) -> 'OrderedDict[str, Tensor]':
    """An official panoptic state dict in mmdetr's layout.

    Args:
        state_dict (dict): ``DETRsegm`` weights (``detr.*``,
            ``bbox_attention.*``, ``mask_head.*``).
        notes (list, optional): Receives one line per change that is more
            than a renaming.

    Returns:
        OrderedDict: mmdetr's detector keys, then ``mask_head.*``.
    """
    notes = [] if notes is None else notes
    detr, mask = split_official_panoptic(state_dict)
    detr_notes: List[str] = []
    out = convert_state_dict(detr, 'official', 'mmdetr', detr_notes)
    remap = len(out.get(_CLASSIFIER[0], ())) == OFFICIAL_PANOPTIC_LOGITS
    # the box converter's classifier line would say "kept as they are"
    notes.extend(n for n in detr_notes
                 if not (remap and n.startswith('classifier:')))
    if remap:
        rows = list(COCO_PANOPTIC_CATEGORY_IDS) + [
            OFFICIAL_PANOPTIC_LOGITS - 1
        ]
        for key in _CLASSIFIER:
            out[key] = out[key][rows]
        notes.append(
            'classifier: 251 official panoptic logits (COCO panoptic '
            'category ids 0..249 + no-object) -> the 133 COCO panoptic '
            'classes (80 things, 53 stuff, in id order) + no-object')
    out.update(mask)
    return out
