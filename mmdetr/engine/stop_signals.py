# Copyright (c) mmdetr contributors. All rights reserved.
"""Stop signals (SIGTERM, SLURM's warning SIGUSR1 ...) turned into a stop
that every rank agrees on.

The handler only records the signal: the training step in progress is not
interrupted, and nothing is written from inside a handler. At chosen points
(after an iteration) the ranks combine what each has received with one
small all-reduce, so a signal that reached only one rank stops all of them
at the same iteration and nobody is left waiting in a collective.
"""
import os
import signal
import threading
import time
from contextlib import contextmanager
from typing import Callable, Iterator, List, Optional, Sequence, Union

import torch
import torch.distributed as dist


def signal_number(sig: Union[str, int]) -> signal.Signals:
    """``'SIGTERM'``, ``'TERM'`` or ``15`` as a :class:`signal.Signals`.

    Raises:
        ValueError: not a signal of this platform.
    """
    try:
        if isinstance(sig, str):
            name = sig.upper()
            return signal.Signals[name if name.startswith('SIG') else
                                  'SIG' + name]
        return signal.Signals(sig)
    except (KeyError, ValueError):
        raise ValueError(f'unknown signal {sig!r} (e.g. SIGTERM, SIGUSR1)')


class StopSignals:
    """Records the given signals once :meth:`install` ed.

    A signal that arrives while :meth:`saving` is noted on stderr as
    ignored: the checkpoint being written is finished first. SIGKILL cannot
    be handled; the write is atomic, so the previous checkpoint stays.

    Args:
        signals (Sequence[str | int]): The signals that ask training to
            stop. Defaults to SIGTERM and SIGUSR1.
    """

    def __init__(self,
                 signals: Sequence[Union[str, int]] = ('SIGTERM',
                                                       'SIGUSR1')) -> None:
        self.signals: List[signal.Signals] = [
            signal_number(s) for s in signals
        ]
        self.received: List[signal.Signals] = []
        self._saving = False
        self._previous = {}

    @property
    def requested(self) -> bool:
        """Whether one of the signals has arrived."""
        return bool(self.received)

    def install(self) -> None:
        """Handle the signals in this process from now on (main thread
        only: Python runs signal handlers there)."""
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in self.signals:
            if sig not in self._previous:
                self._previous[sig] = signal.signal(sig, self._handle)

    def uninstall(self) -> None:
        """Give the signals back to the handlers they had before."""
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}

    def ignore(self) -> None:
        """Ignore the signals from now on, until the process has exited
        (Python gives a handler back to the default action while it
        shuts down; an ignored signal stays ignored)."""
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in self.signals:
            signal.signal(sig, signal.SIG_IGN)

    @contextmanager
    def saving(self) -> Iterator[None]:
        """While a checkpoint is written: signals are recorded and said to
        wait for it."""
        self._saving = True
        try:
            yield
        finally:
            self._saving = False

    def _handle(self, signum, frame) -> None:
        sig = signal.Signals(signum)
        self.received.append(sig)
        if self._saving:
            what = 'a checkpoint is being written; it is finished first'
        elif len(self.received) > 1:
            what = 'already stopping'
        else:
            what = ('finishing this iteration, then saving a checkpoint and '
                    'exiting')
        # a handler should not take the logging locks the interrupted code
        # may hold: one raw write
        os.write(2, f'[mmdetr rank {_rank()}] {time.strftime("%H:%M:%S")} '
                 f'{sig.name} received: {what}\n'.encode())


def _rank() -> int:
    return dist.get_rank() if dist.is_available() and \
        dist.is_initialized() else 0


def agreement_group():
    """The process group the stop flags travel in: the default one when it
    is gloo (CPU tensors, no device sync); else a gloo group over the same
    ranks (the flag all-reduce then does not wait for the GPU); None when
    not distributed. Every rank must call it (it may create a group)."""
    if not (dist.is_available() and dist.is_initialized()) or \
            dist.get_world_size() == 1:
        return None
    if dist.get_backend() == 'gloo':
        return dist.group.WORLD
    return dist.new_group(backend='gloo')


def agree(flags: Sequence[bool], group) -> List[bool]:
    """Each flag OR-ed over the ranks of ``group`` (one all-reduce of a few
    bytes); ``flags`` as they are when ``group`` is None. Every rank of the
    group must call it at the same point."""
    if group is None:
        return [bool(f) for f in flags]
    t = torch.tensor([int(bool(f)) for f in flags], dtype=torch.int32)
    dist.all_reduce(t, op=dist.ReduceOp.MAX, group=group)
    return [bool(v) for v in t.tolist()]


class IgnoreSignalsInWorker:
    """A ``worker_init_fn`` after which a data loader worker ignores
    ``signals`` unless they come from the training process; it then calls
    the original one.

    A scheduler signals every process of the job, loader workers included;
    by default SIGTERM/SIGUSR1 end a worker at once, and the training
    process then fails at its next batch instead of finishing the
    iteration. The training process itself ends its workers with SIGTERM
    when it shuts down (torch, and multiprocessing at exit): that one must
    still work, or the exit would wait for ever. So the signals are
    blocked and a thread takes them (``sigwaitinfo`` tells the sender):
    from the parent they end the worker as before, from anyone else they
    are dropped. Without ``sigwaitinfo`` (not Linux) nothing changes.

    Args:
        signals (Sequence[int]): Signal numbers to take over.
        init_fn (Callable, optional): The loader's previous
            ``worker_init_fn``.
    """

    def __init__(self, signals: Sequence[int],
                 init_fn: Optional[Callable] = None) -> None:
        self.signals = [int(s) for s in signals]
        self.init_fn = init_fn

    def __call__(self, worker_id: int) -> None:
        if hasattr(signal, 'sigwaitinfo'):
            for sig in self.signals:  # not the training process's handler
                signal.signal(sig, signal.SIG_DFL)
            signal.pthread_sigmask(signal.SIG_BLOCK, self.signals)
            threading.Thread(
                target=_take_signals, args=(self.signals, os.getppid()),
                name='mmdetr-stop-signals', daemon=True).start()
        if self.init_fn is not None:
            self.init_fn(worker_id)


def _take_signals(signals: Sequence[int], parent: int) -> None:
    """Wait for ``signals`` (blocked in every thread, default action); end
    the process with the default action when ``parent`` sent one, drop the
    others."""
    while True:
        info = signal.sigwaitinfo(signals)
        if info.si_pid == parent:  # default action: the worker ends
            signal.pthread_sigmask(signal.SIG_UNBLOCK, [info.si_signo])
            signal.raise_signal(info.si_signo)
