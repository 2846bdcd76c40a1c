# Copyright (c) mmdetr contributors. All rights reserved.
"""Training-only mechanisms, each a registered subclass of a core class.

None of them changes what inference computes (tests show it bit for bit);
the core (:mod:`mmdetr.models`) does not know them.

- :class:`GroupDETRHead` (``group_detr.py``): K groups of queries in
  training, each matched one-to-one (Group DETR);
- :class:`DuplicateWeightDETRHead` (``duplicate_weight.py``): a heavier
  "no object" weight for unmatched predictions on an object;
- :class:`AuxHeadDETR` (``aux_head.py``): a dense head trained on the
  encoder memory (Co-DETR's auxiliary heads).
"""
from .aux_head import AuxHeadDETR
from .duplicate_weight import DuplicateWeightDETRHead
from .group_detr import GroupDETRHead, GroupDetrTransformer

__all__ = [
    'AuxHeadDETR', 'DuplicateWeightDETRHead', 'GroupDETRHead',
    'GroupDetrTransformer'
]
