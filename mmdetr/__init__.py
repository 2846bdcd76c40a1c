# Copyright (c) mmdetr contributors. All rights reserved.
"""mmdetr: DETR as an OpenMMLab (mmdet 3.x) registry plugin.

Importing the package registers its components in mmdetr's registries
(children of mmdet's), see :mod:`mmdetr.registry`, and the checkpoint prefix
``mmdetr-convert://`` (:mod:`mmdetr.utils.checkpoint_scheme`).
"""
from .version import __version__, version_info
# registers the components, and the checkpoint prefix 'mmdetr-convert://'
from . import (datasets, engine, evaluation, models, utils,  # noqa: F401,E402
               visualization)

__all__ = ['__version__', 'version_info']
