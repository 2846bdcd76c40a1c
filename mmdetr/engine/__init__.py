# Copyright (c) mmdetr contributors. All rights reserved.
from .hooks import DataCheckError, DataCheckHook
from .runner import Runner, find_latest_checkpoint

__all__ = ['DataCheckError', 'DataCheckHook', 'Runner',
           'find_latest_checkpoint']
