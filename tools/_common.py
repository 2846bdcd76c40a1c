# Copyright (c) mmdetr contributors. All rights reserved.
"""Command-line pieces shared by tools/train.py and tools/test.py.

Imported by the tools as a sibling module: tools/ is not a package, and a
script's own folder is the first entry of ``sys.path``.
"""
import argparse
import sys

from mmengine.config import Config, DictAction

from mmdetr.engine import LAUNCHERS, load_config


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
