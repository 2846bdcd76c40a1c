# Copyright (c) mmdetr contributors. All rights reserved.
from .detr import DETR
from .detr_head import DETRHead
from .frozen_batch_norm import (ConvFrozenBN2d, FrozenBatchNorm2d,
                                fold_frozen_batch_norms, freeze_batch_norms)
from .hungarian_assigner import HungarianAssigner
from .match_cost import BBoxL1Cost, ClassificationCost, IoUCost
from .positional_encoding import (LearnedPositionalEncoding,
                                  SinePositionalEncoding)
from .transformer import (DetrTransformer, DetrTransformerDecoderLayer,
                          DetrTransformerEncoderLayer)

__all__ = [
    'DETR', 'DETRHead', 'FrozenBatchNorm2d', 'freeze_batch_norms',
    'ConvFrozenBN2d', 'fold_frozen_batch_norms',
    'HungarianAssigner', 'ClassificationCost',
    'BBoxL1Cost', 'IoUCost', 'SinePositionalEncoding',
    'LearnedPositionalEncoding', 'DetrTransformer',
    'DetrTransformerEncoderLayer', 'DetrTransformerDecoderLayer'
]
