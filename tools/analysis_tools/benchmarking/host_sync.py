# Copyright (c) mmdetr contributors. All rights reserved.
"""Count the points where the host waits for the device.

On a GPU, every read of a device value by Python (``.item()``, ``float()``,
``bool()``, ``.tolist()``, ``.cpu()``), every op whose output size depends
on the data (``nonzero``, ``unique``) and every blocking copy drains the
device's queue: the host stops feeding kernels until the device catches up.
A training step that does this dozens of times leaves the GPU idle between
them, and under DDP every such wait lines up all ranks behind the slowest.

The counter wraps the code from outside; the code it counts does nothing
for it. Two kinds of events are counted:

- ops seen by a :class:`~torch.utils._python_dispatch.TorchDispatchMode`
  (:data:`SYNC_OPS`); they show on CPU tensors too, so a CPU test counts
  what a GPU run would do; on a GPU machine, copies between host and
  device show as such ops too;
- where no GPU is present, the points where tensor data crosses into or
  out of host code, which no dispatch mode sees there because every tensor
  already is on the host: ``Tensor.numpy()`` and ``Tensor.tolist()`` (the
  host reads tensor data: a wait, ``'to_host'``) and ``torch.from_numpy``
  (host data becomes a tensor: a copy to the device, which code can make
  without a wait, counted apart as ``copies['to_device']``). While a
  counter is active these three functions are wrapped.

Used by ``benchmark.py``'s ``train host syncs`` row and by the tests
(``tests/helpers/steps.py``). Usage, with ``tools/analysis_tools`` on
``sys.path`` (tools/ is not a package)::

    from benchmarking.host_sync import HostSyncCounter
    with HostSyncCounter() as counter:
        train_step()
    print(counter.total, counter.counts, counter.copies)
"""
import os
import sys
import threading
from collections import Counter
from typing import Callable, List, Optional, Tuple

import torch
from torch.utils._python_dispatch import TorchDispatchMode

aten = torch.ops.aten

#: Ops whose result the host must wait for (value reads and data-dependent
#: output sizes), by overload packet.
SYNC_OPS = {
    aten._local_scalar_dense: 'item',  # .item(), float(), int(), bool()
    aten.is_nonzero: 'item',
    aten.nonzero: 'nonzero',
    aten._unique2: 'unique',
    aten._unique: 'unique',
    aten.unique_dim: 'unique',
    aten.unique_consecutive: 'unique',
    aten.equal: 'equal',
    aten.masked_select: 'nonzero',
}

_active: List['HostSyncCounter'] = []
_lock = threading.Lock()
_HERE = os.path.abspath(__file__)
_TORCH_DIR = os.path.dirname(os.path.abspath(torch.__file__))


def _callers() -> List[str]:
    """'file:line' of the calling frames outside this module, innermost
    first."""
    frames, frame = [], sys._getframe(1)
    while frame is not None:
        if os.path.abspath(frame.f_code.co_filename) != _HERE:
            frames.append(f'{frame.f_code.co_filename}:{frame.f_lineno}')
        frame = frame.f_back
    return frames


def _outside_torch(frames: List[str]) -> str:
    for frame in frames:
        if not os.path.abspath(frame).startswith(_TORCH_DIR):
            return frame
    return '?'


def ignore_optimizer_step_counters(kind: str, frames: List[str]) -> bool:
    """torch.optim's optimizers (unless fused or capturable) keep their
    ``step`` counters in host tensors even when training on a GPU and read
    them with ``.item()``: no device wait, although a CPU run, where every
    tensor is on the host, cannot tell them apart."""
    if kind != 'item':
        return False
    optim_dir = os.path.join(_TORCH_DIR, 'optim') + os.sep
    # torch's own frames right above the op (torch.compile's wrappers
    # included) must include torch/optim: a read made by code outside torch
    # during a step still counts
    for frame in frames:
        path = os.path.abspath(frame.rsplit(':', 1)[0])
        if not path.startswith(_TORCH_DIR):
            return False
        if path.startswith(optim_dir):
            return True
    return False


class HostSyncCounter(TorchDispatchMode):
    """Count host-device synchronisations of everything run inside it.

    Args:
        ignore (callable, optional): ``ignore(kind, frames) -> bool`` with
            ``frames`` the calling 'file:line's, innermost first; events for
            which it returns True are not counted. Defaults to
            :func:`ignore_optimizer_step_counters`.

    Attributes:
        counts (Counter): waits by kind: 'item', 'nonzero', 'unique',
            'equal' (dispatch ops), 'copy' (a blocking copy between devices,
            on GPU machines) and 'to_host' (host reads of tensor data, on
            machines without a GPU).
        copies (Counter): copies to the device that need not wait:
            'copy' (non-blocking, on GPU machines) or 'to_device' (host data
            made a tensor, on machines without a GPU).
        events (list[tuple[str, str]]): (kind, 'file:line' of the first
            caller outside torch) of every counted wait and copy, in order,
            to find where they come from.
    """

    def __init__(
            self,
            ignore: Optional[Callable[[str, List[str]], bool]] = None
    ) -> None:
        super().__init__()
        self.ignore = ignore if ignore is not None \
            else ignore_optimizer_step_counters
        self.counts: Counter = Counter()
        self.copies: Counter = Counter()
        self.events: List[Tuple[str, str]] = []

    @property
    def total(self) -> int:
        """Number of host waits (dispatch ops plus blocking copies)."""
        return sum(self.counts.values())

    def record(self, kind: str, blocking: bool = True) -> None:
        frames = _callers()
        if self.ignore(kind, frames):
            return
        (self.counts if blocking else self.copies)[kind] += 1
        self.events.append((kind, _outside_torch(frames)))

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kind = SYNC_OPS.get(func.overloadpacket)
        if kind is not None:
            self.record(kind)
        elif func.overloadpacket in (aten._to_copy, aten.copy_):
            # a copy between devices (visible on a GPU machine only)
            crossing = _device_crossing(func, args, kwargs or {})
            if crossing is not None:
                self.record('copy', blocking=crossing)
        return func(*args, **(kwargs or {}))

    def __enter__(self):
        with _lock:
            if not _active:
                _HostCrossings.install()
            _active.append(self)
        return super().__enter__()

    def __exit__(self, *exc):
        with _lock:
            if self in _active:
                _active.remove(self)
            if not _active:
                _HostCrossings.remove()
        return super().__exit__(*exc)


def _device_crossing(func, args, kwargs) -> Optional[bool]:
    """None if the copy stays on one device, else whether the host waits
    for it (every copy to the host does; one to the device does unless it
    is non-blocking)."""
    if func.overloadpacket is aten.copy_:
        dst, src = args[0].device, args[1].device
        non_blocking = args[2] if len(args) > 2 else kwargs.get(
            'non_blocking', False)
    else:
        src = args[0].device
        dst = torch.device(kwargs.get('device') or src)
        non_blocking = kwargs.get('non_blocking', False)
    if dst == src:
        return None
    return dst.type == 'cpu' or not non_blocking


def _host_crossing(kind: str, blocking: bool, fn):
    """``fn`` that records ``kind`` in the active counters when no GPU is
    present (see the module docstring)."""

    def wrapped(*args, **kwargs):
        if not torch.cuda.is_available():
            for counter in list(_active):
                counter.record(kind, blocking)
        return fn(*args, **kwargs)

    return wrapped


class _HostCrossings:
    """Wraps ``Tensor.numpy``, ``Tensor.tolist`` and ``torch.from_numpy``
    while the first counter is active."""

    originals = dict(numpy=torch.Tensor.numpy, tolist=torch.Tensor.tolist,
                     from_numpy=torch.from_numpy)

    @classmethod
    def install(cls) -> None:
        torch.Tensor.numpy = _host_crossing('to_host', True,
                                            cls.originals['numpy'])
        torch.Tensor.tolist = _host_crossing('to_host', True,
                                             cls.originals['tolist'])
        torch.from_numpy = _host_crossing('to_device', False,
                                          cls.originals['from_numpy'])

    @classmethod
    def remove(cls) -> None:
        torch.Tensor.numpy = cls.originals['numpy']
        torch.Tensor.tolist = cls.originals['tolist']
        torch.from_numpy = cls.originals['from_numpy']


def count_host_syncs(fn: Callable, *args, ignore=None, **kwargs):
    """Run ``fn(*args, **kwargs)`` inside a :class:`HostSyncCounter`.

    Returns:
        tuple: ``fn``'s result and the counter.
    """
    with HostSyncCounter(ignore) as counter:
        result = fn(*args, **kwargs)
    return result, counter
