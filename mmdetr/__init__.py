# Copyright (c) mmdetr contributors. All rights reserved.
"""mmdetr: DETR as an OpenMMLab (mmdet 3.x) registry plugin.

Importing the package (as ``custom_imports`` does):

- registers its components in mmdetr's registries (children of mmdet's),
  see :mod:`mmdetr.registry`, and the checkpoint prefix
  ``mmdetr-convert://`` (:mod:`mmdetr.checkpoints.convert_on_load`);
- registers the training extras (:mod:`mmdetr.extras`), panoptic
  segmentation (:mod:`mmdetr.panoptic`) and the mmdet 2.x compatibility
  layer (:mod:`mmdetr.compat`);
- allowlists the few harmless classes mmengine checkpoints hold
  (:func:`mmdetr.checkpoints.register_trusted_checkpoint_globals`), so that
  mmdet's own tools and APIs (``tools/test.py``, ``init_detector``,
  ``DetInferencer``) load checkpoints under torch >= 2.6 with
  ``weights_only`` still on. Nothing else is allowed.

Before all that it refuses versions of Python, torch, mmcv, mmengine, mmdet
and numpy outside the supported ranges (:mod:`mmdetr.supported`), naming
the installed and the supported versions.
"""
from .version import __version__, version_info
from .supported import check_supported, import_mmdet_models  # noqa: E402
import importlib.util as _util  # noqa: E402

check_supported()

# A serving process may have only onnxruntime: there mmdetr.deploy's
# ORTDetector works and the rest (which needs torch and mmdet) is skipped.
if _util.find_spec('torch') is not None:
    # first, so that an installed transformers torch cannot use does not
    # break it (mmdet.models imports transformers' BERT if it can)
    import_mmdet_models()
    # registers the components, and the checkpoint prefix 'mmdetr-convert://'
    from . import (checkpoints, compat, datasets,  # noqa: F401,E402
                   engine, evaluation, extras, models, panoptic, speed,
                   visualization)

    # once per process: every weights_only load (mmengine's resume and
    # load_from, mmdet's tools) accepts the few trusted checkpoint classes
    checkpoints.register_trusted_checkpoint_globals()

__all__ = ['__version__', 'version_info']
