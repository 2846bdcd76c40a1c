# Copyright (c) mmdetr contributors. All rights reserved.
"""mmdet 2.x's ``mmdet.core.bbox.assigners`` path: mmdetr's assigner with
2.x's arguments and calls (see :mod:`mmdetr.compat`)."""
from mmdet.models.task_modules.assigners import AssignResult

from mmdetr.compat import HungarianAssigner

__all__ = ['AssignResult', 'HungarianAssigner']
