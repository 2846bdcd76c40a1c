# Copyright (c) mmdetr contributors. All rights reserved.
"""How it is timed: both models' steps in alternating rounds, one call per
measurement, results as ``torch.utils.benchmark.Measurement``.

Why not ``Timer.timeit`` / ``blocked_autorange``: they time one statement
many times in a row (with warm-up calls of their own), so a slow phase of a
shared machine would land on one model only, and a 2-second training step
would run several times per measurement. Here each round runs both steps
once, alternating which goes first, and the per-round ratios give the noise.
"""
import time
from typing import Callable, Sequence, Tuple

import torch
from torch.utils.benchmark import Measurement, TaskSpec
from torch.utils.benchmark import timer as synchronized_wall_clock

MODELS = ('mmdet', 'mmdetr')


def clock(kind: str) -> Callable[[], float]:
    """The clock of ``--clock``.

    ``wall``: elapsed seconds, through ``torch.utils.benchmark``'s timer,
    which synchronises the accelerator (if any) before reading the time, so
    a step's queued GPU work counts. ``cpu``: the process's CPU seconds (all
    its threads), which on a CPU shared with other jobs measures the work
    rather than the waiting.
    """
    if kind == 'wall':
        return synchronized_wall_clock
    if kind == 'cpu':
        return time.process_time
    raise ValueError(f'clock must be wall or cpu, got {kind!r}')


def time_pair(steps: Sequence[Callable[[], object]],
              warmup: int,
              repeats: int,
              clock: Callable[[], float] = synchronized_wall_clock,
              name: str = '') -> Tuple[Measurement, Measurement]:
    """Seconds per call of each of the two ``steps`` (mmdet's, mmdetr's).

    ``warmup`` untimed rounds, then ``repeats`` rounds; round ``r`` runs
    the first step first when ``r`` is even, the second first when odd.

    Returns:
        tuple[Measurement, Measurement]: one time per round each
        (``raw_times``, seconds), labelled ``name`` / mmdet or mmdetr.
    """
    for _ in range(warmup):
        for step in steps:
            step()
    times = ([], [])
    for r in range(repeats):
        for k in ((0, 1) if r % 2 == 0 else (1, 0)):
            start = clock()
            steps[k]()
            times[k].append(clock() - start)
    return tuple(
        Measurement(
            number_per_run=1,
            raw_times=t,
            task_spec=TaskSpec(
                stmt=name,
                setup='',
                label=name,
                sub_label=model,
                num_threads=torch.get_num_threads()))
        for t, model in zip(times, MODELS))


def compare(name: str, measurements: Tuple[Measurement,
                                           Measurement]) -> dict:
    """A timed row: medians (ms), their ratio mmdet/mmdetr (> 1: mmdetr is
    faster) and ``spread``, the lowest and highest per-round ratio."""
    ref, ours = measurements
    ratios = sorted(a / b for a, b in zip(ref.times, ours.times))
    ref_ms, our_ms = ref.median * 1e3, ours.median * 1e3
    return dict(
        name=name,
        mmdet=ref_ms,
        mmdetr=our_ms,
        ratio=ref_ms / our_ms,
        spread=(ratios[0], ratios[-1]),
        rounds_ms=([t * 1e3 for t in ref.times],
                   [t * 1e3 for t in ours.times]))
