# Copyright (c) mmdetr contributors. All rights reserved.
"""Panoptic segmentation as official DETR does it (paper section 4.4): a
mask head on a trained, frozen detector.

Each concept in its own file; the core (:mod:`mmdetr.models`) does not
know them, the detector reads what :meth:`DETR.forward_outputs` returns:

- :class:`MHAttentionMap` (``attention_map.py``): each query's attention
  maps over the encoder memory;
- :class:`MaskHeadSmallConv` (``mask_head_small_conv.py``): the FPN-style
  convolutional upsampling to stride-4 mask logits;
- :class:`DETRMaskHead` (``mask_head.py``): the two together, official
  ``DETRsegm``'s heads;
- :class:`DETRMaskLoss` (``mask_loss.py``): sigmoid focal and dice losses of
  the matched queries' masks;
- :func:`instance_masks` (``instance_masks.py``): binary masks per
  detection (``segm``), as official ``PostProcessSegm``;
- :class:`DETRPanopticPostProcess` (``postprocess.py``): the panoptic merge
  of official ``PostProcessPanoptic``, in mmdet's panoptic encoding;
- :class:`PanopticDETR` (``detector.py``): the detector with the mask head,
  its losses on a frozen detector, and its predictions.
"""
from .attention_map import MHAttentionMap
from .detector import PanopticDETR
from .instance_masks import instance_masks
from .mask_head import DETRMaskHead
from .mask_head_small_conv import MaskHeadSmallConv
from .mask_loss import (DETRMaskLoss, dice_loss, matched_mask_targets,
                        sigmoid_focal_loss)
from .postprocess import (DETRPanopticPostProcess, nearest_resize_ids,
                          panoptic_merge, panoptic_to_sem_seg)

__all__ = [
    'MHAttentionMap', 'MaskHeadSmallConv', 'DETRMaskHead', 'DETRMaskLoss',
    'sigmoid_focal_loss', 'dice_loss', 'matched_mask_targets',
    'instance_masks', 'DETRPanopticPostProcess', 'panoptic_merge',
    'panoptic_to_sem_seg', 'nearest_resize_ids', 'PanopticDETR'
]
