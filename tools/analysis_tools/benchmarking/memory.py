# Copyright (c) mmdetr contributors. All rights reserved.
"""Peak memory of one training step, each model in a fresh child process.

A fresh process per model keeps either model's allocations (and the
allocator's caches) from counting for the other. The child builds the
batch, notes the memory in use, builds the model and its optimizer, runs
one warm-up step, resets the high-water mark, runs one step and reports the
high-water mark minus the memory noted before the model existed: weights,
gradients, optimizer state and the step's activations and temporaries.

On CUDA that is ``torch.cuda.max_memory_allocated`` (after
``reset_peak_memory_stats``) minus ``memory_allocated``. On CPU it is the
process's resident-set high-water mark (``VmHWM`` in ``/proc/self/status``,
reset by writing 5 to ``/proc/self/clear_refs``) minus its resident set; the
child runs with a fixed ``MALLOC_MMAP_THRESHOLD_`` so that glibc returns
freed tensors to the system instead of keeping them resident, making the
resident set track the live tensors (not bit-exact: allocator overhead and
small heap chunks count too, equally for both).
"""
import json
import os
import subprocess
import sys

import torch

from .models import ROOT, build_one, build_optim
from .workloads import synthetic_batch, train_step

# glibc: allocations above this many bytes are mmap()ed and unmapped on free
MMAP_THRESHOLD = 1 << 17
NUM_CLASSES = 80  # both R50 configs' (COCO)


def _proc_status_kib(field: str) -> int:
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith(field + ':'):
                return int(line.split()[1])
    raise RuntimeError(f'/proc/self/status has no {field}')


def memory_child(args) -> None:
    """Runs in the child: prints the train step's peak bytes as JSON."""
    device = args.device
    if args.threads:
        torch.set_num_threads(args.threads)
    weights = torch.load(args.weights, weights_only=True)
    data_raw = synthetic_batch(args.train_sizes, args.train_gts, NUM_CLASSES)
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
    optim_wrapper = build_optim(model, optim_cfg, args.amp, device,
                                ours=args.memory_child == 'mmdetr')
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


def peak_memory(which: str, args, weights_path: str, script: str) -> int:
    """Run ``script --memory-child which`` (the benchmark's entry point) in
    a fresh process and return its peak bytes."""
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_=str(MMAP_THRESHOLD))
    env['PYTHONPATH'] = os.pathsep.join(
        p for p in (ROOT, env.get('PYTHONPATH')) if p)
    cmd = [sys.executable, script, '--memory-child', which,
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
