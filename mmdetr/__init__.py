# Copyright (c) mmdetr contributors. All rights reserved.
"""mmdetr: DETR as an OpenMMLab (mmdet 3.x) registry plugin."""
from .version import __version__, version_info

__all__ = ['__version__', 'version_info']
