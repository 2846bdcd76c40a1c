# Copyright (c) mmdetr contributors. All rights reserved.
"""mmdet 2.x's ``mmdet.models.dense_heads`` path for DETR's head, which has
the 2.x methods (see :mod:`mmdetr.compat`)."""
from mmdetr.models.detr_head import DETRHead

__all__ = ['DETRHead']
