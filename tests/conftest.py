# Copyright (c) mmdetr contributors. All rights reserved.
"""pytest fixtures shared by the test files. Helper functions live in the
``helpers`` package next to this file (``from helpers import make_batch``)."""
import os

# numpy 1.x runs `lscpu` when numpy.testing is first imported: done here,
# before the fast tier's guard refuses processes
import numpy.testing  # noqa: F401
import pytest
import torch

from helpers import write_coco_split

# pytest -n N (pytest-xdist, as `make test` runs): the CPU's cores are
# shared among the workers; each one's torch (and the processes its tests
# start) uses its share, not all of them (spinning OpenMP threads on
# oversubscribed cores make everything slower)
_WORKERS = int(os.environ.get('PYTEST_XDIST_WORKER_COUNT', '1'))
if _WORKERS > 1:
    _CORES = len(os.sched_getaffinity(0)) if hasattr(
        os, 'sched_getaffinity') else (os.cpu_count() or 1)
    _THREADS = max(1, _CORES // _WORKERS)
    torch.set_num_threads(_THREADS)
    os.environ['OMP_NUM_THREADS'] = str(_THREADS)


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


#: training iterations a test may run without the ``slow`` mark
FAST_TRAIN_ITERS = 5


class SlowWork(AssertionError):
    """A test without the ``slow`` mark started slow work."""


@pytest.fixture(autouse=True)
def fast_tier_guard(request, monkeypatch):
    """Tests without the ``slow`` mark (the fast tier, ``-m "not slow"``)
    may not start processes (building an mmengine ``Runner`` does: it runs
    ``gcc --version`` for its environment report) nor train for more than
    :data:`FAST_TRAIN_ITERS` iterations of mmengine's loops: such a test
    fails here, naming what it started. Marked tests are left alone."""
    if request.node.get_closest_marker('slow'):
        yield
        return
    import multiprocessing.process
    import subprocess

    from mmengine.runner import loops

    name = request.node.nodeid

    def refuse(what):
        def start(*args, **kwargs):
            raise SlowWork(f'{name} starts {what}: mark it '
                           '@pytest.mark.slow')
        return start

    monkeypatch.setattr(subprocess.Popen, '__init__', refuse('a process'))
    monkeypatch.setattr(multiprocessing.process.BaseProcess, 'start',
                        refuse('a process'))
    iters = []
    for loop in (loops.EpochBasedTrainLoop, loops.IterBasedTrainLoop):
        run_iter = loop.run_iter

        def counted(self, *args, _run_iter=run_iter, **kwargs):
            iters.append(1)
            if len(iters) > FAST_TRAIN_ITERS:
                raise SlowWork(f'{name} trains more than {FAST_TRAIN_ITERS} '
                               'iterations: mark it @pytest.mark.slow')
            return _run_iter(self, *args, **kwargs)

        monkeypatch.setattr(loop, 'run_iter', counted)
    yield
