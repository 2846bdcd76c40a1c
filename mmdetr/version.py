# Copyright (c) mmdetr contributors. All rights reserved.
"""The single place the version of mmdetr is written (setup.py reads it)."""

__version__ = '0.1.0'
version_info = tuple(int(x) for x in __version__.split('.'))
