# Copyright (c) mmdetr contributors. All rights reserved.
"""Loading checkpoint files without letting them run code.

torch >= 2.6 unpickles with ``weights_only=True``: only tensors, containers
and allowlisted classes load; anything else (a pickle that would call
``os.system`` ...) is refused. mmengine checkpoints also hold a few harmless
non-tensor objects (its ``HistoryBuffer``, numpy scalars and dtypes); those,
and nothing more, are allowlisted here.
"""
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
    return [
        (_history_buffer_getattr, 'builtins.getattr'),
        HistoryBuffer, np.ndarray, np.dtype, multiarray.scalar,
        multiarray._reconstruct, argparse.Namespace, *sorted(
            dtype_classes, key=lambda c: c.__name__)
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
    torch's default, ``weights_only=True``). Nothing else is allowed, and
    ``weights_only`` stays on."""
    torch.serialization.add_safe_globals(trusted_checkpoint_globals())


class UnsafeCheckpointError(RuntimeError):
    """A checkpoint holds objects that are not on the allowlist."""


def load_checkpoint_file(path: str, map_location='cpu'):
    """``torch.load`` with ``weights_only=True`` and the trusted allowlist.

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
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        raise UnsafeCheckpointError(
            f'refusing to load checkpoint {path!r}: it holds objects outside '
            'the trusted allowlist, and loading it could run code. '
            f'torch said: {str(e).splitlines()[0]}') from e
