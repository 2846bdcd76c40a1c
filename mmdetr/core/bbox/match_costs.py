# Copyright (c) mmdetr contributors. All rights reserved.
"""mmdet 2.x's ``mmdet.core.bbox.match_costs`` path: mmdetr's costs, which
answer 2.x's tensor calls, and 2.x's builder (see :mod:`mmdetr.compat`)."""
from mmdetr.compat import (BBoxL1Cost, ClassificationCost, FocalLossCost,
                           IoUCost, build_match_cost)

__all__ = [
    'build_match_cost', 'ClassificationCost', 'BBoxL1Cost', 'IoUCost',
    'FocalLossCost'
]
