# Copyright (c) mmdetr contributors. All rights reserved.
"""DETR checkpoints: loaded safely, converted between the layouts of
official DETR, mmdet 2.x/3.x, Hugging Face transformers and mmdetr, and
fitted to a model with other classes.

- ``safe_load``: ``torch.load`` that runs nothing from the file;
- ``convert``: the key layouts and the conversion between them;
- ``hf``: transformers' DETR directories, in and out;
- ``class_names``: the class names a checkpoint or config has;
- ``classifier_remap``: the classifier's rows matched by class name;
- ``convert_on_load``: ``load_from = 'mmdetr-convert://PATH'`` (registered
  with mmengine's ``CheckpointLoader`` by importing this package).
"""
from .convert import CheckpointLayoutError, convert_state_dict, detect_layout
from .convert_on_load import PREFIX as CONVERT_PREFIX
from .safe_load import (UnsafeCheckpointError, load_checkpoint_file,
                        register_trusted_checkpoint_globals,
                        trusted_checkpoint_globals)

__all__ = [
    'UnsafeCheckpointError', 'load_checkpoint_file',
    'trusted_checkpoint_globals', 'register_trusted_checkpoint_globals',
    'CONVERT_PREFIX', 'CheckpointLayoutError', 'convert_state_dict',
    'detect_layout'
]
