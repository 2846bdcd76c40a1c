# Copyright (c) mmdetr contributors. All rights reserved.
from .coco import AnnotationFileError, CocoDataset

__all__ = ['AnnotationFileError', 'CocoDataset']
