# Copyright (c) mmdetr contributors. All rights reserved.
"""Stop signals: recorded, not acted on inside the handler; a second one
while saving waits for the checkpoint; loader workers ignore them."""
import os
import signal
import sys

import pytest
import torch
from torch.utils.data import DataLoader

from helpers import ROOT, run
from mmdetr.engine.stop_signals import (IgnoreSignalsInWorker, StopSignals,
                                        agree, signal_number)


@pytest.fixture
def stop():
    signals = StopSignals(('SIGTERM', 'usr1'))
    signals.install()
    yield signals
    signals.uninstall()


def test_signals_are_recorded_and_said(stop, capfd):
    assert not stop.requested
    os.kill(os.getpid(), signal.SIGUSR1)
    assert stop.requested and stop.received == [signal.SIGUSR1]
    assert 'SIGUSR1 received: finishing this iteration' in \
        capfd.readouterr().err
    with stop.saving():
        os.kill(os.getpid(), signal.SIGTERM)  # a second one, while saving
    assert stop.received == [signal.SIGUSR1, signal.SIGTERM]
    assert 'SIGTERM received: a checkpoint is being written; it is ' \
        'finished first' in capfd.readouterr().err
    os.kill(os.getpid(), signal.SIGTERM)
    assert 'already stopping' in capfd.readouterr().err


def test_uninstall_gives_the_signals_back():
    before = signal.getsignal(signal.SIGUSR1)
    stop = StopSignals(('SIGUSR1', ))
    stop.install()
    assert signal.getsignal(signal.SIGUSR1) == stop._handle
    stop.uninstall()
    assert signal.getsignal(signal.SIGUSR1) == before


def test_a_stopped_rank_ignores_the_signals_on_its_way_out():
    """ignore(): the launcher's SIGTERM to a rank that is exiting with the
    stop's status does not end it with SIGTERM's (Python gives handlers
    back to the default action during shutdown, not SIG_IGN)."""
    before = signal.getsignal(signal.SIGUSR1)
    stop = StopSignals(('SIGUSR1', ))
    stop.install()
    stop.uninstall()
    try:
        stop.ignore()
        assert signal.getsignal(signal.SIGUSR1) is signal.SIG_IGN
        os.kill(os.getpid(), signal.SIGUSR1)  # would end pytest otherwise
        assert stop.received == []
    finally:
        signal.signal(signal.SIGUSR1, before)


def test_signal_names_and_numbers():
    assert signal_number('TERM') == signal_number(15) == signal.SIGTERM
    with pytest.raises(ValueError, match="'SIGNOPE'"):
        StopSignals(('SIGNOPE', ))


def test_agree_without_a_process_group_is_the_flags():
    assert agree([1, 0, True], None) == [True, False, True]


class SignalsItself(torch.utils.data.Dataset):
    """Loading an item sends SIGTERM to the loading process, as a scheduler
    signalling every process of a job does."""

    def __len__(self):
        return 2

    def __getitem__(self, i):
        os.kill(os.getpid(), signal.SIGTERM)
        return i


@pytest.mark.slow  # loader worker processes
def test_loader_workers_ignore_the_stop_signals():
    ignore = IgnoreSignalsInWorker([signal.SIGTERM])
    loader = DataLoader(SignalsItself(), num_workers=1, batch_size=1,
                        worker_init_fn=ignore)
    assert [int(b) for b in loader] == [0, 1]
    # the same loader without it loses its worker
    loader = DataLoader(SignalsItself(), num_workers=1, batch_size=1)
    with pytest.raises(RuntimeError, match='DataLoader worker'):
        list(loader)


EXITS = f"""
import importlib.util, signal, sys
from torch.utils.data import DataLoader
# the module alone (mmdetr's __init__ would import mmdet: slow)
spec = importlib.util.spec_from_file_location(
    'stop_signals', {ROOT!r} + '/mmdetr/engine/stop_signals.py')
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
IgnoreSignalsInWorker = module.IgnoreSignalsInWorker
loader = DataLoader(list(range(8)), batch_size=2, num_workers=2,
                    persistent_workers=bool(int(sys.argv[1])),
                    worker_init_fn=IgnoreSignalsInWorker([signal.SIGTERM]))
for epoch in range(2):
    for i, batch in enumerate(loader):
        if epoch == 1 and i == 1:
            break  # stopped mid-epoch
print('trained')
"""


@pytest.mark.slow
@pytest.mark.parametrize('persistent', [0, 1])
def test_the_training_process_still_ends_its_workers_at_exit(persistent):
    """multiprocessing ends loader workers with SIGTERM at exit and waits
    for them: a worker that ignored it from its parent too would hang the
    exit for ever."""
    proc = run(sys.executable, '-c', EXITS, persistent, timeout=120,
               check=False)
    assert proc.returncode == 0 and 'trained' in proc.stdout, proc.stderr
