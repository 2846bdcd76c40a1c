# Copyright (c) mmdetr contributors. All rights reserved.
"""The core of DETR: the detector, its head with the set loss, the
transformer, the assigner with its match costs, the targets, and the
positional encodings.

It knows nothing of the speed parts (:mod:`mmdetr.speed`), the training
extras (:mod:`mmdetr.extras`), the mmdet 2.x forms (:mod:`mmdetr.compat`),
the engine or deployment, which all build on it.
"""
from .detr import DETR, register_training_only
from .detr_head import DETRHead, top_detections
from .dilated_resnet import DilatedResNet
from .hungarian_assigner import (BBoxL1Cost, ClassificationCost,
                                 HungarianAssigner, IoUCost)
from .padding_mask import feature_padding_mask
from .positional_encoding import (LearnedPositionalEncoding,
                                  SinePositionalEncoding)
from .set_targets import SetMatches, SetTargets
from .transformer import (DetrTransformer, DetrTransformerDecoderLayer,
                          DetrTransformerEncoderLayer)

__all__ = [
    'DETR', 'DETRHead', 'DilatedResNet', 'HungarianAssigner',
    'ClassificationCost', 'BBoxL1Cost', 'IoUCost', 'SinePositionalEncoding',
    'LearnedPositionalEncoding', 'DetrTransformer',
    'DetrTransformerEncoderLayer', 'DetrTransformerDecoderLayer',
    'SetMatches', 'SetTargets', 'register_training_only',
    'feature_padding_mask', 'top_detections'
]
