# Copyright (c) mmdetr contributors. All rights reserved.
from .detr import DETR
from .detr_head import DETRHead
from .detr_mask_head import DETRMaskHead
from .frozen_batch_norm import (ConvFrozenBN2d, FrozenBatchNorm2d,
                                fold_frozen_batch_norms, freeze_batch_norms)
from .hungarian_assigner import HungarianAssigner
from .mask_head_small_conv import MaskHeadSmallConv
from .mask_loss import (DETRMaskLoss, dice_loss, matched_mask_preds,
                        matched_mask_targets, sigmoid_focal_loss)
from .match_cost import BBoxL1Cost, ClassificationCost, IoUCost
from .mh_attention_map import MHAttentionMap
from .panoptic_postprocess import (DETRPanopticPostProcess,
                                   nearest_resize_ids, panoptic_merge,
                                   panoptic_to_sem_seg)
from .positional_encoding import (LearnedPositionalEncoding,
                                  SinePositionalEncoding)
from .segm_postprocess import instance_masks
from .transformer import (DetrTransformer, DetrTransformerDecoderLayer,
                          DetrTransformerEncoderLayer)

__all__ = [
    'DETR', 'DETRHead', 'FrozenBatchNorm2d', 'freeze_batch_norms',
    'ConvFrozenBN2d', 'fold_frozen_batch_norms',
    'HungarianAssigner', 'ClassificationCost',
    'BBoxL1Cost', 'IoUCost', 'SinePositionalEncoding',
    'LearnedPositionalEncoding', 'DetrTransformer',
    'DetrTransformerEncoderLayer', 'DetrTransformerDecoderLayer',
    'DETRMaskHead', 'MHAttentionMap', 'MaskHeadSmallConv', 'DETRMaskLoss',
    'sigmoid_focal_loss', 'dice_loss', 'matched_mask_preds',
    'matched_mask_targets', 'instance_masks', 'DETRPanopticPostProcess',
    'panoptic_merge', 'panoptic_to_sem_seg', 'nearest_resize_ids'
]
