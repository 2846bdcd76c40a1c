# Copyright (c) mmdetr contributors. All rights reserved.
from .checkpoint import (UnsafeCheckpointError, load_checkpoint_file,
                         register_trusted_checkpoint_globals,
                         trusted_checkpoint_globals)
from .checkpoint_scheme import PREFIX as CONVERT_PREFIX
from .convert import (CheckpointLayoutError, convert_state_dict,
                      detect_layout)

__all__ = [
    'UnsafeCheckpointError', 'load_checkpoint_file',
    'trusted_checkpoint_globals', 'register_trusted_checkpoint_globals',
    'CONVERT_PREFIX', 'CheckpointLayoutError', 'convert_state_dict',
    'detect_layout'
]
