# Copyright (c) mmdetr contributors. All rights reserved.
"""Count the points where the host waits for the device.

On a GPU, every read of a device value by Python (``.item()``, ``float()``,
``bool()``, ``.tolist()``, ``.cpu()``), every op whose output size depends
on the data (``nonzero``, ``unique``) and every blocking copy drains the
device's queue: the host stops feeding kernels until the device catches up.
A training step that does this dozens of times leaves the GPU idle between
them, and under DDP every such wait lines up all ranks behind the slowest.

Two kinds of events are counted:

- ops seen by a :class:`~torch.utils._python_dispatch.TorchDispatchMode`
  (:data:`SYNC_OPS`); they show on CPU tensors too, so a CPU test counts
  what a GPU run would do;
- explicit host <-> device copies made by mmdetr's code through
  :func:`to_host` and :func:`to_device`. On a CPU-only machine these copies
  are no-ops that no dispatch mode sees, so the code announces them itself.
  :func:`to_host` blocks (the host needs the values); :func:`to_device`
  copies host data from pinned memory without blocking on CUDA, so it is
  counted apart (``copies``), not as a wait.

Usage::

    with HostSyncCounter() as counter:
        train_step()
    print(counter.total, counter.counts, counter.copies)
"""
import os
import sys
import threading
from collections import Counter
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np
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
            'equal' (dispatch ops), 'copy' (a blocking copy between devices
            that the code did not announce; visible on GPU machines) and
            'to_host' (explicit blocking copies).
        copies (Counter): non-blocking host-to-device copies
            ('to_device', or 'copy' when not announced).
        events (list[tuple[str, str]]): (kind, 'file:line' of the first
            caller outside torch) of every counted wait and copy, in order,
            to find where they come from.
    """

    def __init__(self,
                 ignore: Optional[Callable[[str, List[str]], bool]] = None) -> None:
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
            # a copy between devices that the code did not announce through
            # to_host/to_device (visible on a GPU machine only)
            crossing = _device_crossing(func, args, kwargs or {})
            if crossing is not None:
                self.record('copy', blocking=crossing)
        return func(*args, **(kwargs or {}))

    def __enter__(self):
        with _lock:
            _active.append(self)
        return super().__enter__()

    def __exit__(self, *exc):
        with _lock:
            if self in _active:
                _active.remove(self)
        return super().__exit__(*exc)

    def summary(self) -> Dict[str, int]:
        """Waits and non-blocking copies by kind, for reports."""
        out = dict(self.counts)
        out.update({f'{k} (non-blocking)': v for k, v in self.copies.items()})
        return out


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


def _record(kind: str, blocking: bool) -> None:
    for counter in list(_active):
        counter.record(kind, blocking)


def to_host(tensor: torch.Tensor) -> np.ndarray:
    """Copy ``tensor`` to a host numpy array: one counted, blocking wait.

    Args:
        tensor (Tensor): Any shape; detached, its dtype kept.
    """
    _record('to_host', blocking=True)
    tensor = tensor.detach()
    # the dispatch mode would see a cross-device copy as well; announced
    # above, so it is not counted twice
    with _suspended():
        return tensor.cpu().numpy()


def to_device(array: np.ndarray, device) -> torch.Tensor:
    """Copy host data to ``device`` without making the host wait.

    On CUDA the data goes through pinned memory with ``non_blocking=True``:
    the copy is queued behind the kernels already queued and the host goes
    on (torch's pinned-memory allocator keeps the buffer alive until the
    copy has run). Counted as a non-blocking copy.

    Args:
        array (np.ndarray): Host data.
        device (torch.device | str): Target device.
    """
    _record('to_device', blocking=False)
    device = torch.device(device)
    tensor = torch.from_numpy(np.ascontiguousarray(array))
    if device.type == 'cpu':
        return tensor
    with _suspended():
        if device.type == 'cuda':
            tensor = tensor.pin_memory()
        return tensor.to(device, non_blocking=True)


class _suspended:
    """Leave the innermost counters out while a copy announced by
    :func:`to_host`/:func:`to_device` runs."""

    def __enter__(self):
        with _lock:
            self.saved = list(_active)
            _active.clear()
        self.guards = [torch.utils._python_dispatch._disable_current_modes()]
        self.guards[0].__enter__()
        return self

    def __exit__(self, *exc):
        self.guards[0].__exit__(*exc)
        with _lock:
            _active.extend(self.saved)
        return False


def count_host_syncs(fn: Callable, *args, ignore=None, **kwargs):
    """Run ``fn(*args, **kwargs)`` inside a :class:`HostSyncCounter`.

    Returns:
        tuple: ``fn``'s result and the counter.
    """
    with HostSyncCounter(ignore) as counter:
        result = fn(*args, **kwargs)
    return result, counter
