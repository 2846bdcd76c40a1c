# Copyright (c) mmdetr contributors. All rights reserved.
"""Plot training curves and val metrics from mmengine's json scalar logs.

    python tools/analysis_tools/analyze_logs.py plot_curve \
        WORK_DIR/<timestamp>/vis_data/scalars.json [more.json ...] \
        [--keys loss loss_cls bbox_mAP_50] [--out curves.png]
    python tools/analysis_tools/analyze_logs.py cal_train_time LOG.json

mmengine writes one json object per line: training lines carry the losses,
``lr``, ``time``, ``epoch``, ``iter`` and ``step`` (the global iteration);
validation lines carry ``coco/bbox_mAP``-style metrics and ``step`` (the
epoch, or the iteration for iteration-based training). ``plot_curve`` draws
training keys against the iteration and validation keys against ``step`` in
a second panel (``--val-x iter``: against the training iteration reached
when it ran, so that runs with epochs of different lengths compare). A key
matches exactly or by its last ``/`` part, so ``bbox_mAP`` finds
``coco/bbox_mAP`` as in mmdet's tool.
"""
import argparse
import json
import os
import os.path as osp
import sys
from typing import Dict, List

import numpy as np

DEFAULT_KEYS = ['loss', 'loss_cls', 'loss_bbox', 'loss_iou', 'bbox_mAP',
                'bbox_mAP_50']


def load_json_log(path: str) -> Dict[str, List[dict]]:
    """Split a json scalar log into training and validation records.

    Returns:
        dict: ``train``: records with an ``iter`` key; ``val``: records with
        a ``prefix/metric`` key, each with ``train_step``: the last training
        iteration logged before it. Other lines (one-key lines) are dropped.
    """
    if not osp.isfile(path):
        raise FileNotFoundError(f'analyze_logs: no such log: {path}')
    train, val = [], []
    with open(path) as f:
        for lineno, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(
                    f'analyze_logs: {path}:{lineno} is not json: {e}') from e
            if 'step' not in record:
                continue
            if any('/' in k for k in record):
                record['train_step'] = train[-1]['step'] if train else 0
                val.append(record)
            elif 'iter' in record or 'loss' in record:
                train.append(record)
    return dict(train=train, val=val)


def _find_key(records: List[dict], key: str):
    """The key of ``records`` named ``key`` exactly or by its last '/' part;
    None if absent."""
    names = {k for r in records for k in r}
    if key in names:
        return key
    matches = sorted(k for k in names if k.split('/')[-1] == key)
    return matches[0] if matches else None


def _series(records: List[dict], key: str, x: str = 'step'):
    xs = [r[x] for r in records if key in r]
    ys = [r[key] for r in records if key in r]
    return np.asarray(xs), np.asarray(ys, dtype=float)


def plot_curve(logs: Dict[str, Dict[str, List[dict]]],
               keys: List[str],
               out: str,
               title: str = None,
               legend: List[str] = None,
               val_x: str = 'step') -> str:
    """Draw the curves of ``keys`` from every log into ``out`` (a PNG).

    Training keys go to the left panel against the iteration, validation
    keys to a panel of their own each, against the epoch (or iteration) of
    the log's ``step``, or with ``val_x='iter'`` against the training
    iteration reached.

    Raises:
        KeyError: a key is in none of the logs (the message lists the keys
            there are).
    """
    import matplotlib
    matplotlib.use('Agg')  # files only; no display is needed
    import matplotlib.pyplot as plt

    names = list(logs)
    if legend is not None and len(legend) != len(names):
        raise ValueError(f'analyze_logs: --legend has {len(legend)} names '
                         f'for {len(names)} logs')
    labels = legend or [osp.basename(osp.dirname(osp.dirname(n))) or n
                        for n in names]
    train_plots, val_plots = [], {}
    for key in keys:
        found = False
        for name, label in zip(names, labels):
            for part in ('train', 'val'):
                real = _find_key(logs[name][part], key)
                if real is not None:
                    x = 'train_step' if part == 'val' and \
                        val_x == 'iter' else 'step'
                    xs, ys = _series(logs[name][part], real, x)
                    plots = train_plots if part == 'train' else \
                        val_plots.setdefault(real, [])
                    plots.append((xs, ys, f'{label}: {real}'
                                  if len(names) > 1 else real))
                    found = True
        if not found:
            available = sorted({
                k
                for log in logs.values() for part in log.values()
                for r in part for k in r
            })
            raise KeyError(f'analyze_logs: key {key!r} is in none of '
                           f'{names}; keys there: {available}')

    # one panel for the training keys, one per validation key: their
    # scales differ (an AP in [0, 1], a count of images)
    panels = ([(None, train_plots)] if train_plots else []) + list(
        val_plots.items())
    fig, axes = plt.subplots(
        1, len(panels), figsize=(6 * len(panels), 4.5), squeeze=False)
    by_epoch = any('epoch' in r for log in logs.values()
                   for r in log['train'])
    for ax, (val_key, plots) in zip(axes[0], panels):
        is_val = val_key is not None
        for xs, ys, label in plots:
            if is_val:
                ax.plot(xs, ys, marker='o', label=label)
            else:
                ax.plot(xs, ys, linewidth=0.8, label=label)
        if is_val:
            ax.set_xlabel('epoch' if by_epoch and val_x == 'step' else 'iter')
            ax.set_title(f'validation: {val_key}')
        else:
            ax.set_xlabel('iter')
            ax.set_title('training')
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    out_dir = osp.dirname(osp.abspath(out))
    os.makedirs(out_dir, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def cal_train_time(logs: Dict[str, Dict[str, List[dict]]]) -> None:
    """Print the mean seconds per training iteration of every log (the first
    logged window of each epoch is left out: it includes warm-up)."""
    for name, log in logs.items():
        by_epoch = {}
        for r in log['train']:
            if 'time' in r:
                by_epoch.setdefault(r.get('epoch', 0), []).append(r['time'])
        if not by_epoch:
            raise KeyError(f'analyze_logs: {name} has no "time" in its '
                           'training records')
        means = [np.mean(t[1:] if len(t) > 1 else t)
                 for t in by_epoch.values()]
        print(f'{name}: average iter time {np.mean(means):.4f} s/iter over '
              f'{len(means)} epoch(s) (slowest {max(means):.4f}, fastest '
              f'{min(means):.4f})')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Analyze json logs')
    sub = parser.add_subparsers(dest='task', required=True)
    plt_parser = sub.add_parser('plot_curve', help='plot curves into a PNG')
    plt_parser.add_argument('json_logs', nargs='+', help='json scalar logs')
    plt_parser.add_argument(
        '--keys', nargs='+', default=None,
        help=f'keys to plot (default: those of {" ".join(DEFAULT_KEYS)} '
        'the logs have)')
    plt_parser.add_argument('--title', help='title of the figure')
    plt_parser.add_argument('--legend', nargs='+', help='one name per log')
    plt_parser.add_argument(
        '--out', default='curves.png', help='PNG to write (curves.png)')
    plt_parser.add_argument(
        '--val-x',
        choices=('step', 'iter'),
        default='step',
        help='x of validation metrics: the log\'s step (the epoch in epoch-'
        'based training; default) or the training iteration reached')
    time_parser = sub.add_parser(
        'cal_train_time', help='mean time per training iteration')
    time_parser.add_argument('json_logs', nargs='+', help='json scalar logs')
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    for path in args.json_logs:
        if not path.endswith('.json'):
            sys.exit(f'analyze_logs: expected a .json log, got {path} (use '
                     'WORK_DIR/<timestamp>/vis_data/scalars.json)')
    try:
        logs = {path: load_json_log(path) for path in args.json_logs}
        if args.task == 'plot_curve':
            keys = args.keys
            if keys is None:
                # The defaults that the logs have (no val keys when training
                # ran without validation); a key asked for by name must exist.
                keys = [k for k in DEFAULT_KEYS if any(
                    _find_key(log[part], k) for log in logs.values()
                    for part in log)]
                if not keys:
                    raise KeyError(f'analyze_logs: none of {DEFAULT_KEYS} is '
                                   f'in {args.json_logs}; pass --keys')
            out = plot_curve(logs, keys, args.out, args.title, args.legend,
                             args.val_x)
            print(f'analyze_logs: wrote {out}')
        else:
            cal_train_time(logs)
    except (FileNotFoundError, KeyError, ValueError) as e:
        sys.exit(e.args[0] if e.args else str(e))
    return 0


if __name__ == '__main__':
    sys.exit(main())
