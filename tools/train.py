# Copyright (c) mmdetr contributors. All rights reserved.
"""Train a detector from a config.

    python tools/train.py configs/detr_r50_8x2_150e_coco.py
    python tools/train.py CONFIG --resume                 # from the latest
    python tools/train.py CONFIG --resume work_dirs/x/epoch_3.pth
    torchrun --nproc_per_node=8 tools/train.py CONFIG --launcher pytorch
"""
import argparse
import os
import os.path as osp
import sys

from mmengine.config import Config

from mmdetr.engine import find_latest_checkpoint
from mmdetr.utils.setup_env import add_runner_args, build_runner, load_config


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Train a detector')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='where to save logs and models')
    parser.add_argument(
        '--resume',
        nargs='?',
        type=str,
        const='auto',
        help='resume from CKPT, or from the latest checkpoint in the work '
        'dir if no CKPT is given')
    parser.add_argument(
        '--amp', action='store_true', help='mixed precision (needs CUDA)')
    parser.add_argument(
        '--auto-scale-lr',
        action='store_true',
        help='scale the lr linearly from auto_scale_lr.base_batch_size to '
        'the actual total batch size')
    add_runner_args(parser)
    args = parser.parse_args(argv)
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def build_cfg(args) -> Config:
    cfg = load_config(args.config, args.cfg_options, args.work_dir,
                      'train.py')

    if args.amp:
        import torch
        if not torch.cuda.is_available():
            sys.exit('train.py: --amp needs a CUDA GPU (mmengine\'s '
                     'AmpOptimWrapper does not run on CPU)')
        if cfg.optim_wrapper.get('type', 'OptimWrapper') != 'AmpOptimWrapper':
            cfg.optim_wrapper.type = 'AmpOptimWrapper'
            cfg.optim_wrapper.loss_scale = 'dynamic'

    if args.auto_scale_lr:
        if 'auto_scale_lr' not in cfg or \
                'base_batch_size' not in cfg.auto_scale_lr:
            sys.exit('train.py: --auto-scale-lr needs '
                     'auto_scale_lr.base_batch_size in the config')
        cfg.auto_scale_lr.enable = True

    if args.resume == 'auto':
        # the newest complete checkpoint (a save cut short by a kill never
        # is one: saves are atomic); none -> train from scratch, as mmengine
        latest = find_latest_checkpoint(cfg.work_dir)
        if latest is None:
            print(f'train.py: --resume: no checkpoint in {cfg.work_dir}, '
                  'starting from scratch')
        cfg.resume = latest is not None
        cfg.load_from = latest
    elif args.resume is not None:
        if not osp.isfile(args.resume):
            sys.exit(f'train.py: --resume checkpoint not found: '
                     f'{args.resume}')
        cfg.resume = True
        cfg.load_from = args.resume
    return cfg


def main(argv=None) -> None:
    args = parse_args(argv)
    cfg = build_cfg(args)
    runner = build_runner(cfg, args.launcher)
    runner.train()


if __name__ == '__main__':
    main()
