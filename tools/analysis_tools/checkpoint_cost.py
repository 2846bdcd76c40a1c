# Copyright (c) mmdetr contributors. All rights reserved.
"""What periodic resume checkpoints cost: a training step of a config's
model against writing its checkpoint.

Builds the config's model (random weights, nothing downloaded) and its
optimizer wrapper, times ``--repeats`` training steps on a synthetic batch
(mmdet's ``demo_mm_inputs``: images of ``--sizes``, 7 boxes each), then
writes a checkpoint of the same content as the runner's (weights, the
optimizer state after those steps, meta) the way mmdetr's Runner does:
``torch.save`` to memory, write to a temporary file, fsync, rename. It
prints the step time, the checkpoint size, the write time split into
serialise+write and fsync, and the share of training time a checkpoint
every ``--interval-minutes`` minutes and every ``--interval-iters``
iterations costs, here and on a GPU machine whose step time
(``--gpu-step-time``) and disk speed (``--disk-mb-s``) you give.

    PYTHONPATH=$PWD python tools/analysis_tools/checkpoint_cost.py \\
        configs/detr_r50_8x2_150e_coco.py --threads 2

The defaults for the GPU estimate: 0.227 s a step (the official DETR R50:
28 minutes an epoch of 7393 steps on 8 V100, 2 images each) and 200 MB/s
(a network file system; a local NVMe disk writes several GB/s).
"""
import argparse
import copy
import io
import os
import os.path as osp
import statistics
import sys
import tempfile
import time

import torch
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from mmengine.registry import MODELS, DefaultScope
from mmengine.runner.checkpoint import weights_to_cpu

_HERE = osp.dirname(osp.abspath(__file__))
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

from benchmarking.workloads import synthetic_batch, train_step  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Training step time against checkpoint write time')
    parser.add_argument('config', help='training config')
    parser.add_argument('--sizes', nargs='+', default=['800x1066', '736x981'],
                        metavar='HxW', help='images of the batch')
    parser.add_argument('--repeats', type=int, default=3,
                        help='timed training steps (after one warm-up)')
    parser.add_argument('--threads', type=int, default=None)
    parser.add_argument('--out-dir', default=None,
                        help='where the checkpoint is written (default: a '
                        'temporary folder under the current one); removed '
                        'afterwards')
    parser.add_argument('--interval-minutes', type=float, default=30)
    parser.add_argument('--interval-iters', type=int, default=1000)
    parser.add_argument('--gpu-step-time', type=float, default=0.227)
    parser.add_argument('--disk-mb-s', type=float, default=200)
    args = parser.parse_args(argv)
    try:
        args.sizes = [tuple(int(v) for v in s.lower().split('x'))
                      for s in args.sizes]
    except ValueError:
        parser.error(f'--sizes: HxW expected, got {args.sizes}')
    if args.repeats < 1:
        parser.error('--repeats must be >= 1')
    return args


def build(config: str):
    import mmdetr  # noqa: F401  registers mmdetr's modules
    cfg = Config.fromfile(config)
    cfg.model.backbone.init_cfg = None  # nothing downloaded
    with DefaultScope.overwrite_default_scope(cfg.get('default_scope',
                                                      'mmdet')):
        model = MODELS.build(copy.deepcopy(cfg.model))
        model.init_weights()
        optim = build_optim_wrapper(model, copy.deepcopy(cfg.optim_wrapper))
    num_classes = cfg.model.bbox_head.num_classes
    return model, optim, num_classes


def time_steps(model, optim, num_classes, sizes, repeats):
    data = model.data_preprocessor(
        synthetic_batch(sizes, 7, num_classes), True)
    model.train()
    times = []
    for i in range(repeats + 1):
        start = time.perf_counter()
        train_step(model, optim, data, amp=False, device='cpu')
        if i:  # the first is a warm-up
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def write_checkpoint(model, optim, out_dir):
    """The runner's checkpoint content, written as mmdetr's Runner writes
    it. Returns (size in bytes, serialise+write seconds, fsync seconds)."""
    checkpoint = dict(
        meta=dict(epoch=0, iter=1),
        state_dict=weights_to_cpu(model.state_dict()),
        optimizer=optim.state_dict())
    tmp = osp.join(out_dir, '.resume_iter_1.pth.tmp')
    start = time.perf_counter()
    buffer = io.BytesIO()
    torch.save(checkpoint, buffer)
    with open(tmp, 'wb') as f:
        f.write(buffer.getvalue())
    written = time.perf_counter()
    fd = os.open(tmp, os.O_RDONLY)
    os.fsync(fd)
    os.close(fd)
    os.replace(tmp, osp.join(out_dir, 'resume_iter_1.pth'))
    synced = time.perf_counter()
    size = os.path.getsize(osp.join(out_dir, 'resume_iter_1.pth'))
    return size, written - start, synced - written


def share(cost: float, every: float) -> str:
    return f'{100 * cost / (every + cost):.3f}%'


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    model, optim, num_classes = build(args.config)
    step = time_steps(model, optim, num_classes, args.sizes, args.repeats)
    with tempfile.TemporaryDirectory(dir=args.out_dir or '.') as out_dir:
        size, write, fsync = write_checkpoint(model, optim, out_dir)
    mb = size / 1e6
    total = write + fsync
    sizes = ', '.join(f'{h}x{w}' for h, w in args.sizes)
    print(f'config: {args.config}  (torch threads: '
          f'{torch.get_num_threads()})')
    print(f'training step, {len(args.sizes)} images ({sizes}): '
          f'{step:.3f} s (median of {args.repeats})')
    print(f'checkpoint: {mb:.1f} MB written in {total:.3f} s '
          f'(serialise+write {write:.3f} s, fsync {fsync:.3f} s; '
          f'{mb / total:.0f} MB/s)')
    minutes, iters = args.interval_minutes, args.interval_iters
    print(f'here: every {minutes:g} min costs {share(total, 60 * minutes)}, '
          f'every {iters} iterations {share(total, iters * step)}')
    gpu_write = mb / args.disk_mb_s
    print(f'GPU estimate ({args.gpu_step_time} s a step, '
          f'{args.disk_mb_s:g} MB/s disk: {gpu_write:.2f} s a checkpoint): '
          f'every {minutes:g} min costs {share(gpu_write, 60 * minutes)}, '
          f'every {iters} iterations '
          f'{share(gpu_write, iters * args.gpu_step_time)}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
