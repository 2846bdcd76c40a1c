# Copyright (c) mmdetr contributors. All rights reserved.
"""pytest fixtures shared by the test files. Helper functions live in the
``helpers`` package next to this file (``from helpers import make_batch``)."""
import pytest
import torch

from helpers import write_coco_split


@pytest.fixture
def gen():
    """A seeded torch generator, fresh for every test."""
    return torch.Generator().manual_seed(0)


@pytest.fixture(scope='session')
def coco_root(tmp_path_factory):
    """A tiny COCO-format dataset: 6 train images, 3 val images."""
    root = tmp_path_factory.mktemp('coco')
    write_coco_split(str(root), 'train', 6, seed=1)
    write_coco_split(str(root), 'val', 3, seed=2)
    return root
