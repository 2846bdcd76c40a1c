# Copyright (c) mmdetr contributors. All rights reserved.
"""docs/mmdet2.md's worked example runs as written (its shell commands are
run by tests/tools/test_mmdet_tools.py)."""
import contextlib
import io
import os.path as osp
import re

from helpers import ROOT


def test_worked_example_runs():
    with open(osp.join(ROOT, 'docs', 'mmdet2.md')) as f:
        text = f.read()
    section = text[text.index('## Worked example'):]
    code = re.search(r'```python\n(.*?)```', section, re.S).group(1)
    out = io.StringIO()
    namespace = {}
    with contextlib.redirect_stdout(out):
        exec(compile(code, 'docs/mmdet2.md', 'exec'), namespace)
    losses = namespace['losses']
    assert {'loss_cls', 'loss_bbox', 'loss_iou', 'd0.loss_cls'} <= set(losses)
    assert all(v > 0 for v in losses.values())
    assert tuple(namespace['det_bboxes'].shape) == (10, 5)
    gt_inds = namespace['result'].gt_inds
    assert gt_inds.tolist().count(1) == 1 and (gt_inds > 1).sum() == 0
