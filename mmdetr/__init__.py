# Copyright (c) mmdetr contributors. All rights reserved.
"""mmdetr: DETR as an OpenMMLab (mmdet 3.x) registry plugin.

Importing the package registers its components in mmdetr's registries
(children of mmdet's), see :mod:`mmdetr.registry`, and the checkpoint prefix
``mmdetr-convert://`` (:mod:`mmdetr.utils.checkpoint_scheme`).
"""
from .version import __version__, version_info
import importlib.util as _util  # noqa: E402

# A serving process may have only onnxruntime: there mmdetr.deploy's
# ORTDetector works and the rest (which needs torch and mmdet) is skipped.
if _util.find_spec('torch') is not None:
    # registers the components, and the checkpoint prefix 'mmdetr-convert://'
    from . import datasets, engine, models, utils  # noqa: F401,E402

__all__ = ['__version__', 'version_info']
