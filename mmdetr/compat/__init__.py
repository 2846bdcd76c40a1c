# Copyright (c) mmdetr contributors. All rights reserved.
"""mmdet 2.x compatibility: one translation layer onto today's classes.

- :mod:`.mmdet2_config`: 2.x ``Transformer`` specs -> ``DetrTransformer``
  kwargs; 2.x ``HungarianAssigner(cls_cost=, reg_cost=, iou_cost=)`` ->
  ``match_costs``;
- :mod:`.mmdet2_head`: 2.x head methods (``forward_train``, ``get_bboxes``
  returning tuples, ``simple_test_bboxes``, ``simple_test``) and img_meta
  normalisation;
- :mod:`.mmdet2_costs`: 2.x tensor calls of the match costs and the
  assigner, and a ``FocalLossCost`` that answers them too.

mmdet 2.x's import paths (``mmdetr.core.bbox.assigners``,
``mmdetr.core.bbox.match_costs``, ``mmdetr.models.dense_heads``) re-export
mmdetr's classes from here.
"""
from .mmdet2_config import (Mmdet2ConfigError, is_mmdet2_transformer,
                            translate_assigner_costs, translate_transformer)
from .mmdet2_costs import FocalLossCost, mmdet2_assign, mmdet2_cost_call
from .mmdet2_head import (Mmdet2HeadMixin, normalise_img_meta,
                          normalise_img_metas)

__all__ = [
    'Mmdet2ConfigError', 'is_mmdet2_transformer', 'translate_transformer',
    'translate_assigner_costs', 'FocalLossCost', 'mmdet2_assign',
    'mmdet2_cost_call', 'Mmdet2HeadMixin', 'normalise_img_meta',
    'normalise_img_metas'
]
