# Copyright (c) mmdetr contributors. All rights reserved.
from .coco import AnnotationFileError, CocoDataset
from .coco_panoptic import (CocoPanopticDataset, PanopticAnnotationError,
                            check_panoptic_annotations)
from .panoptic_targets import LoadPanopticTargets

__all__ = [
    'AnnotationFileError', 'CocoDataset', 'CocoPanopticDataset',
    'PanopticAnnotationError', 'check_panoptic_annotations',
    'LoadPanopticTargets'
]
