# Copyright (c) mmdetr contributors. All rights reserved.
"""mmdet 2.x's ``mmdet.core.bbox.assigners`` path: mmdetr's assigner, which
accepts the 2.x arguments and calls (see :mod:`mmdetr.compat`)."""
from mmdet.models.task_modules.assigners import AssignResult

from mmdetr.models.hungarian_assigner import HungarianAssigner

__all__ = ['AssignResult', 'HungarianAssigner']
