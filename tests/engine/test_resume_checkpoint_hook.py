# Copyright (c) mmdetr contributors. All rights reserved.
"""ResumeCheckpointHook on a stand-in runner: when it saves, what it keeps,
and how a stop signal ends training (also one that comes while saving)."""
import os
import os.path as osp
import signal
from contextlib import ExitStack

import pytest

from mmdetr.engine import EXIT_RESUMABLE, ResumeCheckpointHook


class Loop:
    """mmdetr's resumable loops as the hook sees them: ``on_exit`` runs when
    the loop ends (:meth:`StandInRunner.end`)."""
    resumable = True
    stop_training = False
    dataloader = None

    def __init__(self):
        self.on_exit = ExitStack()


class StandInRunner:
    """What the hook uses of a runner; ``save_checkpoint`` writes a small
    file in two halves and calls ``during_save`` between them."""

    def __init__(self, work_dir, loop=None):
        self.work_dir = str(work_dir)
        self.iter = 0
        self.epoch = 0
        self.train_loop = loop or Loop()
        self.val_loop = None
        self.during_save = None
        self.saves = []

    def save_checkpoint(self, out_dir, filename, meta=None, by_epoch=True):
        self.saves.append((filename, meta))
        with open(osp.join(out_dir, filename), 'wb') as f:
            f.write(b'first half ')
            if self.during_save is not None:
                self.during_save()
            f.write(b'second half')

    def end(self):
        """The training loop ends (returns or raises)."""
        self.train_loop.on_exit.close()

    def iterate(self, hook, n=1):
        for _ in range(n):
            hook.after_train_iter(self, batch_idx=self.iter)
            if self.train_loop.stop_training:
                return
            self.iter += 1


@pytest.fixture
def run(tmp_path):
    runner = StandInRunner(tmp_path)
    hooks = []

    def start(**kwargs):
        hook = ResumeCheckpointHook(**kwargs)
        hook.before_train(runner)
        hooks.append(hook)
        return hook, runner

    yield start
    for hook in hooks:  # give the signals back even when a test fails
        hook.stop_signals.uninstall()


def files(runner):
    return sorted(n for n in os.listdir(runner.work_dir)
                  if n.startswith('resume_iter'))


def test_every_n_iterations_keeping_the_newest(run):
    hook, runner = run(interval=2, max_keep_ckpts=2)
    runner.iterate(hook, 7)
    assert files(runner) == ['resume_iter_4.pth', 'resume_iter_6.pth']
    assert runner.saves[-1] == ('resume_iter_6.pth', dict(epoch=0, iter=6))
    with open(osp.join(runner.work_dir, 'last_checkpoint')) as f:
        assert f.read().endswith('resume_iter_6.pth')
    hook.after_run(runner)  # no stop: returns


def test_every_m_minutes(run, monkeypatch):
    clock = [100.0]
    monkeypatch.setattr('mmdetr.engine.resume_checkpoint_hook.time.monotonic',
                        lambda: clock[0])
    hook, runner = run(interval_minutes=1)
    runner.iterate(hook, 3)
    assert files(runner) == []
    clock[0] += 61
    runner.iterate(hook, 2)
    assert files(runner) == ['resume_iter_4.pth']


def test_a_signal_stops_after_the_iteration_with_a_checkpoint(run):
    before = signal.getsignal(signal.SIGTERM)
    hook, runner = run(interval=100)
    runner.iterate(hook, 2)
    os.kill(os.getpid(), signal.SIGTERM)  # during iteration 3
    runner.iterate(hook, 5)
    assert runner.train_loop.stop_training and runner.iter == 2
    assert files(runner) == ['resume_iter_3.pth']
    runner.end()
    # the process's own handling is back
    assert signal.getsignal(signal.SIGTERM) == before
    with pytest.raises(SystemExit) as e:
        hook.after_run(runner)
    assert e.value.code == EXIT_RESUMABLE == 75


def test_a_signal_while_a_periodic_checkpoint_is_written(run):
    """The checkpoint is finished, and it is the one training stops with:
    no further iteration, no second file."""
    hook, runner = run(interval=2)
    runner.during_save = lambda: os.kill(os.getpid(), signal.SIGUSR1)
    runner.iterate(hook, 5)
    assert runner.iter == 1 and runner.train_loop.stop_training
    assert files(runner) == ['resume_iter_2.pth']
    with open(osp.join(runner.work_dir, 'resume_iter_2.pth'), 'rb') as f:
        assert f.read() == b'first half second half'


def test_a_second_signal_while_saving_waits_for_the_checkpoint(run, capfd):
    hook, runner = run()
    runner.during_save = lambda: os.kill(os.getpid(), signal.SIGTERM)
    os.kill(os.getpid(), signal.SIGTERM)
    runner.iterate(hook, 3)
    assert runner.iter == 0 and len(runner.saves) == 1
    with open(osp.join(runner.work_dir, 'resume_iter_1.pth'), 'rb') as f:
        assert f.read() == b'first half second half'
    err = capfd.readouterr().err
    assert 'a checkpoint is being written; it is finished first' in err
    runner.end()
    with pytest.raises(SystemExit):
        hook.after_run(runner)


def test_off_with_a_loop_that_cannot_resume_mid_epoch():
    class MMEngineLoop:
        stop_training = False
        dataloader = None

    before = signal.getsignal(signal.SIGTERM)
    runner = StandInRunner('.', MMEngineLoop())
    hook = ResumeCheckpointHook(interval=1)
    hook.before_train(runner)
    assert not hook.enabled
    assert signal.getsignal(signal.SIGTERM) == before
    runner.iterate(hook, 2)
    assert runner.saves == []


@pytest.mark.parametrize('kwargs,match', [
    (dict(max_keep_ckpts=0), 'max_keep_ckpts'),
    (dict(sync_interval=0), 'sync_interval'),
    (dict(interval_minutes=0), 'interval_minutes'),
    (dict(signals=('SIGNOPE', )), 'SIGNOPE'),
])
def test_bad_arguments_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ResumeCheckpointHook(**kwargs)
