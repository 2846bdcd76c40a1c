# Copyright (c) mmdetr contributors. All rights reserved.
"""The checkpoints of a work dir: which is the newest, and whether it is
whole.

A checkpoint is a zip archive (torch.save) whose members carry a CRC-32.
torch.load finds a truncated file (no central directory) but not flipped
bytes inside it: those load as wrong weights without a word. Reading every
member against its CRC finds both.
"""
import glob
import logging
import os
import os.path as osp
import re
import zipfile
from typing import Callable, List, Optional, Tuple

from mmengine.logging import print_log

from mmdetr.checkpoints.safe_load import load_checkpoint_file

# epoch_N.pth and iter_N.pth (mmengine's CheckpointHook), resume_iter_N.pth
# (mmdetr's ResumeCheckpointHook)
CHECKPOINT_NAME = re.compile(r'(epoch|iter|resume_iter)_(\d+)\.pth')


class CorruptCheckpointError(RuntimeError):
    """A checkpoint file is truncated or its bytes are damaged."""


# files found whole in this process, by (path, size, mtime): the newest
# checkpoint is checked when it is chosen and again when it is loaded
_verified = set()


def verify_checkpoint(path: str) -> None:
    """Read the whole file and check every member's CRC-32 (once per
    process for an unchanged file).

    Raises:
        CorruptCheckpointError: naming ``path`` and what is wrong.
    """
    try:
        stat = os.stat(path)
        key = (osp.realpath(path), stat.st_size, stat.st_mtime_ns)
    except OSError:
        key = None
    if key is not None and key in _verified:
        return
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        raise CorruptCheckpointError(
            f'checkpoint {path} is truncated or damaged '
            f'({type(e).__name__}: {e})') from e
    if bad is not None:
        raise CorruptCheckpointError(
            f'checkpoint {path} is damaged: its member {bad} does not match '
            'its CRC')
    if key is not None:
        _verified.add(key)


def checkpoint_progress(path: str) -> Tuple[int, int]:
    """``(iter, epoch)`` from the checkpoint's meta, reading only its
    header (the tensors are memory-mapped, not read).

    Raises:
        Exception: whatever torch raises for an unreadable file.
    """
    ckpt = load_checkpoint_file(path, mmap=True)
    meta = ckpt.get('meta', {})
    return int(meta.get('iter', 0)), int(meta.get('epoch', 0))


def checkpoints_newest_first(work_dir: str,
                             report: Callable[[str], None]) -> List[str]:
    """The checkpoints in ``work_dir`` (by their names, see
    :data:`CHECKPOINT_NAME`), newest training state first: by the iteration
    and epoch in their meta (an epoch's checkpoint comes after a mid-epoch
    one of the same iteration). Files whose header cannot be read are left
    out and ``report`` ed."""
    found = []
    for path in glob.glob(osp.join(work_dir, '*.pth')):
        if not CHECKPOINT_NAME.fullmatch(osp.basename(path)):
            continue  # temporary files of a save, best_*.pth, ...
        try:
            found.append((checkpoint_progress(path), path))
        except Exception as e:  # noqa: BLE001 - any unreadable file
            report(f'skipping checkpoint {path}: it cannot be read '
                   f'({type(e).__name__}: {str(e).splitlines()[0][:200]})')
    found.sort(key=lambda item: (item[0], osp.getmtime(item[1])),
               reverse=True)
    return [path for _, path in found]


def _warn(msg: str) -> None:
    print_log(msg, logger='current', level=logging.WARNING)


def find_latest_checkpoint(
        work_dir: str,
        report: Callable[[str], None] = _warn) -> Optional[str]:
    """The newest whole checkpoint in ``work_dir``, or None.

    Newest by the training state it holds (:func:`checkpoints_newest_first`);
    a newer file that is truncated or damaged (:func:`verify_checkpoint`) is
    passed over for the one before it, and ``report`` says so. Temporary
    files of an interrupted save are never candidates.
    """
    for path in checkpoints_newest_first(work_dir, report):
        try:
            verify_checkpoint(path)
        except CorruptCheckpointError as e:
            report(f'{e}; falling back to the checkpoint before it')
            continue
        return path
    return None
