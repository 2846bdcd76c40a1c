# Copyright (c) mmdetr contributors. All rights reserved.
"""Stop signals: recorded, not acted on inside the handler; a second one
while saving waits for the checkpoint; loader workers ignore them."""
import os
import signal

import pytest
import torch
from torch.utils.data import DataLoader

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


def test_loader_workers_ignore_the_stop_signals():
    ignore = IgnoreSignalsInWorker([signal.SIGTERM])
    loader = DataLoader(SignalsItself(), num_workers=1, batch_size=1,
                        worker_init_fn=ignore)
    assert [int(b) for b in loader] == [0, 1]
    # the same loader without it loses its worker
    loader = DataLoader(SignalsItself(), num_workers=1, batch_size=1)
    with pytest.raises(RuntimeError, match='DataLoader worker'):
        list(loader)
