# Copyright (c) mmdetr contributors. All rights reserved.
"""When did a run first reach a validation metric? Compare runs by it.

    python tools/analysis_tools/time_to_metric.py \\
        WORK_DIR/<timestamp>/vis_data/scalars.json [more.json ...] \\
        [--key bbox_mAP_50] [--target 0.5] [--iters-per-epoch N]

For each log (mmengine's json scalar log), prints the first validation at
which ``--key`` is >= ``--target``, its step (the epoch for epoch-based
training, the iteration for iteration-based), the best value and where it
was reached. ``--iters-per-epoch`` turns epochs into iterations. A key
matches exactly or by its last ``/`` part (``bbox_mAP_50`` finds
``coco/bbox_mAP_50``). Used to measure fine-tuning against training from
scratch (docs/finetune.md).
"""
import argparse
import json
import os.path as osp
import sys
from typing import List, Optional, Tuple


def val_series(path: str, key: str) -> List[Tuple[int, float]]:
    """``(step, value)`` of every validation record holding ``key``.

    Raises:
        FileNotFoundError: no such log.
        ValueError: a line is not JSON (the message names file and line).
    """
    if not osp.isfile(path):
        raise FileNotFoundError(f'time_to_metric: no such log: {path}')
    series = []
    with open(path) as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(
                    f'time_to_metric: {path} line {n} is not JSON: {e}')
            for name, value in record.items():
                if '/' in name and (name == key
                                    or name.rsplit('/', 1)[1] == key):
                    series.append((int(record.get('step', len(series) + 1)),
                                   float(value)))
                    break
    return series


def first_reaching(series: List[Tuple[int, float]],
                   target: float) -> Optional[Tuple[int, float]]:
    """The first ``(step, value)`` with value >= ``target``, or None."""
    return next(((s, v) for s, v in series if v >= target), None)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='First validation step at which a metric reaches a '
        'target, per log')
    parser.add_argument('logs', nargs='+', help='scalars.json files')
    parser.add_argument('--key', default='bbox_mAP_50',
                        help='validation metric (default: bbox_mAP_50)')
    parser.add_argument('--target', type=float, default=0.5,
                        help='value to reach (default: 0.5)')
    parser.add_argument('--iters-per-epoch', type=int,
                        help='also print steps as iterations (epoch-based '
                        'logs): step x this')
    args = parser.parse_args(argv)
    if args.iters_per_epoch is not None and args.iters_per_epoch < 1:
        parser.error(f'--iters-per-epoch must be >= 1, got '
                     f'{args.iters_per_epoch}')
    return args


def main(argv=None) -> int:
    args = parse_args(argv)

    def fmt(step):
        if args.iters_per_epoch:
            return f'step {step} ({step * args.iters_per_epoch} iterations)'
        return f'step {step}'

    for path in args.logs:
        try:
            series = val_series(path, args.key)
        except (FileNotFoundError, ValueError) as e:
            sys.exit(str(e))
        if not series:
            sys.exit(f'time_to_metric: {path} has no validation records '
                     f'with {args.key!r}')
        best_step, best = max(series, key=lambda sv: sv[1])
        hit = first_reaching(series, args.target)
        reached = (f'{args.key} >= {args.target} first at {fmt(hit[0])} '
                   f'({hit[1]:.3f})' if hit else
                   f'{args.key} never reached {args.target}')
        print(f'{path}: {reached}; best {best:.3f} at {fmt(best_step)}; '
              f'{len(series)} validations')
    return 0


if __name__ == '__main__':
    sys.exit(main())
