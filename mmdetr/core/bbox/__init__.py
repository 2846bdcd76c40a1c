# Copyright (c) mmdetr contributors. All rights reserved.
"""mmdet 2.x's ``mmdet.core.bbox`` import paths (see :mod:`mmdetr.compat`)."""
