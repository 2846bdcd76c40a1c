# Copyright (c) mmdetr contributors. All rights reserved.
"""Train a detector from a config.

    python tools/train.py configs/detr_r50_8x2_150e_coco.py
    python tools/train.py CONFIG --resume                 # from the latest
    python tools/train.py CONFIG --resume work_dirs/x/epoch_3.pth
    torchrun --nproc_per_node=8 tools/train.py CONFIG --launcher pytorch
    python tools/train.py CONFIG --amp      # float16 on a GPU, bfloat16 on
                                            # a CPU with bfloat16 instructions

Exit status: 0 when training is done; 75 when SIGTERM or SIGUSR1 stopped
it after a checkpoint was written (mmdetr.ResumeCheckpointHook, in every
mmdetr config): the same command with --resume continues exactly there
(docs/distributed.md).
"""
import argparse
import os
import os.path as osp
import sys

from mmengine.config import Config

from mmdetr.engine import build_runner, closing_process_group
from mmdetr.engine.amp import amp_train_config

# tools/ is not a package: its shared module is imported as a sibling, also
# when a tool is loaded by path (tests) rather than run as a script
sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
from _common import (add_amp_args, add_runner_args,  # noqa: E402
                     apply_amp_or_exit, load_config_or_exit)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Train a detector')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='where to save logs and models')
    parser.add_argument(
        '--resume',
        nargs='?',
        type=str,
        const='auto',
        help='resume from CKPT, or from the newest whole checkpoint in '
        'the work dir if no CKPT is given (a damaged newest one is passed '
        'over, saying so; none: start from scratch)')
    add_amp_args(parser)
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
    cfg = load_config_or_exit('train.py', args.config, args.cfg_options,
                              args.work_dir)

    # GPU: loss-scaled AMP; CPU: bfloat16 without a scaler. Either way a
    # non-finite step is skipped (and logged); persistent ones stop training
    apply_amp_or_exit('train.py', cfg, args, amp_train_config)

    if args.auto_scale_lr:
        if 'auto_scale_lr' not in cfg or \
                'base_batch_size' not in cfg.auto_scale_lr:
            sys.exit('train.py: --auto-scale-lr needs '
                     'auto_scale_lr.base_batch_size in the config')
        cfg.auto_scale_lr.enable = True

    # --resume without CKPT is decided in build_runner, once the process
    # group is up: rank 0 picks the newest complete checkpoint for all ranks
    if args.resume not in (None, 'auto'):
        # ranks on other nodes may not see the file: rank 0 sends it to
        # them when resuming (mmdetr.engine.Runner)
        if os.environ.get('RANK', '0') == '0' and \
                not osp.isfile(args.resume):
            sys.exit(f'train.py: --resume checkpoint not found: '
                     f'{args.resume}')
        cfg.resume = True
        cfg.load_from = args.resume
    return cfg


def main(argv=None) -> None:
    args = parse_args(argv)
    cfg = build_cfg(args)
    runner = build_runner(
        cfg, args.launcher, resume_latest=args.resume == 'auto')
    with closing_process_group():
        runner.train()


if __name__ == '__main__':
    main()
