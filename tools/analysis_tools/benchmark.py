# Copyright (c) mmdetr contributors. All rights reserved.
"""Time mmdet 3.3's DETR against mmdetr's DETR, side by side in one process.

Both models are built from their own shipped configs (mmdet's
``detr/detr_r50_8xb2-150e_coco.py`` and mmdetr's
``configs/detr_r50_8x2_150e_coco.py``: R50, 256 dims, 6+6 layers, 100
queries, 80 classes); mmdetr's gets mmdet's randomly initialised weights
through ``mmdetr.checkpoints.convert_state_dict(..., 'mmdet3')``, so both
compute the same function on the same inputs. Rows (``benchmarking/``
holds the parts: ``workloads.py`` what is timed, ``timing.py`` how,
``memory.py`` the memory row, ``roofline.py`` the roofline, ``report.py``
the output):

- ``train``: one full training step as mmengine's ``BaseModel.train_step``
  runs it after the data preprocessor: forward, losses, ``parse_losses``,
  backward, gradient clipping (L2, 0.1) and AdamW step, through each
  config's own optimizer wrapper (mmdet's ``OptimWrapper``; mmdetr's
  ``DeferredGradNormOptimWrapper``, its AdamW step in torch's fused kernel
  where torch has one: ``FusedOptimWrapperConstructor``) (with ``--amp``:
  ``AmpOptimWrapper`` on CUDA; on a CPU
  bfloat16 autocast, for mmdetr through the ``BF16OptimWrapper`` of
  ``tools/train.py --amp``). Batch of 2 images of different sizes, padded.
- ``infer``: ``model.predict`` (forward and detections) on one image, under
  ``torch.no_grad`` as mmengine's test loop runs it (with ``--amp`` under
  autocast, as ``tools/test.py --amp``: float16 on CUDA, bfloat16 on a
  CPU).
- ``match``: the Hungarian assignment of every decoder layer's predictions
  for a batch (synthetic head outputs), cost computation included:
  mmdet's assigner once per image and layer, on the inputs its head's
  ``get_targets`` gives it (recorded); mmdetr's assigner on the same
  predictions in one batched call (``HungarianAssigner.match``).
- ``targets``: matching plus every layer's targets, as each head's loss
  builds them (mmdet: ``get_targets`` per layer; mmdetr:
  ``SetTargets.build`` and ``HungarianAssigner.match``, all layers at
  once).
- ``train host syncs``: how often one training step (logging included)
  makes the host wait for the device or copy between them, counted by
  ``benchmarking/host_sync.py`` (each model with the optimizer wrapper its
  configs use); on a GPU each one drains the queue.
- ``train peak memory``: each model's train step in a child process of its
  own (see ``benchmarking/memory.py``).
- ``roofline`` (a second table; ``--no-roofline`` skips it): the FLOPs of
  one run of mmdetr's train step and of its ``predict``, counted by torch's
  ``FlopCounterMode`` (convolution and matmul-like apart), the speed this
  machine reaches on a convolution and a matmul probe in float32 and in
  the mixed-precision dtype (where the device runs it), the floor (the
  FLOPs at those speeds, in the rows' dtype) and each model's median as a
  multiple of it (see ``benchmarking/roofline.py``; mmdet computes the same
  function, so the floor is its too).

Timing: warm-up runs first, then ``repeats`` rounds; each round runs both
models, alternating which goes first, so slow phases of a shared machine hit
both. The table gives medians and the ratio mmdet/mmdetr of the medians
(> 1: mmdetr is faster); the ``spread`` column gives the range of the
per-round ratios, a measure of the noise. On a GPU the clock synchronises
the device before each reading. ``--clock cpu`` times the process's CPU
time instead of elapsed time: on a CPU shared with other jobs it measures
the work rather than the waiting (use it with ``--threads 1``: idle OpenMP
threads spin and count as work).

Example (the table of docs/performance.md)::

    PYTHONPATH=$PWD python tools/analysis_tools/benchmark.py --threads 2

Prints the table, and last a line
``speedup train=X.XX infer=X.XX match=X.XX``.
"""
import argparse
import logging
import os.path as osp
import sys
import tempfile
from contextlib import nullcontext

import torch

# the parts live in benchmarking/ next to this script (tools/ is not a
# package); also when this file is loaded by path, as the tests do
_HERE = osp.dirname(osp.abspath(__file__))
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

from benchmarking import (memory, report, roofline, timing,  # noqa: E402
                          workloads)
from benchmarking.models import build_one  # noqa: E402


def parse_size(text: str):
    try:
        h, w = (int(v) for v in text.lower().split('x'))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f'size must be HxW (e.g. 800x1066), got {text!r}')
    if h < 32 or w < 32:
        raise argparse.ArgumentTypeError(f'size {text!r} is below 32x32')
    return h, w


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='mmdet 3.3 DETR vs mmdetr DETR: train step, inference, '
        'matching and train-step peak memory, side by side.')
    parser.add_argument('--device', default='cpu',
                        help='cpu or cuda[:i]. Default: cpu')
    parser.add_argument('--threads', type=int, default=None,
                        help='torch CPU threads (default: torch\'s choice)')
    parser.add_argument('--train-sizes', type=parse_size, nargs=2,
                        default=[(800, 1066), (736, 981)],
                        metavar='HxW', help='the 2 training images')
    parser.add_argument('--train-gts', type=int, default=7,
                        help='boxes per training image (COCO mean: 7.3)')
    parser.add_argument('--infer-size', type=parse_size, default=(800, 1333),
                        metavar='HxW')
    parser.add_argument('--match-batch', type=int, default=8)
    parser.add_argument('--match-gts', type=int, default=20,
                        help='boxes per image of the match batch')
    parser.add_argument('--repeats', type=int, default=5,
                        help='timed rounds per row (median reported)')
    parser.add_argument('--warmup', type=int, default=1,
                        help='untimed rounds first')
    parser.add_argument('--match-repeats', type=int, default=30,
                        help='timed rounds of the (fast) match rows')
    parser.add_argument('--clock', choices=['wall', 'cpu'], default='wall',
                        help='wall: elapsed time (default); cpu: this '
                        "process's CPU time, steadier on a shared machine "
                        '(CPU only; use with --threads 1, as idle OpenMP '
                        'threads spin)')
    parser.add_argument('--amp', action='store_true',
                        help='train and infer under mixed precision '
                        '(float16 on CUDA, bfloat16 on a CPU that has '
                        'bfloat16 instructions)')
    parser.add_argument('--no-memory', action='store_true',
                        help='skip the peak-memory child processes')
    parser.add_argument('--no-roofline', action='store_true',
                        help='skip the roofline (the FLOP counts and the '
                        'peak probes)')
    parser.add_argument('--quick', action='store_true',
                        help='smaller images, fewer rounds and smaller '
                        'roofline probes (lower peaks: a smoke run; about '
                        'a minute on 2 CPU cores)')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--json', help='also write the results here')
    # internal: the peak-memory child
    parser.add_argument('--memory-child', choices=['mmdet', 'mmdetr'],
                        help=argparse.SUPPRESS)
    parser.add_argument('--weights', help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        workloads.apply_quick(args)
        args.match_repeats = min(args.match_repeats, 10)
    for name in ('repeats', 'match_repeats', 'match_batch'):
        if getattr(args, name) < 1:
            parser.error(f'--{name.replace("_", "-")} must be >= 1')
    if args.warmup < 0 or args.train_gts < 0 or args.match_gts < 0:
        parser.error('--warmup, --train-gts and --match-gts must be >= 0')
    if args.device != 'cpu' and not args.device.startswith('cuda'):
        parser.error(f'--device must be cpu or cuda[:i], got {args.device!r}')
    if args.device.startswith('cuda') and not torch.cuda.is_available():
        parser.error('--device cuda: this torch has no CUDA device')
    if args.amp and not args.memory_child:
        from mmdetr.engine.amp import AmpUnsupportedError, check_amp
        try:
            check_amp(args.device)
        except AmpUnsupportedError as e:
            parser.error(f'--amp: {e}')
    if args.clock == 'cpu' and args.device != 'cpu':
        parser.error('--clock cpu measures CPU work; use it with --device '
                     'cpu')
    return args


def quiet_mmengine():
    """Keep mmengine's per-parameter init and optimizer logs out of the
    table."""
    from mmengine.logging import MMLogger
    MMLogger.get_current_instance().setLevel(logging.ERROR)


def main(argv=None):
    args = parse_args(argv)
    quiet_mmengine()
    if args.memory_child:
        return memory.memory_child(args)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = args.device
    if device.startswith('cuda'):
        # the clock synchronises the current device: make it this one
        torch.cuda.set_device(device)
    clock = timing.clock(args.clock)
    torch.manual_seed(args.seed)

    ref, optim_cfg = build_one('mmdet', device)
    weights = {k: v.detach().cpu() for k, v in ref.state_dict().items()}
    ours, our_optim_cfg = build_one('mmdetr', device, weights)
    bench = workloads.Bench(ref, ours, optim_cfg, args, our_optim_cfg)
    del ref, ours  # the bench holds them; dropped before the memory rows

    rows, flops = [], {}
    for work in workloads.WORKLOADS:
        warmup = max(args.warmup, 1) if work.fast else args.warmup
        repeats = args.match_repeats if work.fast else args.repeats
        with torch.no_grad() if work.no_grad else nullcontext():
            steps = work.setup(bench)
            measured = timing.time_pair(steps, warmup, repeats, clock,
                                        work.name)
            if work.roofline and not args.no_roofline:
                # one more run of mmdetr's step, after the timed ones
                flops[work.name] = roofline.count_flops(
                    steps[1], bench.mmdetr if work.inference else None)
        del steps  # train steps hold optimizer state
        rows.append(timing.compare(work.name, measured))
    if not args.no_roofline:
        dtypes = roofline.probe_dtypes(device)
        peaks = roofline.probe_peaks(device, dtypes, clock, args.quick)
        # the rows' dtype: --amp's where it is on
        peak = peaks[dtypes[-1] if args.amp else 'float32']
        entries = [
            roofline.entry(r['name'], flops[r['name']], peak,
                           {m: r[m] / 1e3 for m in timing.MODELS})
            for r in rows if r['name'] in flops
        ]

    # rows that are not times: one value per model
    values = [
        report.ValueRow('train host syncs',
                        *workloads.train_host_syncs(bench))
    ]
    if not args.no_memory:
        del bench  # frees both models before the children run
        with tempfile.TemporaryDirectory() as tmp:
            path = osp.join(tmp, 'weights.pth')
            torch.save(weights, path)
            memory_peaks = [
                memory.peak_memory(which, args, path, osp.abspath(__file__))
                for which in timing.MODELS
            ]
        values.append(
            report.ValueRow('train peak memory', *memory_peaks, unit='MiB',
                            scale=2**20))

    device_name = (torch.cuda.get_device_name(device) if
                   device.startswith('cuda') else 'CPU')
    report.print_table(rows, values, args, device_name)
    if not args.no_roofline:
        print(roofline.format_table(entries, peaks, args.quick, args.clock))
    if args.json:
        report.write_json(
            args.json, rows, values, args, None if args.no_roofline else
            roofline.to_json(entries, peaks, args.quick))
    print(report.speedup_line(rows))


if __name__ == '__main__':
    main()
