# Copyright (c) mmdetr contributors. All rights reserved.
"""mmengine's Runner with crash-safe checkpoints and safe loading."""
import glob
import os
import os.path as osp
import pickle
import re
from typing import Optional

from mmengine.dist import master_only
from mmengine.runner import Runner as MMEngineRunner

from mmdetr.registry import RUNNERS
from mmdetr.utils.checkpoint import (UnsafeCheckpointError,
                                     register_trusted_checkpoint_globals)


def _is_local(path: str) -> bool:
    return '://' not in str(path)


@RUNNERS.register_module()
class Runner(MMEngineRunner):
    """mmengine's Runner, plus:

    - checkpoints are written to a temporary file and renamed into place,
      so a run killed while saving never leaves a truncated ``epoch_N.pth``
      (the previous checkpoint stays the latest);
    - checkpoints load with ``weights_only=True`` and mmdetr's allowlist; a
      checkpoint holding anything else is refused with
      :class:`UnsafeCheckpointError` naming the file, and nothing in it runs.
    """

    def __init__(self, *args, **kwargs):
        register_trusted_checkpoint_globals()
        super().__init__(*args, **kwargs)

    @master_only  # as mmengine's: only rank 0 writes
    def save_checkpoint(self, out_dir: str, filename: str, *args, **kwargs):
        if not _is_local(out_dir):
            return super().save_checkpoint(out_dir, filename, *args,
                                           **kwargs)
        tmp_name = f'.{filename}.tmp{os.getpid()}'
        try:
            super().save_checkpoint(out_dir, tmp_name, *args, **kwargs)
            os.replace(osp.join(out_dir, tmp_name), osp.join(out_dir,
                                                             filename))
        finally:
            if osp.exists(osp.join(out_dir, tmp_name)):
                os.remove(osp.join(out_dir, tmp_name))

    def load_checkpoint(self, filename: str, *args, **kwargs):
        try:
            return super().load_checkpoint(filename, *args, **kwargs)
        except pickle.UnpicklingError as e:
            raise UnsafeCheckpointError(_refusal(filename, e)) from e

    def resume(self, filename: str, *args, **kwargs):
        try:
            return super().resume(filename, *args, **kwargs)
        except pickle.UnpicklingError as e:
            raise UnsafeCheckpointError(_refusal(filename, e)) from e


def _refusal(filename: str, error: Exception) -> str:
    return (f'refusing to load checkpoint {filename}: it holds objects '
            'outside the trusted allowlist, so loading it could run code '
            f'(torch: {str(error).splitlines()[-1][:300]})')


def find_latest_checkpoint(work_dir: str) -> Optional[str]:
    """The newest complete checkpoint in ``work_dir``, or None.

    Trusts ``work_dir/last_checkpoint`` when it names an existing file;
    otherwise (missing, empty, or pointing at a file that is gone) takes the
    ``epoch_N.pth`` / ``iter_N.pth`` with the largest N. Temporary files of
    an interrupted save are never candidates.
    """
    last = osp.join(work_dir, 'last_checkpoint')
    if osp.isfile(last):
        with open(last) as f:
            path = f.read().strip()
        if path and osp.isfile(path):
            return path
    best, best_n = None, -1
    for path in glob.glob(osp.join(work_dir, '*.pth')):
        m = re.fullmatch(r'(epoch|iter)_(\d+)\.pth', osp.basename(path))
        if m and int(m.group(2)) > best_n:
            best, best_n = path, int(m.group(2))
    return best
