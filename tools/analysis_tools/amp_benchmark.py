# Copyright (c) mmdetr contributors. All rights reserved.
"""Time mmdetr's R50 DETR in float32 against mixed precision, side by side
in one process: inference at 800x1333 and one training step, each with the
backbone's share, and the training step's peak memory.

    PYTHONPATH=$PWD python tools/analysis_tools/amp_benchmark.py \
        --threads 2 --repeats 5 [--profile]

The model is ``configs/detr_r50_8x2_150e_coco.py``'s (random weights,
nothing is downloaded). Mixed precision is what ``--amp`` runs: bfloat16
autocast on a CPU (stopping where the CPU has no bfloat16 instructions),
float16 on CUDA (``--dtype`` picks another).

- ``preprocess``: the data preprocessor on one 800x1333 image (normalise,
  pad), as ``test_step`` runs it;
- ``predict``: ``model(mode='predict')`` on its output, under
  ``torch.no_grad`` (and autocast) as ``tools/test.py`` runs it; its
  ``backbone`` row is the time between the backbone's forward hooks;
- ``train``: one step (forward, losses, backward, clipping, AdamW) on a
  padded batch of 800x1066 + 736x981 through the optimizer wrapper of
  ``tools/train.py`` (``--amp``: ``BF16OptimWrapper`` on a CPU); each
  precision has its own copy of the model and optimizer (the same weights).
  Its ``backbone`` row is the backbone's forward plus its backward (from
  when the gradient reaches the backbone's output to the end of backward);
- ``train peak memory``: one precision's step in a fresh child process
  (the method of ``benchmarking/memory.py``);
- ``roofline`` (``--no-roofline`` skips it): the FLOPs of one ``predict``
  and one training step in each precision, counted by torch's
  ``FlopCounterMode`` (convolution and matmul-like apart), the speed this
  machine reaches on a convolution and a matmul probe in float32 and in
  the mixed-precision dtype, and each row's median as a multiple of its
  floor, the float32 floor for the float32 rows and the mixed-precision
  one for the others (``benchmarking/roofline.py``, as
  ``benchmark.py``'s).

Each round runs both precisions, alternating which goes first (medians;
``spread`` is the range of the per-round ratios). The header gives the CPU's
bfloat16 support and the load average before and after: on a shared
machine quote ratios, with the load they were taken under.
``--profile`` prints where ``predict``'s time goes outside the backbone
(torch's profiler, one run per precision): the transformer, the heads,
the detections and the preprocessing. ``--no-weight-cache`` times
inference as torch's autocast alone runs it (the weights cast at every
call), for comparison. ``--quick`` is a smoke run: 320-pixel images, at
most 3 rounds, the roofline's small probes.
"""
import argparse
import copy
import json
import logging
import os
import os.path as osp
import statistics
import subprocess
import sys
import time
from contextlib import nullcontext

import torch

_HERE = osp.dirname(osp.abspath(__file__))
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

from benchmarking import roofline  # noqa: E402
from benchmarking.memory import MMAP_THRESHOLD, _proc_status_kib  # noqa
from benchmarking.models import ROOT  # noqa: E402
from benchmarking.workloads import apply_quick, synthetic_batch  # noqa

CONFIG = osp.join(ROOT, 'configs', 'detr_r50_8x2_150e_coco.py')
NUM_CLASSES = 80
PRECISIONS = ('float32', 'amp')


def parse_size(text):
    try:
        h, w = (int(v) for v in text.lower().split('x'))
    except ValueError:
        raise argparse.ArgumentTypeError(f'size must be HxW, got {text!r}')
    return h, w


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--dtype', choices=('float16', 'bfloat16'),
                        help='mixed-precision dtype (default: the '
                        "device's: bfloat16 on a CPU, float16 on CUDA)")
    parser.add_argument('--threads', type=int, default=None)
    parser.add_argument('--repeats', type=int, default=5)
    parser.add_argument('--warmup', type=int, default=1)
    parser.add_argument('--clock', choices=('wall', 'cpu'), default='wall')
    parser.add_argument('--infer-size', type=parse_size, default=(800, 1333))
    parser.add_argument('--train-sizes', type=parse_size, nargs=2,
                        default=[(800, 1066), (736, 981)])
    parser.add_argument('--train-gts', type=int, default=7)
    parser.add_argument('--no-train', action='store_true')
    parser.add_argument('--no-memory', action='store_true')
    parser.add_argument('--profile', action='store_true')
    parser.add_argument('--no-roofline', action='store_true',
                        help='skip the roofline (the FLOP counts and the '
                        'peak probes)')
    parser.add_argument('--quick', action='store_true',
                        help='smaller images (320-pixel), at most 3 rounds '
                        'and smaller roofline probes (lower peaks): a smoke '
                        'run')
    parser.add_argument('--no-weight-cache', action='store_true',
                        help='let autocast cast (and fold) the weights at '
                        'every inference call, as torch alone does '
                        '(mmdetr.speed.autocast_weight_cache)')
    parser.add_argument('--json', help='also write the results here')
    parser.add_argument('--memory-child', choices=PRECISIONS,
                        help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        apply_quick(args)
    if args.repeats < 1 or args.warmup < 0:
        parser.error('--repeats must be >= 1 and --warmup >= 0')
    from mmdetr.engine.amp import AmpUnsupportedError, check_amp
    try:
        args.amp_dtype = check_amp(args.device, args.dtype)
    except AmpUnsupportedError as e:
        parser.error(str(e))
    return args


def quiet():
    from mmengine.logging import MMLogger
    MMLogger.get_current_instance().setLevel(logging.ERROR)


def build_model(device):
    """The R50 model of the config, randomly initialised (seeded)."""
    import mmdetr  # noqa: F401
    from mmengine.config import Config
    from mmengine.registry import MODELS, DefaultScope
    cfg = Config.fromfile(CONFIG)
    cfg.model.backbone.init_cfg = None
    torch.manual_seed(0)
    with DefaultScope.overwrite_default_scope('mmdet'):
        model = MODELS.build(cfg.model)
    model.init_weights()
    return model.to(device), cfg


def build_optim(model, cfg, precision, device, dtype=None):
    """The optimizer wrapper ``tools/train.py`` (``--amp``) builds."""
    from mmengine.optim import build_optim_wrapper
    from mmengine.registry import DefaultScope

    from mmdetr.engine.amp import amp_train_config
    cfg = copy.deepcopy(cfg)
    if precision == 'amp':
        amp_train_config(cfg, dtype, torch.device(device).type)
    with DefaultScope.overwrite_default_scope('mmdet'):
        return build_optim_wrapper(model, cfg.optim_wrapper)


class BackboneTimer:
    """Marks the backbone's forward (hooks) and when the gradient reaches
    its output (a tensor hook), on ``clock``."""

    def __init__(self, model, clock):
        self.clock = clock
        self.marks = {}
        model.backbone.register_forward_pre_hook(self._pre)
        model.backbone.register_forward_hook(self._post)

    def _pre(self, module, args):
        self.marks['fwd_start'] = self.clock()

    def _post(self, module, args, out):
        self.marks['fwd_end'] = self.clock()
        last = out[-1]
        if last.requires_grad:
            last.register_hook(self._grad)

    def _grad(self, grad):
        self.marks['bwd_start'] = self.clock()

    def forward_time(self):
        return self.marks['fwd_end'] - self.marks['fwd_start']


def autocast(precision, device, dtype):
    if precision == 'float32':
        return nullcontext()
    return torch.autocast(torch.device(device).type, dtype=dtype)


def time_rounds(steps, warmup, repeats):
    """Run ``steps`` (precision -> callable returning a dict of seconds)
    in alternating rounds; returns precision -> key -> list of seconds."""
    for _ in range(warmup):
        for step in steps.values():
            step()
    out = {p: {} for p in steps}
    order = list(steps)
    for r in range(repeats):
        for p in (order if r % 2 == 0 else order[::-1]):
            for key, value in steps[p]().items():
                out[p].setdefault(key, []).append(value)
    return out


def infer_steps(model, timer, raw, args):
    clock = timer.clock
    model.eval()

    def step(precision):
        def run():
            data = copy.copy(raw)
            with torch.no_grad(), autocast(precision, args.device,
                                           args.amp_dtype):
                start = clock()
                data = model.data_preprocessor(data, False)
                mid = clock()
                model(**data, mode='predict')
                end = clock()
            return dict(preprocess=mid - start, predict=end - mid,
                        predict_backbone=timer.forward_time())
        return run

    return {p: step(p) for p in PRECISIONS}


def train_steps(models, timers, data, optims):
    def step(precision):
        model, timer, optim = (models[precision], timers[precision],
                               optims[precision])
        clock = timer.clock

        def run():
            start = clock()
            with optim.optim_context(model):
                losses = model(**data, mode='loss')
            loss, _ = model.parse_losses(losses)
            optim.backward(loss)
            bwd_end = clock()
            optim.step()
            optim.zero_grad()
            end = clock()
            backbone = timer.forward_time() + bwd_end - \
                timer.marks['bwd_start']
            return dict(train=end - start, train_backbone=backbone)
        return run

    return {p: step(p) for p in PRECISIONS}


def memory_child(args):
    """In a fresh process: one precision's train-step peak, as JSON."""
    if args.threads:
        torch.set_num_threads(args.threads)
    raw = synthetic_batch(args.train_sizes, args.train_gts, NUM_CLASSES)
    base = _proc_status_kib('VmRSS') * 1024
    model, cfg = build_model(args.device)
    model.train()
    optim = build_optim(model, cfg, args.memory_child, args.device,
                        args.amp_dtype)
    data = model.data_preprocessor(raw, True)

    def step():
        with optim.optim_context(model):
            losses = model(**data, mode='loss')
        optim.update_params(model.parse_losses(losses)[0])

    step()
    with open('/proc/self/clear_refs', 'w') as f:
        f.write('5')
    step()
    print(json.dumps(dict(peak=_proc_status_kib('VmHWM') * 1024 - base)))


def peak_memory(precision, args):
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_=str(MMAP_THRESHOLD))
    env['PYTHONPATH'] = os.pathsep.join(
        p for p in (ROOT, env.get('PYTHONPATH')) if p)
    cmd = [sys.executable, osp.abspath(__file__), '--memory-child',
           precision, '--device', args.device, '--train-gts',
           str(args.train_gts), '--train-sizes'
           ] + ['x'.join(map(str, s)) for s in args.train_sizes]
    if args.threads:
        cmd += ['--threads', str(args.threads)]
    if args.dtype:
        cmd += ['--dtype', args.dtype]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f'memory child ({precision}) failed:\n'
                           f'{out.stderr[-3000:]}')
    return json.loads(out.stdout.strip().splitlines()[-1])['peak']


def profile_outside_backbone(model, raw, args):
    """Self time by operator of one ``test_step`` per precision, the
    backbone's operators left out (its forward is profiled apart)."""
    from torch.profiler import ProfilerActivity, profile, record_function
    backbone = model.backbone.forward

    def labelled(*a, **k):
        with record_function('backbone'):
            return backbone(*a, **k)

    model.backbone.forward = labelled
    try:
        for precision in PRECISIONS:
            with torch.no_grad(), autocast(precision, args.device,
                                           args.amp_dtype):
                model.test_step(copy.copy(raw))  # warm-up
                with profile(activities=[ProfilerActivity.CPU]) as prof:
                    model.test_step(copy.copy(raw))
            events = prof.events()
            inside = set()
            for e in events:
                if e.name == 'backbone':
                    inside.add(e.id)
            per_op, total, backbone_ms = {}, 0.0, 0.0
            for e in events:
                if e.name == 'backbone':
                    backbone_ms += e.cpu_time_total / 1e3
                    continue
                parent, in_backbone = e.cpu_parent, False
                while parent is not None:
                    if parent.id in inside:
                        in_backbone = True
                        break
                    parent = parent.cpu_parent
                if in_backbone:
                    continue
                ms = e.self_cpu_time_total / 1e3
                per_op[e.name] = per_op.get(e.name, 0.0) + ms
                total += ms
            print(f'\n{precision}: one test_step, backbone {backbone_ms:.0f} '
                  f'ms; outside it {total:.0f} ms of self time, by operator:')
            for name, ms in sorted(per_op.items(), key=lambda kv: -kv[1])[:15]:
                print(f'  {name:<52s} {ms:8.1f} ms  {100 * ms / total:5.1f}%')
    finally:
        model.backbone.forward = backbone


def median_ms(values):
    return statistics.median(values) * 1e3


def roofline_entries(flops, results, peaks, dtype):
    """The roofline rows: each counted (row, precision) with the floor of
    its precision (float32's, or ``dtype``'s for ``amp``) and its median."""
    return [
        roofline.entry(row, flops[row, p],
                       peaks['float32' if p == 'float32' else dtype],
                       dict(mmdetr=statistics.median(results[p][row])))
        for row, p in flops
    ]


def main(argv=None):
    args = parse_args(argv)
    from mmdetr.speed import autocast_weight_cache
    with autocast_weight_cache(not args.no_weight_cache):
        return run(args)


def run(args):
    quiet()
    if args.memory_child:
        return memory_child(args)
    if args.threads:
        torch.set_num_threads(args.threads)
    from mmdetr.engine.amp import cpu_bf16_support
    clock = dict(wall=time.perf_counter, cpu=time.process_time)[args.clock]
    load_before = os.getloadavg()
    dtype = str(args.amp_dtype).split('.')[-1]
    model, cfg = build_model(args.device)
    timer = BackboneTimer(model, clock)
    raw = synthetic_batch([args.infer_size], 0, NUM_CLASSES)
    steps = infer_steps(model, timer, raw, args)
    results = time_rounds(steps, args.warmup, args.repeats)
    flops = {}  # (row, precision) -> Flops, for the roofline
    if not args.no_roofline:
        for p in PRECISIONS:  # one more run each, after the timed ones
            flops['predict', p] = roofline.count_flops(steps[p], model)
    rows = [('preprocess', 'preprocess'), ('predict', 'predict'),
            ('  backbone', 'predict_backbone')]
    if not args.no_train:
        models = {'float32': model, 'amp': copy.deepcopy(model)}
        timers = {'float32': timer, 'amp': BackboneTimer(models['amp'],
                                                         clock)}
        optims = {}
        for p, m in models.items():
            m.train()
            optims[p] = build_optim(m, cfg, p, args.device, args.amp_dtype)
        data = model.data_preprocessor(
            synthetic_batch(args.train_sizes, args.train_gts, NUM_CLASSES),
            True)
        steps = train_steps(models, timers, data, optims)
        train = time_rounds(steps, args.warmup, args.repeats)
        if not args.no_roofline:
            for p in PRECISIONS:
                flops['train', p] = roofline.count_flops(steps[p])
        for p in PRECISIONS:
            results[p].update(train[p])
        rows += [('train', 'train'), ('  backbone', 'train_backbone')]
        del models, optims, steps
    memory = None
    if not args.no_train and not args.no_memory:
        memory = {p: peak_memory(p, args) for p in PRECISIONS}
    peaks = None
    if not args.no_roofline:
        peaks = roofline.probe_peaks(args.device, ['float32', dtype], clock,
                                     args.quick)
    load_after = os.getloadavg()

    device = args.device if args.device != 'cpu' else \
        f'CPU ({cpu_bf16_support().describe()})'
    print(f'\nmmdetr R50 DETR, float32 vs {dtype} autocast on {device}, '
          f'{torch.get_num_threads()} threads, torch {torch.__version__}; '
          f'{args.clock} time, medians of {args.repeats} rounds; load '
          f'average {load_before[0]:.2f} before, {load_after[0]:.2f} after'
          f'{"; no weight cache" if args.no_weight_cache else ""}')
    print(f'{"":14s}{"float32":>12s}{dtype:>12s}{"ratio":>9s}'
          f'{"spread":>13s}')
    table = {}
    for label, key in rows:
        full, half = results['float32'][key], results['amp'][key]
        ratios = sorted(a / b for a, b in zip(full, half))
        table[key] = dict(float32=median_ms(full), amp=median_ms(half),
                          ratio=median_ms(full) / median_ms(half),
                          spread=(ratios[0], ratios[-1]))
        t = table[key]
        print(f'{label:14s}{t["float32"]:10.0f}ms{t["amp"]:10.0f}ms'
              f'{t["ratio"]:8.2f}x{t["spread"][0]:8.2f}-'
              f'{t["spread"][1]:.2f}')
    for p in PRECISIONS:
        total = table['predict'][p] + table['preprocess'][p]
        outside = total - table['predict_backbone'][p]
        table[f'outside_share_{p}'] = outside / total
    print(f'outside the backbone (preprocess + predict - backbone): '
          f'float32 {100 * table["outside_share_float32"]:.0f}%, '
          f'{dtype} {100 * table["outside_share_amp"]:.0f}%')
    if memory:
        print(f'train peak memory: float32 {memory["float32"] / 2**20:.0f} '
              f'MiB, {dtype} {memory["amp"] / 2**20:.0f} MiB')
    rooflines = None
    if peaks:
        entries = roofline_entries(flops, results, peaks, dtype)
        print(roofline.format_table(entries, peaks, args.quick, args.clock))
        rooflines = roofline.to_json(entries, peaks, args.quick)
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(dict(table=table, memory=memory, roofline=rooflines,
                           load=[load_before, load_after],
                           args={k: str(v) for k, v in vars(args).items()}),
                      f, indent=1)
    if args.profile:
        profile_outside_backbone(model.eval(), raw, args)
    return 0


if __name__ == '__main__':
    sys.exit(main())
