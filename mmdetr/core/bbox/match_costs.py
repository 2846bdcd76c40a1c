# Copyright (c) mmdetr contributors. All rights reserved.
"""mmdet 2.x's ``mmdet.core.bbox.match_costs`` path: mmdetr's costs, which
answer 2.x's tensor calls (see :mod:`mmdetr.compat`)."""
from mmdetr.compat.mmdet2_costs import FocalLossCost
from mmdetr.models.match_cost import BBoxL1Cost, ClassificationCost, IoUCost
from mmdetr.registry import build_task_util


def build_match_cost(cfg: dict, default_args=None):
    """2.x's builder: a match cost from its config, mmdetr's classes first."""
    return build_task_util(cfg, default_args=default_args)


__all__ = [
    'build_match_cost', 'ClassificationCost', 'BBoxL1Cost', 'IoUCost',
    'FocalLossCost'
]
