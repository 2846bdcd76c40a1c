# Copyright (c) mmdetr contributors. All rights reserved.
from .checkpoint import (UnsafeCheckpointError, load_checkpoint_file,
                         trusted_checkpoint_globals)

__all__ = [
    'UnsafeCheckpointError', 'load_checkpoint_file',
    'trusted_checkpoint_globals'
]
