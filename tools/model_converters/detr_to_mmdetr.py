# Copyright (c) mmdetr contributors. All rights reserved.
"""Convert a DETR checkpoint to mmdetr's key layout.

    python tools/model_converters/detr_to_mmdetr.py SRC DST --from mmdet3

SRC is loaded with ``weights_only=True`` (nothing in it is executed); DST is
written atomically and gets only the converted weights plus a small ``meta``.
"""
import argparse
import os
import os.path as osp
import sys

import torch

from mmdetr.utils import load_checkpoint_file
from mmdetr.utils.convert import (LAYOUTS, convert_state_dict,
                                  extract_state_dict)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Convert a DETR checkpoint to mmdetr\'s layout')
    parser.add_argument('src', help='source checkpoint file')
    parser.add_argument('dst', help='where to write the mmdetr checkpoint')
    parser.add_argument(
        '--from',
        dest='src_layout',
        default='mmdet3',
        choices=LAYOUTS,
        help='layout of SRC (default: mmdet3)')
    return parser.parse_args(argv)


def save_atomic(obj, path: str) -> None:
    """Write to a temporary file beside ``path``, then rename over it."""
    tmp = f'{path}.tmp.{os.getpid()}'
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    finally:
        if osp.exists(tmp):
            os.remove(tmp)


def main(argv=None) -> int:
    args = parse_args(argv)
    if osp.abspath(args.src) == osp.abspath(args.dst):
        sys.exit('detr_to_mmdetr: SRC and DST are the same file; refusing to '
                 'overwrite the source')
    if not osp.isfile(args.src):
        sys.exit(f'detr_to_mmdetr: no such file: {args.src}')
    state_dict = extract_state_dict(load_checkpoint_file(args.src))
    try:
        converted = convert_state_dict(state_dict, args.src_layout)
    except KeyError as e:
        sys.exit(f'detr_to_mmdetr: {args.src}: {e.args[0]}')
    dst_dir = osp.dirname(osp.abspath(args.dst))
    os.makedirs(dst_dir, exist_ok=True)
    save_atomic(
        dict(
            state_dict=converted,
            meta=dict(converted_from=args.src_layout,
                      source=osp.basename(args.src))), args.dst)
    print(f'converted {len(converted)} tensors ({args.src_layout} -> '
          f'mmdetr): {args.dst}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
