# Copyright (c) mmdetr contributors. All rights reserved.
"""Time mmdet 3.3's DETR against mmdetr's DETR, side by side in one process.

Both models are built from their own shipped configs (mmdet's
``detr/detr_r50_8xb2-150e_coco.py`` and mmdetr's
``configs/detr_r50_8x2_150e_coco.py``: R50, 256 dims, 6+6 layers, 100
queries, 80 classes); mmdetr's gets mmdet's randomly initialised weights
through ``mmdetr.utils.convert.convert_state_dict(..., 'mmdet3')``, so both
compute the same function on the same inputs. Rows:

- ``train``: one full training step as mmengine's ``BaseModel.train_step``
  runs it after the data preprocessor: forward, losses, ``parse_losses``,
  backward, gradient clipping (L2, 0.1) and AdamW step, through the configs'
  optimizer wrapper (``AmpOptimWrapper`` with ``--amp`` on CUDA, bfloat16
  autocast on CPU). Batch of 2 images of different sizes, padded.
- ``infer``: ``model.predict`` (forward and detections) on one image, under
  ``torch.no_grad`` as mmengine's test loop runs it.
- ``match``: the Hungarian assignment of every decoder layer's predictions
  for a batch (synthetic head outputs), cost computation included:
  mmdet's head calls its assigner per image and layer (with the box
  conversion its ``_get_targets_single`` does first); mmdetr's head makes
  one batched call.
- ``targets``: ``match`` plus the per-image target tensors of every layer
  (mmdet: ``get_targets`` per layer; mmdetr: the batched assignment, then
  ``get_targets`` per layer with it).
- ``train peak memory``: see below.

Timing: warm-up runs first, then ``repeats`` rounds; each round runs both
models, alternating which goes first, so slow phases of a shared machine hit
both. The table gives medians and the ratio mmdet/mmdetr of the medians
(> 1: mmdetr is faster); the ``spread`` column gives the range of the
per-round ratios, a measure of the noise. On CUDA every timed call is
bracketed by ``torch.cuda.synchronize()``. ``--clock cpu`` times the process's
CPU time instead of elapsed time: on a CPU shared with other jobs it measures
the work rather than the waiting (use it with ``--threads 1``: idle OpenMP
threads spin and count as work).

Peak memory of a train step is measured in a fresh child process per model,
so that neither model's allocations (or the allocator's caches) count for the
other. The child builds the batch, notes the memory in use, builds the model
and its optimizer, runs one warm-up step, resets the high-water mark, runs one
step and reports the high-water mark minus the memory noted before the model
existed: weights, gradients, optimizer state and the step's activations and
temporaries. On CUDA that is ``torch.cuda.max_memory_allocated`` (after
``reset_peak_memory_stats``) minus ``memory_allocated``. On CPU it is the
process's resident-set high-water mark (``VmHWM`` in ``/proc/self/status``,
reset by writing 5 to ``/proc/self/clear_refs``) minus its resident set;
the child runs with a fixed ``MALLOC_MMAP_THRESHOLD_`` so that glibc returns
freed tensors to the system instead of keeping them resident, making the
resident set track the live tensors (not bit-exact: allocator overhead and
small heap chunks count too, equally for both).

Example (the README's table)::

    PYTHONPATH=$PWD python tools/analysis_tools/benchmark.py --threads 2

Prints the table, and last a line
``speedup train=X.XX infer=X.XX match=X.XX``.
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
import tempfile
import time
from contextlib import nullcontext

import torch
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from mmengine.registry import DefaultScope

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
MMDETR_CONFIG = osp.join(ROOT, 'configs', 'detr_r50_8x2_150e_coco.py')
MMDET_CONFIG = 'detr/detr_r50_8xb2-150e_coco.py'  # under mmdet/.mim/configs

# glibc: allocations above this many bytes are mmap()ed and unmapped on free
MMAP_THRESHOLD = 1 << 17


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
                        help='train step under mixed precision')
    parser.add_argument('--no-memory', action='store_true',
                        help='skip the peak-memory child processes')
    parser.add_argument('--quick', action='store_true',
                        help='smaller images and fewer rounds (about a '
                        'minute on 2 CPU cores)')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--json', help='also write the results here')
    # internal: the peak-memory child
    parser.add_argument('--memory-child', choices=['mmdet', 'mmdetr'],
                        help=argparse.SUPPRESS)
    parser.add_argument('--weights', help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.train_sizes = [(320, 427), (288, 384)]
        args.infer_size = (320, 533)
        args.repeats = min(args.repeats, 3)
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
    if args.clock == 'cpu' and args.device != 'cpu':
        parser.error('--clock cpu measures CPU work; use it with --device '
                     'cpu')
    return args


# ------------------------------------------------------------------ models
def model_configs():
    """The two configs' model and optimizer-wrapper dicts, with the backbone
    left randomly initialised (nothing is downloaded)."""
    import mmdet
    mmdet_path = osp.join(
        osp.dirname(mmdet.__file__), '.mim', 'configs', MMDET_CONFIG)
    ref_cfg = Config.fromfile(mmdet_path)
    our_cfg = Config.fromfile(MMDETR_CONFIG)
    for cfg in (ref_cfg, our_cfg):
        cfg.model.backbone.init_cfg = None
    return ref_cfg, our_cfg


def build_one(which: str, device, weights=None):
    """Build mmdet's (``which='mmdet'``) or mmdetr's DETR.

    mmdet's gets a fresh initialisation, or ``weights`` (a state dict in
    mmdet's layout); mmdetr's always gets ``weights``, converted.
    """
    from mmengine.registry import MODELS
    ref_cfg, our_cfg = model_configs()
    if which == 'mmdet':
        import mmdet.models  # noqa: F401  registers mmdet's modules
        with DefaultScope.overwrite_default_scope('mmdet'):
            model = MODELS.build(copy.deepcopy(ref_cfg.model))
        model.init_weights()
        if weights is not None:
            model.load_state_dict(weights, strict=True)
        optim_cfg = ref_cfg.optim_wrapper
    else:
        import mmdetr  # noqa: F401  registers mmdetr's modules
        from mmdetr.utils.convert import convert_state_dict
        with DefaultScope.overwrite_default_scope('mmdet'):
            model = MODELS.build(copy.deepcopy(our_cfg.model))
        model.load_state_dict(
            convert_state_dict(weights, 'mmdet3'), strict=True)
        optim_cfg = ref_cfg.optim_wrapper  # the same optimizer for both
    return model.to(device), copy.deepcopy(optim_cfg)


def build_optim(model, optim_cfg, amp: bool, device: str):
    cfg = copy.deepcopy(optim_cfg)
    if amp and device.startswith('cuda'):
        cfg['type'] = 'AmpOptimWrapper'  # float16 autocast + loss scaling
    return build_optim_wrapper(model, cfg)


def autocast_context(amp: bool, device: str):
    # mmengine's AmpOptimWrapper refuses CPUs; there bfloat16 needs no
    # loss scaling, so plain autocast is the whole of AMP
    if amp and device == 'cpu':
        return torch.autocast('cpu', dtype=torch.bfloat16)
    return nullcontext()


# ------------------------------------------------------------------- data
def random_boxes(n, h, w, gen):
    """n absolute (x1, y1, x2, y2) boxes inside an h x w image."""
    xy = torch.rand(n, 2, generator=gen) * torch.tensor([w * 0.7, h * 0.7])
    wh = (torch.rand(n, 2, generator=gen) * 0.5 + 0.05) * torch.tensor([w, h])
    x2y2 = torch.minimum(xy + wh, torch.tensor([w - 1., h - 1.]))
    return torch.cat([xy, x2y2], dim=1)


def raw_batch(sizes, num_gts, num_classes, seed):
    """Model input before the data preprocessor: uint8 images and samples."""
    from mmdet.structures import DetDataSample
    from mmengine.structures import InstanceData
    gen = torch.Generator().manual_seed(seed)
    inputs, samples = [], []
    for h, w in sizes:
        inputs.append(
            torch.randint(0, 256, (3, h, w), generator=gen,
                          dtype=torch.uint8))
        sample = DetDataSample(
            metainfo=dict(img_shape=(h, w), ori_shape=(h, w),
                          scale_factor=(1., 1.)))
        sample.gt_instances = InstanceData(
            bboxes=random_boxes(num_gts, h, w, gen),
            labels=torch.randint(0, num_classes, (num_gts, ), generator=gen))
        samples.append(sample)
    return dict(inputs=inputs, data_samples=samples)


def match_inputs(args, num_layers, num_queries, num_classes, device):
    """Synthetic head outputs of every decoder layer and the ground truths
    of a batch: logits (L, B, Q, C+1), normalised (cx, cy, w, h) boxes
    (L, B, Q, 4), per image ``match_gts`` boxes and labels, and metas."""
    from mmengine.structures import InstanceData
    gen = torch.Generator().manual_seed(args.seed + 1)
    L, B, Q = num_layers, args.match_batch, num_queries
    cls = torch.randn(L, B, Q, num_classes + 1, generator=gen)
    box = torch.rand(L, B, Q, 4, generator=gen) * 0.5 + 0.2
    metas, gt_bboxes, gt_labels = [], [], []
    for i in range(B):
        h, w = args.train_sizes[i % 2]
        pad = args.train_sizes[0]
        metas.append(dict(img_shape=(h, w), batch_input_shape=pad))
        gt_bboxes.append(random_boxes(args.match_gts, h, w, gen).to(device))
        gt_labels.append(
            torch.randint(0, num_classes, (args.match_gts, ),
                          generator=gen).to(device))
    gt_instances = [
        InstanceData(bboxes=b, labels=l) for b, l in zip(gt_bboxes, gt_labels)
    ]
    return (cls.to(device), box.to(device), gt_bboxes, gt_labels,
            gt_instances, metas)


# ---------------------------------------------------------------- the work
def train_step(model, optim_wrapper, data, amp, device):
    """mmengine's ``BaseModel.train_step`` after the data preprocessor."""
    with optim_wrapper.optim_context(model), autocast_context(amp, device):
        losses = model(**data, mode='loss')
    loss, _ = model.parse_losses(losses)
    optim_wrapper.update_params(loss)


def infer(model, data):
    with torch.no_grad():  # as mmengine's TestLoop.run_iter
        model(**data, mode='predict')


def mmdet_match(head, cls, box, gt_instances, metas):
    """What mmdet's ``DETRHead._get_targets_single`` does before and in its
    assigner call, for every layer and image."""
    from mmdet.structures.bbox import bbox_cxcywh_to_xyxy
    from mmengine.structures import InstanceData
    results = []
    for layer_cls, layer_box in zip(cls, box):
        for cls_score, bbox_pred, gt, meta in zip(layer_cls, layer_box,
                                                  gt_instances, metas):
            img_h, img_w = meta['img_shape']
            factor = bbox_pred.new_tensor([img_w, img_h, img_w,
                                           img_h]).unsqueeze(0)
            pred = InstanceData(
                scores=cls_score,
                bboxes=bbox_cxcywh_to_xyxy(bbox_pred) * factor)
            results.append(
                head.assigner.assign(
                    pred_instances=pred, gt_instances=gt, img_meta=meta))
    return results


def mmdet_targets(head, cls, box, gt_instances, metas):
    return [
        head.get_targets(list(c), list(b), gt_instances, metas)
        for c, b in zip(cls, box)
    ]


def mmdetr_match(head, cls, box, gt_bboxes, gt_labels, metas):
    return head.assign_all(cls, box, gt_bboxes, gt_labels, metas)


def mmdetr_targets(head, cls, box, gt_bboxes, gt_labels, metas):
    assign_results = head.assign_all(cls, box, gt_bboxes, gt_labels, metas)
    return [
        head.get_targets(list(c), list(b), gt_bboxes, gt_labels, metas, a)
        for c, b, a in zip(cls, box, assign_results)
    ]


# ------------------------------------------------------------------ timing
def synchronizer(device: str):
    if device.startswith('cuda'):
        return lambda: torch.cuda.synchronize(device)
    return lambda: None


def time_pair(fns, warmup, repeats, sync, clock=time.perf_counter):
    """Seconds per call of each of the two ``fns``: ``warmup`` untimed
    rounds, then ``repeats`` rounds, alternating which runs first."""
    for _ in range(warmup):
        for fn in fns:
            fn()
    times = ([], [])
    for r in range(repeats):
        order = (0, 1) if r % 2 == 0 else (1, 0)
        for k in order:
            sync()
            start = clock()
            fns[k]()
            sync()
            times[k].append(clock() - start)
    return times


def row(name, times):
    ref, ours = times
    ratios = sorted(a / b for a, b in zip(ref, ours))
    ref_ms = statistics.median(ref) * 1e3
    our_ms = statistics.median(ours) * 1e3
    return dict(
        name=name, mmdet=ref_ms, mmdetr=our_ms, ratio=ref_ms / our_ms,
        spread=(ratios[0], ratios[-1]),
        rounds_ms=([t * 1e3 for t in ref], [t * 1e3 for t in ours]))


# ------------------------------------------------------------------ memory
def _proc_status_kib(field: str) -> int:
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith(field + ':'):
                return int(line.split()[1])
    raise RuntimeError(f'/proc/self/status has no {field}')


def memory_child(args):
    """Runs in the child: prints the train step's peak bytes as JSON."""
    device = args.device
    if args.threads:
        torch.set_num_threads(args.threads)
    weights = torch.load(args.weights, weights_only=True)
    data_raw = raw_batch(args.train_sizes, args.train_gts, 80, args.seed)
    cuda = device.startswith('cuda')
    if cuda:
        torch.cuda.synchronize(device)
        base = torch.cuda.memory_allocated(device)
    else:
        base = _proc_status_kib('VmRSS') * 1024
    # the weights file in memory belongs to neither model; the one that
    # loads it copies it, so keep it alive for both
    model, optim_cfg = build_one(args.memory_child, device, weights)
    model.train()
    optim_wrapper = build_optim(model, optim_cfg, args.amp, device)
    data = model.data_preprocessor(data_raw, True)
    train_step(model, optim_wrapper, data, args.amp, device)
    if cuda:
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    else:
        with open('/proc/self/clear_refs', 'w') as f:
            f.write('5')  # resets VmHWM to the current resident set
    train_step(model, optim_wrapper, data, args.amp, device)
    if cuda:
        torch.cuda.synchronize(device)
        peak = torch.cuda.max_memory_allocated(device)
    else:
        peak = _proc_status_kib('VmHWM') * 1024
    print(json.dumps(dict(peak=peak - base)))


def peak_memory(which, args, weights_path):
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_=str(MMAP_THRESHOLD))
    env['PYTHONPATH'] = os.pathsep.join(
        p for p in (ROOT, env.get('PYTHONPATH')) if p)
    cmd = [sys.executable, osp.abspath(__file__), '--memory-child', which,
           '--weights', weights_path, '--device', args.device,
           '--train-gts', str(args.train_gts), '--seed', str(args.seed),
           '--train-sizes'] + ['x'.join(map(str, s)) for s in args.train_sizes]
    if args.threads:
        cmd += ['--threads', str(args.threads)]
    if args.amp:
        cmd.append('--amp')
    out = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f'peak-memory child for {which} failed:\n'
                           f'{out.stderr[-3000:]}')
    return json.loads(out.stdout.strip().splitlines()[-1])['peak']


# -------------------------------------------------------------------- main
def print_table(rows, memory, args, device_name):
    print(f'\nmmdet 3.3 DETR vs mmdetr DETR on {device_name}, '
          f'{torch.get_num_threads()} threads, torch {torch.__version__}'
          f'{", AMP" if args.amp else ""}; {args.clock} time, medians of '
          f'{args.repeats} rounds ({args.match_repeats} for match/targets)')
    print(f'{"":18s}{"mmdet":>12s}{"mmdetr":>12s}{"mmdet/mmdetr":>14s}'
          f'{"spread":>16s}')
    for r in rows:
        print(f'{r["name"]:18s}{r["mmdet"]:10.1f}ms{r["mmdetr"]:10.1f}ms'
              f'{r["ratio"]:13.2f}x{r["spread"][0]:9.2f}-'
              f'{r["spread"][1]:.2f}')
    if memory is not None:
        ref, ours = memory
        print(f'{"train peak memory":18s}{ref / 2**20:9.0f}MiB'
              f'{ours / 2**20:9.0f}MiB{ref / ours:13.2f}x')


def quiet_mmengine():
    """Keep mmengine's per-parameter init and optimizer logs out of the
    table."""
    from mmengine.logging import MMLogger
    MMLogger.get_current_instance().setLevel(logging.ERROR)


def main(argv=None):
    args = parse_args(argv)
    quiet_mmengine()
    if args.memory_child:
        return memory_child(args)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = args.device
    sync = synchronizer(device)
    clock = time.perf_counter if args.clock == 'wall' else time.process_time
    torch.manual_seed(args.seed)

    ref, optim_cfg = build_one('mmdet', device)
    weights = {k: v.detach().cpu() for k, v in ref.state_dict().items()}
    ours, _ = build_one('mmdetr', device, weights)
    num_classes = ours.bbox_head.num_classes
    rows = []

    # train: the same preprocessed batch for both
    data = ref.data_preprocessor(
        raw_batch(args.train_sizes, args.train_gts, num_classes, args.seed),
        True)
    ref.train()
    ours.train()
    ref_optim = build_optim(ref, optim_cfg, args.amp, device)
    our_optim = build_optim(ours, optim_cfg, args.amp, device)
    rows.append(row('train', time_pair(
        (lambda: train_step(ref, ref_optim, data, args.amp, device),
         lambda: train_step(ours, our_optim, data, args.amp, device)),
        args.warmup, args.repeats, sync, clock)))

    # infer: one image
    ref.eval()
    ours.eval()
    data = ref.data_preprocessor(
        raw_batch([args.infer_size], 0, num_classes, args.seed), False)
    rows.append(row('infer', time_pair(
        (lambda: infer(ref, data), lambda: infer(ours, data)), args.warmup,
        args.repeats, sync, clock)))

    # match: synthetic head outputs of every decoder layer
    num_layers = ours.bbox_head.transformer.num_decoder_layers
    (cls, box, gt_bboxes, gt_labels, gt_instances,
     metas) = match_inputs(args, num_layers, ours.bbox_head.num_query,
                           num_classes, device)
    with torch.no_grad():
        rows.append(row('match', time_pair(
            (lambda: mmdet_match(ref.bbox_head, cls, box, gt_instances,
                                 metas),
             lambda: mmdetr_match(ours.bbox_head, cls, box, gt_bboxes,
                                  gt_labels, metas)),
            max(args.warmup, 1), args.match_repeats, sync, clock)))
        rows.append(row('targets', time_pair(
            (lambda: mmdet_targets(ref.bbox_head, cls, box, gt_instances,
                                   metas),
             lambda: mmdetr_targets(ours.bbox_head, cls, box, gt_bboxes,
                                    gt_labels, metas)),
            max(args.warmup, 1), args.match_repeats, sync, clock)))

    memory = None
    if not args.no_memory:
        del ref, ours, ref_optim, our_optim
        with tempfile.TemporaryDirectory() as tmp:
            path = osp.join(tmp, 'weights.pth')
            torch.save(weights, path)
            memory = (peak_memory('mmdet', args, path),
                      peak_memory('mmdetr', args, path))

    device_name = (torch.cuda.get_device_name(device) if
                   device.startswith('cuda') else 'CPU')
    print_table(rows, memory, args, device_name)
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(dict(rows=rows, memory=memory, args=vars(args)), f,
                      indent=1)
    speed = {r['name']: r['ratio'] for r in rows}
    print(f'speedup train={speed["train"]:.2f} infer={speed["infer"]:.2f} '
          f'match={speed["match"]:.2f}')


if __name__ == '__main__':
    main()
