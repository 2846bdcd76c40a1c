# Copyright (c) mmdetr contributors. All rights reserved.
"""Run tools/train.py as one rank of a multi-node job whose work dirs are
node-local, on one machine.

With ``HIDE_CHECKPOINTS_FROM_RANK1=DIR`` in the environment, the process of
rank 1 cannot see the checkpoint files under DIR (``*.pth`` and
``last_checkpoint``): they do not exist for it (``isfile``, ``exists``,
``glob``) and cannot be opened, as on a node that did not write them. The
other ranks see everything.

    python -m torch.distributed.run --nproc_per_node=2 tests/helpers/rank_view.py \
        CONFIG --launcher pytorch --resume
"""
import builtins
import glob
import io
import os
import os.path as osp
import sys

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def _hide_checkpoints(directory: str) -> None:
    directory = osp.abspath(directory) + os.sep

    def hidden(path) -> bool:
        try:
            path = osp.abspath(os.fspath(path))
        except TypeError:
            return False
        return path.startswith(directory) and (
            path.endswith('.pth') or osp.basename(path) == 'last_checkpoint')

    def guard(real, missing):
        def wrapped(path, *args, **kwargs):
            return missing(path) if hidden(path) else real(path, *args,
                                                           **kwargs)
        return wrapped

    def no_file(path):
        raise FileNotFoundError(2, 'No such file or directory (hidden from '
                                'rank 1)', str(path))

    builtins.open = io.open = guard(builtins.open, no_file)
    osp.isfile = guard(osp.isfile, lambda path: False)
    osp.exists = guard(osp.exists, lambda path: False)
    real_glob = glob.glob
    glob.glob = lambda pattern, *a, **k: [
        p for p in real_glob(pattern, *a, **k) if not hidden(p)]


if __name__ == '__main__':
    hide = os.environ.get('HIDE_CHECKPOINTS_FROM_RANK1')
    if hide and os.environ.get('RANK') == '1':
        _hide_checkpoints(hide)
    sys.path.insert(0, osp.join(ROOT, 'tools'))
    import train  # noqa: E402  tools/train.py
    train.main(sys.argv[1:])
