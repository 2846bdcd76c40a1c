# Copyright (c) mmdetr contributors. All rights reserved.
"""Command-line pieces shared by tools/train.py and tools/test.py.

Imported by the tools as a sibling module: tools/ is not a package, and a
script's own folder is the first entry of ``sys.path``.
"""
import argparse
import sys

from mmengine.config import Config, DictAction

from mmdetr.engine import LAUNCHERS, load_config
from mmdetr.engine.amp import AmpUnsupportedError


def add_runner_args(parser: argparse.ArgumentParser) -> None:
    """The options every runner tool shares: --cfg-options, --launcher."""
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config keys, e.g. train_cfg.max_epochs=12 '
        'model.bbox_head.num_classes=3')
    parser.add_argument(
        '--launcher', choices=LAUNCHERS, default='none', help='job launcher')
    # torch.distributed.launch passes --local-rank; torchrun sets LOCAL_RANK
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)


def load_config_or_exit(tool: str, path: str, cfg_options=None,
                        work_dir=None) -> Config:
    """:func:`mmdetr.engine.load_config`, exiting with ``tool``'s name on a
    missing file."""
    try:
        return load_config(path, cfg_options, work_dir)
    except FileNotFoundError as e:
        sys.exit(f'{tool}: {e}')


def add_amp_args(parser: argparse.ArgumentParser) -> None:
    """--amp and --amp-dtype (tools/train.py, tools/test.py)."""
    parser.add_argument(
        '--amp',
        action='store_true',
        help='mixed precision: float16 autocast (with loss scaling in '
        'training) on a CUDA GPU, bfloat16 autocast on a CPU with bfloat16 '
        'instructions (avx512_bf16 or amx_bf16)')
    parser.add_argument(
        '--amp-dtype',
        choices=('float16', 'bfloat16'),
        default=None,
        help='autocast dtype with --amp (default: float16 on a GPU, '
        'bfloat16 on a CPU; bfloat16 on a GPU needs Ampere or newer)')


def apply_amp_or_exit(tool: str, cfg: Config, args, configure) -> None:
    """``configure(cfg, args.amp_dtype)`` (an ``amp_*_config`` of
    :mod:`mmdetr.engine.amp`) with ``--amp``, exiting with ``tool``'s name
    when the device cannot run it; ``--amp-dtype`` alone is an error."""
    if not args.amp:
        if args.amp_dtype is not None:
            sys.exit(f'{tool}: --amp-dtype needs --amp')
        return
    try:
        dtype = configure(cfg, args.amp_dtype)
    except AmpUnsupportedError as e:
        sys.exit(f'{tool}: --amp: {e}')
    print(f'{tool}: --amp: {str(dtype).split(".")[-1]} autocast')
