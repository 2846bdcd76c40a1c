# Copyright (c) mmdetr contributors. All rights reserved.
"""mmdetr: DETR as an OpenMMLab (mmdet 3.x) registry plugin.

Importing the package registers its components in mmdetr's registries
(children of mmdet's), see :mod:`mmdetr.registry`, and the checkpoint prefix
``mmdetr-convert://`` (:mod:`mmdetr.utils.checkpoint_scheme`).
"""
from .version import __version__, version_info
from . import models  # noqa: F401,E402  registers the components
from . import utils  # noqa: F401,E402  registers 'mmdetr-convert://'

__all__ = ['__version__', 'version_info']
