# Copyright (c) mmdetr contributors. All rights reserved.
"""mmdet 2.x's ``mmdet.core`` import paths, for code written against them
(see :mod:`mmdetr.compat`). Nothing is defined here."""
