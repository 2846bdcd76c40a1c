# Copyright (c) mmdetr contributors. All rights reserved.
"""mmdet 2.x compatibility: 2.x's forms on top of mmdetr's core classes.

- :mod:`.mmdet2_config`: 2.x ``Transformer`` specs -> ``DetrTransformer``
  arguments;
- :mod:`.mmdet2_head`: :class:`DETRHead` with 2.x's methods
  (``forward_train``, ``loss``/``loss_single`` with lists of ground
  truths, tuple ``get_bboxes``, ``simple_test_bboxes``, ``simple_test``,
  ``get_targets``, ``_get_target_single``) and img_meta normalisation;
- :mod:`.mmdet2_costs`: :class:`HungarianAssigner` with 2.x's arguments and
  ``assign`` call, and match costs answering 2.x's tensor calls.

Importing this package (``import mmdetr`` does) registers config adapters:
a config in 2.x's form (a ``DETRHead`` with a 2.x transformer spec, a
``Transformer`` spec, a ``HungarianAssigner`` with ``cls_cost``...) builds
these classes through mmdetr's registries. The core never imports this
package. mmdet 2.x's import paths: ``mmdetr.core.bbox.assigners``,
``mmdetr.core.bbox.match_costs``, and ``mmdetr.compat`` for
``mmdet.models.dense_heads``.
"""
from .mmdet2_config import (Mmdet2ConfigError, is_mmdet2_transformer,
                            translate_transformer)
from .mmdet2_costs import (BBoxL1Cost, ClassificationCost, FocalLossCost,
                           HungarianAssigner, IoUCost, build_match_cost,
                           mmdet2_assign, translate_assigner_costs)
from .mmdet2_costs import register_adapters as _register_cost_adapters
from .mmdet2_head import DETRHead, normalise_img_meta, normalise_img_metas
from .mmdet2_head import register_adapters as _register_head_adapters

_register_cost_adapters()
_register_head_adapters()

__all__ = [
    'Mmdet2ConfigError', 'is_mmdet2_transformer', 'translate_transformer',
    'translate_assigner_costs', 'BBoxL1Cost', 'ClassificationCost',
    'FocalLossCost', 'HungarianAssigner', 'IoUCost', 'build_match_cost',
    'mmdet2_assign', 'DETRHead', 'normalise_img_meta', 'normalise_img_metas'
]
