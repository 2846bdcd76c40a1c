# Copyright (c) mmdetr contributors. All rights reserved.
"""A tiny COCO panoptic dataset on disk (the shapes generator's
``--panoptic`` output) and a dataset config for it."""
from pathlib import Path
from typing import Sequence

from .tools import load_tool

_shapes = load_tool('tools/misc/make_shapes_dataset.py',
                    'make_shapes_dataset_helpers')
# things (category ids 1-3) then stuff (4-6), mmdet's label order
PANOPTIC_THINGS = _shapes.CLASSES
PANOPTIC_STUFF = _shapes.STUFF_CLASSES
PANOPTIC_CLASSES = PANOPTIC_THINGS + PANOPTIC_STUFF


def write_shapes_panoptic(root, num_train: int = 3, seed: int = 2,
                          img_size: int = 48) -> Path:
    """Write the shapes dataset with ``--panoptic`` (train split only) under
    ``root``; returns ``root/panoptic``."""
    _shapes.make_dataset(str(root), num_train=num_train, num_val=0,
                         seed=seed, img_size=img_size, panoptic=True)
    return Path(root) / 'panoptic'


def shapes_panoptic_cfg(panoptic_root,
                        classes: Sequence[str] = PANOPTIC_CLASSES,
                        pipeline: Sequence[dict] = ()) -> dict:
    """``mmdetr.CocoPanopticDataset`` config of the train split written by
    :func:`write_shapes_panoptic`, with ``classes`` as its metainfo."""
    things = tuple(c for c in classes if c in PANOPTIC_THINGS)
    return dict(
        type='mmdetr.CocoPanopticDataset',
        data_root=str(panoptic_root),
        ann_file='annotations/panoptic_train.json',
        data_prefix=dict(img='train/', seg='annotations/panoptic_train/'),
        metainfo=dict(classes=tuple(classes), thing_classes=things,
                      stuff_classes=tuple(c for c in classes
                                          if c not in things)),
        pipeline=list(pipeline))
