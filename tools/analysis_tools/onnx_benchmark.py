# Copyright (c) mmdetr contributors. All rights reserved.
"""Time the exported DETR under ONNX Runtime against mmdetr's PyTorch
``predict``, in one process, on the same padded batches.

    PYTHONPATH=$PWD python tools/analysis_tools/onnx_benchmark.py \
        --threads 2 --repeats 5 [--variants all extended basic all:nospin] \
        [--profile]

The model is ``--config``'s (default: the R50 6+6 recipe), with random
weights (nothing is downloaded), exported with a dynamic batch and size
(``--onnx FILE`` reuses an export). Cases: batch 1 at 800x1333, and batch 2
of 800x1066 + 736x981, padded (the shapes of tools/analysis_tools/
benchmark.py). Both sides get the data preprocessor's output: PyTorch runs
``DETR.predict`` (forward and detections), ONNX Runtime the graph (forward
and detections). Each round times every contender once, alternating the
order between rounds; the table gives medians, the ratio PyTorch / ONNX
Runtime (> 1: ONNX Runtime is faster) and the range of the per-round ratios.

ONNX Runtime variants (``--variants``): a graph optimisation level
(``disable``, ``basic``, ``extended``, ``all``), optionally ``:nospin``
(intra-op threads sleep instead of spinning when idle). ``--profile`` prints
where the time goes: ONNX Runtime's per-operator profile and torch's
profiler, one batch-1 run each.

Reduced precision: ``--amp`` adds PyTorch under bfloat16 autocast
(``tools/test.py --amp``; a CPU with bfloat16 instructions);
``--int8 Conv [MatMul ...]`` adds the export quantized to int8 (static,
QDQ: ``tools/deployment/quantize_onnx.py``'s settings) for those operators,
run with the first variant's settings. Its activation ranges come from two
random batches: with random weights only its speed means something (its
AP: quantize_onnx.py on a trained model, docs/deployment.md).
"""
import argparse
import collections
import json
import logging
import os
import os.path as osp
import statistics
import sys
import tempfile
import time

import torch
from mmengine.config import Config
from mmengine.registry import MODELS, DefaultScope

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CASES = {
    'batch 1, 800x1333': [(800, 1333)],
    'batch 2, 800x1066 + 736x981': [(800, 1066), (736, 981)],
}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument(
        '--config', default=osp.join(ROOT, 'configs',
                                     'detr_r50_8x2_150e_coco.py'))
    parser.add_argument('--onnx', help='reuse this export of --config')
    parser.add_argument('--threads', type=int, default=2,
                        help='threads of both torch and ONNX Runtime')
    parser.add_argument('--repeats', type=int, default=5)
    parser.add_argument('--variants', nargs='+', default=['all'],
                        help='ONNX Runtime settings, e.g. all extended:nospin')
    parser.add_argument(
        '--clock', choices=('wall', 'cpu'), default='wall',
        help='elapsed time, or the process\'s CPU time (with --threads 1 '
        'and the :nospin variants: the work, not the waiting, on a shared '
        'machine)')
    parser.add_argument('--profile', action='store_true')
    parser.add_argument('--amp', action='store_true',
                        help='add PyTorch under bfloat16 autocast')
    parser.add_argument('--int8', nargs='+', metavar='OP',
                        help='add the export quantized to int8 for these '
                        'ONNX operators, e.g. Conv MatMul')
    parser.add_argument('--cases', nargs='+', choices=list(CASES),
                        default=list(CASES))
    return parser.parse_args(argv)


def build_model(config: str):
    cfg = Config.fromfile(config)
    cfg.model.backbone.init_cfg = None  # random weights, no download
    with DefaultScope.overwrite_default_scope('mmdet'):
        model = MODELS.build(cfg.model)
    # init_weights logs every parameter at INFO
    logging.getLogger('mmengine').setLevel(logging.WARNING)
    model.init_weights()
    return model.eval()


def make_variant(onnx_file: str, spec: str, threads: int, profile=False):
    from mmdetr.deploy.errors import require
    ort = require('onnxruntime')
    level, _, flag = spec.partition(':')
    levels = dict(
        disable=ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        basic=ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        extended=ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        all=ort.GraphOptimizationLevel.ORT_ENABLE_ALL)
    opts = ort.SessionOptions()
    opts.graph_optimization_level = levels[level]
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    if flag == 'nospin':
        opts.add_session_config_entry('session.intra_op.allow_spinning', '0')
    if profile:
        opts.enable_profiling = True
        opts.profile_file_prefix = osp.join(tempfile.mkdtemp(), 'ort')
    return ort.InferenceSession(onnx_file, opts,
                                providers=['CPUExecutionProvider'])


CLOCK = dict(wall=time.perf_counter, cpu=time.process_time)


def timed(fn, clock: str = 'wall') -> float:
    now = CLOCK[clock]
    start = now()
    fn()
    return (now() - start) * 1000


def bench_case(model, sessions, sizes, repeats, clock='wall', amp=False):
    """Medians (ms) per contender and the per-round PyTorch/ORT ratios."""
    from mmdetr.deploy.verify import random_batch
    inputs, samples = random_batch(model, sizes)
    feed = dict(input=inputs.numpy(),
                img_shape=torch.tensor([s.img_shape
                                        for s in samples]).numpy())
    fns = {'PyTorch': lambda: model.predict(inputs, samples, rescale=False)}
    if amp:
        def predict_bf16():
            with torch.autocast('cpu', dtype=torch.bfloat16):
                model.predict(inputs, samples, rescale=False)
        fns['PyTorch bf16'] = predict_bf16
    for name, sess in sessions.items():
        fns[name] = (lambda s: lambda: s.run(None, feed))(sess)
    for fn in fns.values():  # warm-up: allocations, oneDNN kernels
        fn()
    times = collections.defaultdict(list)
    names = list(fns)
    for r in range(repeats):
        for name in (names if r % 2 == 0 else names[::-1]):
            times[name].append(timed(fns[name], clock))
    return times


def quantize_random(model, onnx_file: str, op_types) -> str:
    """``onnx_file`` quantized to int8 for ``op_types`` as
    quantize_onnx.py does, its ranges from two random batches."""
    from mmdetr.deploy.errors import require
    from mmdetr.deploy.verify import random_batch
    require('onnxruntime')
    from onnxruntime.quantization import (CalibrationDataReader,
                                          QuantFormat, QuantType,
                                          quantize_static)

    class Reader(CalibrationDataReader):

        def __init__(self):
            self.batches = iter([
                dict(input=x.numpy(),
                     img_shape=torch.tensor([t.img_shape
                                             for t in s]).numpy())
                for x, s in (random_batch(model, [size])
                             for size in [(800, 1333), (800, 1066)])
            ])

        def get_next(self):
            return next(self.batches, None)

    out = osp.splitext(onnx_file)[0] + f'_int8_{"_".join(op_types)}.onnx'
    start = time.perf_counter()
    quantize_static(onnx_file, out, Reader(), quant_format=QuantFormat.QDQ,
                    op_types_to_quantize=list(op_types), per_channel=True,
                    activation_type=QuantType.QUInt8,
                    weight_type=QuantType.QInt8)
    print(f'quantized {out} in {time.perf_counter() - start:.0f} s')
    return out


def profile(model, onnx_file, spec, threads):
    """Top operators of one batch-1 run, ONNX Runtime and torch."""
    from mmdetr.deploy.verify import random_batch
    inputs, samples = random_batch(model, CASES['batch 1, 800x1333'])
    feed = dict(input=inputs.numpy(),
                img_shape=torch.tensor([s.img_shape
                                        for s in samples]).numpy())
    sess = make_variant(onnx_file, spec, threads, profile=True)
    sess.run(None, feed)
    sess.run(None, feed)
    with open(sess.end_profiling()) as f:
        events = json.load(f)
    runs = [e for e in events if e.get('name') == 'model_run']
    last_start = runs[-1]['ts']
    per_op = collections.Counter()
    for e in events:
        if e.get('cat') == 'Node' and e['ts'] >= last_start and \
                e['name'].endswith('_kernel_time'):
            per_op[e['args']['op_name']] += e['dur'] / 1000
    total = sum(per_op.values())
    print(f'\nONNX Runtime ({spec}), one batch-1 run, kernel time '
          f'{total:.0f} ms by operator:')
    for op, ms in per_op.most_common(10):
        print(f'  {op:<28s} {ms:8.1f} ms  {100 * ms / total:5.1f}%')
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile
    model.predict(inputs, samples, rescale=False)
    with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        model.predict(inputs, samples, rescale=False)
    print('\nPyTorch predict, one batch-1 run, self CPU time by operator:')
    print(prof.key_averages().table(sort_by='self_cpu_time_total',
                                    row_limit=10))


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    model = build_model(args.config)
    onnx_file = args.onnx
    if onnx_file is None:
        from mmdetr.deploy.export import export_onnx
        onnx_file = osp.join(tempfile.mkdtemp(), 'detr.onnx')
        start = time.perf_counter()
        # a small example batch traces faster; the graph is dynamic
        export_onnx(model, onnx_file, shape=(320, 480), dynamic=True)
        print(f'exported {onnx_file} in {time.perf_counter() - start:.0f} s')
    sessions = {
        f'ORT {spec}': make_variant(onnx_file, spec, args.threads)
        for spec in args.variants
    }
    if args.amp:
        from mmdetr.engine.amp import AmpUnsupportedError, check_amp
        try:
            check_amp('cpu', 'bfloat16')
        except AmpUnsupportedError as e:
            sys.exit(f'onnx_benchmark: --amp: {e}')
    if args.int8:
        int8_file = quantize_random(model, onnx_file, args.int8)
        sessions[f'ORT int8 {"+".join(args.int8)}'] = make_variant(
            int8_file, args.variants[0], args.threads)
    print(f'threads {args.threads}, {args.clock} clock, {args.repeats} '
          'rounds, load average '
          f'{" ".join(f"{v:.2f}" for v in os.getloadavg())}')
    header = f'| {"case":<28s} | {"contender":<16s} | median ms | ' \
             'PyTorch/this | spread |'
    print(header)
    print('|' + '|'.join('-' * (len(c)) for c in header.split('|')[1:-1])
          + '|')
    for case in args.cases:
        times = bench_case(model, sessions, CASES[case], args.repeats,
                           args.clock, args.amp)
        base = statistics.median(times['PyTorch'])
        for name, ts in times.items():
            ratios = [p / t for p, t in zip(times['PyTorch'], ts)]
            med = statistics.median(ts)
            print(f'| {case:<28s} | {name:<16s} | {med:9.0f} | '
                  f'{base / med:11.2f}x | '
                  f'{min(ratios):.2f}-{max(ratios):.2f} |')
    print(f'load average after: '
          f'{" ".join(f"{v:.2f}" for v in os.getloadavg())}')
    if args.profile:
        profile(model, onnx_file, args.variants[0], args.threads)
    return 0


if __name__ == '__main__':
    sys.exit(main())
