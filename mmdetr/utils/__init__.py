# Copyright (c) mmdetr contributors. All rights reserved.
from .checkpoint import (UnsafeCheckpointError, load_checkpoint_file,
                         register_trusted_checkpoint_globals,
                         trusted_checkpoint_globals)
from .setup_env import setup_launcher

__all__ = [
    'UnsafeCheckpointError', 'load_checkpoint_file',
    'trusted_checkpoint_globals', 'register_trusted_checkpoint_globals',
    'setup_launcher'
]
