# Copyright (c) mmdetr contributors. All rights reserved.
"""mmdetr: DETR as an OpenMMLab (mmdet 3.x) registry plugin.

Importing the package registers its components in mmdetr's registries
(children of mmdet's); see :mod:`mmdetr.registry`.
"""
from .version import __version__, version_info
from . import datasets, engine, models  # noqa: F401,E402  registers them

__all__ = ['__version__', 'version_info']
