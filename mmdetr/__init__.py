# Copyright (c) mmdetr contributors. All rights reserved.
"""mmdetr: DETR as an OpenMMLab (mmdet 3.x) registry plugin.

Importing the package registers its components in mmdetr's registries
(children of mmdet's), see :mod:`mmdetr.registry`, the checkpoint prefix
``mmdetr-convert://`` (:mod:`mmdetr.utils.checkpoint_scheme`) and the
allowlist of trusted checkpoint classes (:mod:`mmdetr.utils.checkpoint`).
"""
from .version import __version__, version_info
# registers the components, and the checkpoint prefix 'mmdetr-convert://'
from . import (datasets, engine, evaluation, models, utils,  # noqa: F401,E402
               visualization)

# once per process: every weights_only load (mmengine's resume and
# load_from, mmdet's tools) accepts the few trusted checkpoint classes
utils.register_trusted_checkpoint_globals()

__all__ = ['__version__', 'version_info']
