# Copyright (c) mmdetr contributors. All rights reserved.
"""The core of DETR: the detector, its head, the transformer, the set
criterion with its assigner and match costs, and the positional encodings.

It knows nothing of the training extras (:mod:`mmdetr.extras`), the mmdet
2.x forms (:mod:`mmdetr.compat`), the engine or deployment, which all
build on it.
"""
from .detr import DETR, register_training_only
from .detr_head import DETRHead, top_detections
from .dilated_resnet import DilatedResNet
from .frozen_batch_norm import (ConvFrozenBN2d, FrozenBatchNorm2d,
                                fold_frozen_batch_norms, freeze_batch_norms)
from .hungarian_assigner import HungarianAssigner
from .padding_mask import feature_padding_mask
from .match_cost import BBoxL1Cost, ClassificationCost, IoUCost
from .positional_encoding import (LearnedPositionalEncoding,
                                  SinePositionalEncoding)
from .set_criterion import SetCriterion, SetMatches
from .transformer import (DetrTransformer, DetrTransformerDecoderLayer,
                          DetrTransformerEncoderLayer)

__all__ = [
    'DETR', 'DETRHead', 'DilatedResNet', 'FrozenBatchNorm2d',
    'freeze_batch_norms',
    'ConvFrozenBN2d', 'fold_frozen_batch_norms', 'HungarianAssigner',
    'ClassificationCost', 'BBoxL1Cost', 'IoUCost', 'SinePositionalEncoding',
    'LearnedPositionalEncoding', 'DetrTransformer',
    'DetrTransformerEncoderLayer', 'DetrTransformerDecoderLayer',
    'SetCriterion', 'SetMatches', 'register_training_only',
    'feature_padding_mask', 'top_detections'
]
