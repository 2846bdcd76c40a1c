# Copyright (c) mmdetr contributors. All rights reserved.
"""mmengine's Runner with crash-safe checkpoints and safe loading."""
import glob
import os
import os.path as osp
import pickle
import re
import shutil
import tempfile
from typing import Optional

import torch.distributed as dist
from mmengine.dist import master_only
from mmengine.runner import Runner as MMEngineRunner

from mmdetr.registry import RUNNERS
from mmdetr.utils.checkpoint import UnsafeCheckpointError


def _is_local(path: str) -> bool:
    return '://' not in str(path)


@RUNNERS.register_module()
class Runner(MMEngineRunner):
    """mmengine's Runner, plus:

    - checkpoints are written to a temporary file and renamed into place,
      so a run killed while saving never leaves a truncated ``epoch_N.pth``
      (the previous checkpoint stays the latest);
    - checkpoints load with ``weights_only=True`` and mmdetr's allowlist
      (registered by ``import mmdetr``); a checkpoint holding anything else
      is refused with :class:`UnsafeCheckpointError` naming the file, and
      nothing in it runs;
    - in distributed training, ranks that cannot read the checkpoint to
      resume from (node-local work dirs: only rank 0 writes checkpoints)
      receive its bytes from rank 0, so every rank resumes from the same
      state.
    """

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
        with _readable_on_every_rank(filename) as local:
            try:
                return super().resume(local, *args, **kwargs)
            except pickle.UnpicklingError as e:
                raise UnsafeCheckpointError(_refusal(filename, e)) from e


class _readable_on_every_rank:
    """Context giving a path to ``filename`` that this rank can read.

    Every rank must enter it (it runs collectives when distributed). Ranks
    that see the file use it; if some do not, rank 0 sends its bytes to all
    and those ranks read a private temporary copy, removed on exit. The
    checkpoint is then held in memory once per rank while it is sent.

    Raises:
        FileNotFoundError: rank 0 cannot read the file either.
    """

    def __init__(self, filename: str) -> None:
        self.filename = filename
        self.tmp_dir = None

    def __enter__(self) -> str:
        if not (_is_local(self.filename) and dist.is_available()
                and dist.is_initialized() and dist.get_world_size() > 1):
            return self.filename
        seen = [None] * dist.get_world_size()
        dist.all_gather_object(seen, osp.isfile(self.filename))
        if all(seen):
            return self.filename
        if not seen[0]:
            raise FileNotFoundError(
                f'resume: rank 0 cannot read {self.filename}')
        payload = [None]
        if dist.get_rank() == 0:
            with open(self.filename, 'rb') as f:
                payload[0] = f.read()
        dist.broadcast_object_list(payload, src=0)
        if seen[dist.get_rank()]:
            return self.filename
        self.tmp_dir = tempfile.mkdtemp(prefix='mmdetr_resume_')
        local = osp.join(self.tmp_dir, osp.basename(self.filename))
        with open(local, 'wb') as f:
            f.write(payload[0])
        return local

    def __exit__(self, *exc) -> bool:
        if self.tmp_dir is not None:
            shutil.rmtree(self.tmp_dir, ignore_errors=True)
        return False


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
