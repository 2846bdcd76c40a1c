# Copyright (c) mmdetr contributors. All rights reserved.
"""Loading checkpoint files without letting them run code.

torch >= 2.6 unpickles with ``weights_only=True``: only tensors, containers
and allowlisted classes load; anything else (a pickle that would call
``os.system`` ...) is refused. mmengine checkpoints also hold a few harmless
non-tensor objects (its ``HistoryBuffer``, numpy scalars and dtypes); those,
and nothing more, are allowlisted here.
"""
import _compat_pickle
import codecs
import collections
import pickle
from typing import List

import numpy as np
import torch


def trusted_checkpoint_globals() -> List[type]:
    """Classes mmengine/mmdet/official-DETR checkpoints legitimately hold."""
    from mmengine.logging.history_buffer import HistoryBuffer
    try:
        multiarray = np._core.multiarray  # numpy >= 2
    except AttributeError:  # pragma: no cover - numpy 1.x
        multiarray = np.core.multiarray
    dtype_classes = {
        type(np.dtype(name))
        for name in ('bool', 'int8', 'uint8', 'int16', 'int32', 'int64',
                     'float16', 'float32', 'float64')
    }
    import argparse
    # a file written with numpy 2 names numpy._core, with numpy 1
    # numpy.core: either loads with either
    numpy_functions = [(f, f'{module}.multiarray.{f.__name__}')
                       for f in (multiarray.scalar, multiarray._reconstruct)
                       for module in ('numpy._core', 'numpy.core')]
    return [
        (_history_buffer_getattr, 'builtins.getattr'),
        HistoryBuffer, np.ndarray, np.dtype, *numpy_functions,
        argparse.Namespace, *sorted(dtype_classes, key=lambda c: c.__name__)
    ]


def _history_buffer_getattr(obj, name: str):
    """Stands in for ``builtins.getattr`` while unpickling.

    mmengine's ``HistoryBuffer`` pickles its statistics methods as
    ``getattr(HistoryBuffer, 'mean')``; that, and no other ``getattr``, is
    allowed.
    """
    from mmengine.logging.history_buffer import HistoryBuffer
    if obj is HistoryBuffer and name in ('min', 'max', 'mean', 'current'):
        return getattr(obj, name)
    raise pickle.UnpicklingError(
        f'getattr({obj!r}, {name!r}) is not allowed in a checkpoint')


def register_trusted_checkpoint_globals() -> None:
    """Allowlist the trusted classes for every ``weights_only`` load in this
    process (mmengine's resume and ``load_from`` call ``torch.load`` with
    torch's default, ``weights_only=True`` from torch 2.6 on). Nothing else
    is allowed, and ``weights_only`` stays on. torch < 2.4 has no allowlist
    (``torch.serialization.add_safe_globals``): there this does nothing,
    and :func:`load_checkpoint_file` unpickles through its own allowlist
    (:class:`AllowlistUnpickler`)."""
    if hasattr(torch.serialization, 'add_safe_globals'):
        torch.serialization.add_safe_globals(trusted_checkpoint_globals())


class UnsafeCheckpointError(RuntimeError):
    """A checkpoint holds objects that are not on the allowlist."""


class AllowlistUnpickler(pickle.Unpickler):
    """An unpickler that resolves only allowlisted globals: what torch's
    ``weights_only`` unpickler accepts (tensors, storages, dtypes,
    ``OrderedDict``) plus :func:`trusted_checkpoint_globals`. Any other
    global (``os.system``, ``builtins.eval`` ...) raises
    ``pickle.UnpicklingError`` before anything is called.

    :func:`load_checkpoint_file` hands it to ``torch.load`` as the pickle
    module on a torch without ``torch.serialization.add_safe_globals``
    (< 2.4), whose ``weights_only`` unpickler cannot be extended."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._allowed = self.allowed()

    @staticmethod
    def allowed() -> dict:
        """``'module.name'`` -> object, for every allowed global."""
        # what newer torch's weights_only unpickler allows beyond torch
        # 2.1's (bytes in protocol 2, a few builtins, every dtype, devices)
        allowed = {
            '_codecs.encode': codecs.encode,
            'collections.Counter': collections.Counter,
            'builtins.set': set,
            'builtins.complex': complex,
            'builtins.bytearray': bytearray,
            'torch.device': torch.device,
        }
        allowed.update({
            f'torch.{name}': getattr(torch, name)
            for name in dir(torch)
            if isinstance(getattr(torch, name, None), torch.dtype)
        })
        allowed.update(_torch_weights_only_globals())
        for item in trusted_checkpoint_globals():
            obj, name = item if isinstance(item, tuple) else (
                item, f'{item.__module__}.{item.__qualname__}')
            allowed[name] = obj
        return allowed

    def find_class(self, module: str, name: str):
        # pickles of protocol < 3 (torch.save's default is 2) name Python 2
        # modules (``__builtin__``); pickle's own find_class maps them
        module, name = _compat_pickle.NAME_MAPPING.get(
            (module, name), (_compat_pickle.IMPORT_MAPPING.get(module, module),
                             name))
        found = self._allowed.get(f'{module}.{name}')
        if found is None:
            raise pickle.UnpicklingError(
                f'{module}.{name} is not on the checkpoint allowlist')
        return found


def _torch_weights_only_globals() -> dict:
    """What torch's own ``weights_only`` unpickler allows."""
    from torch import _weights_only_unpickler
    return dict(_weights_only_unpickler._get_allowed_globals())


class _AllowlistPickleModule:
    """A stand-in for the ``pickle`` module (what ``torch.load``'s
    ``pickle_module`` takes) whose loads go through
    :class:`AllowlistUnpickler`."""
    Unpickler = AllowlistUnpickler
    UnpicklingError = pickle.UnpicklingError
    __name__ = 'mmdetr_allowlist_pickle'

    @staticmethod
    def load(file, **kwargs):
        return AllowlistUnpickler(file, **kwargs).load()


def load_checkpoint_file(path: str, map_location='cpu', mmap: bool = False):
    """``torch.load`` that runs nothing from the file: ``weights_only=True``
    with the trusted allowlist, or on torch < 2.4 (no allowlist in torch)
    the same allowlist through :class:`AllowlistUnpickler`.

    Args:
        path (str): The file.
        map_location: As ``torch.load``'s. Defaults to ``'cpu'``.
        mmap (bool): Memory-map the tensors instead of reading them.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        UnsafeCheckpointError: the pickle refers to anything not allowlisted
            (it is not executed).
    """
    # registered for the process, not in torch's safe_globals context: on
    # exit that context removes its classes again, also when they had been
    # allowlisted before (by ``import mmdetr``), which would leave every
    # later load (mmengine's resume, mmdet's tools) without them
    register_trusted_checkpoint_globals()
    kwargs = dict(mmap=True) if mmap else {}
    if hasattr(torch.serialization, 'add_safe_globals'):
        kwargs.update(weights_only=True)
    else:
        kwargs.update(weights_only=False, pickle_module=_AllowlistPickleModule)
    try:
        return torch.load(path, map_location=map_location, **kwargs)
    except pickle.UnpicklingError as e:
        raise UnsafeCheckpointError(
            f'refusing to load checkpoint {path!r}: it holds objects outside '
            'the trusted allowlist, and loading it could run code. '
            f'torch said: {str(e).splitlines()[0]}') from e
