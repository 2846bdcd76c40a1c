# Copyright (c) mmdetr contributors. All rights reserved.
from .coco import AnnotationFileError, CocoDataset
from .coco_panoptic import (CocoPanopticDataset, PanopticAnnotationError,
                            check_panoptic_annotations)
from .panoptic_targets import LoadPanopticTargets
from .resumable_batch_sampler import ResumableBatchSampler
from .sample_seed import SampleKey, SampleSeededDataset

__all__ = [
    'AnnotationFileError', 'CocoDataset', 'CocoPanopticDataset',
    'PanopticAnnotationError', 'check_panoptic_annotations',
    'LoadPanopticTargets', 'ResumableBatchSampler', 'SampleKey',
    'SampleSeededDataset'
]
