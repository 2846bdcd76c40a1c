# Copyright (c) mmdetr contributors. All rights reserved.
"""The fast tier (``pytest -m "not slow"``) stays fast: a test without the
``slow`` mark that starts a process or trains for more than a few
iterations fails (``fast_tier_guard`` in conftest.py)."""
import subprocess
import sys

import pytest

from conftest import FAST_TRAIN_ITERS, SlowWork


def test_an_unmarked_test_may_not_start_a_process():
    with pytest.raises(SlowWork, match='mark it @pytest.mark.slow'):
        subprocess.run([sys.executable, '-c', 'pass'])


def test_an_unmarked_test_may_not_train_long(coco_root, tmp_path):
    from mmengine.runner import loops

    class Loop(loops.IterBasedTrainLoop):
        def __init__(self):  # no runner: only the iteration count matters
            pass

    loop = Loop()
    for _ in range(FAST_TRAIN_ITERS):
        with pytest.raises(AttributeError):  # the real run_iter, no runner
            loop.run_iter(None)
    with pytest.raises(SlowWork, match='trains more than'):
        loop.run_iter(None)


@pytest.mark.slow
def test_a_marked_test_may():
    """The guard leaves marked tests alone: the process starts, runs and
    answers."""
    proc = subprocess.run([sys.executable, '-c', 'print(6 * 7)'],
                          capture_output=True, text=True, check=True)
    assert proc.stdout == '42\n'
