# Copyright (c) mmdetr contributors. All rights reserved.
from .coco import AnnotationFileError, CocoDataset
from .resumable_batch_sampler import ResumableBatchSampler
from .sample_seed import SampleKey, SampleSeededDataset

__all__ = [
    'AnnotationFileError', 'CocoDataset', 'ResumableBatchSampler',
    'SampleKey', 'SampleSeededDataset'
]
