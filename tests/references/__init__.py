# Copyright (c) mmdetr contributors. All rights reserved.
"""Independent references the tests compare mmdetr against.

Each module here is written from the paper's equations or the original
code's behaviour, never from mmdetr's or mmdet's code, so a shared mistake
cannot make both sides agree. Import the module you need, e.g.
``from references.reference_detr import official_forward``.
"""
