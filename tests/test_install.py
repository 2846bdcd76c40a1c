# Copyright (c) mmdetr contributors. All rights reserved.
"""What `make install` promises: the package imports at the declared version
and mmcv's compiled ops load."""
import os.path as osp
import re
import sys

import torch
from packaging.version import Version

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, ROOT)  # for setup.py's helpers


def test_package_imports_with_its_components():
    import mmdetr
    from mmdetr.models import DETR, DETRHead, HungarianAssigner  # noqa
    assert mmdetr.__version__


def test_version_matches_setup_py():
    import mmdetr
    from setup import get_version  # the function setup() uses
    assert get_version() == mmdetr.__version__
    assert re.fullmatch(r'\d+\.\d+\.\d+', mmdetr.__version__)


def test_mmcv_compiled_ops_load_and_run():
    import mmcv
    from mmcv.ops import nms
    assert Version('2.0.0rc4') <= Version(mmcv.__version__) < Version('2.2.0')
    boxes = torch.tensor([[0., 0., 10., 10.], [1., 1., 10., 10.],
                          [20., 20., 30., 30.]])
    scores = torch.tensor([0.9, 0.8, 0.7])
    _, keep = nms(boxes, scores, iou_threshold=0.5)
    assert keep.tolist() == [0, 2]


def test_setup_does_not_require_torch():
    """A plain install of mmdetr must never pull a CUDA torch over the
    user's build."""
    from setup import parse_requirements
    reqs = parse_requirements('runtime.txt')
    assert not any(r.split('<')[0].split('>')[0].split('=')[0].strip() ==
                   'torch' for r in reqs)
    assert any(r.startswith('mmcv>=2.0.0rc4,<2.2.0') for r in reqs)
