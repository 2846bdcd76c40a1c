# Copyright (c) mmdetr contributors. All rights reserved.
"""Test (and evaluate) a checkpoint.

    python tools/test.py CONFIG CHECKPOINT --eval bbox
    python tools/test.py CONFIG CHECKPOINT --out results.pkl
    python tools/test.py CONFIG CHECKPOINT --format-only \
        --eval-options jsonfile_prefix=work_dirs/test_dev/detr
    python tools/test.py CONFIG CHECKPOINT --show-dir vis --show-score-thr 0.5
    python tools/test.py CONFIG CHECKPOINT --eval bbox --amp   # bfloat16 on
                                                # a CPU that has it, float16
                                                # (or --amp-dtype) on a GPU
    bash tools/dist_test.sh CONFIG CHECKPOINT 8 --eval bbox

``--eval bbox`` runs COCO box evaluation (pycocotools through mmdet's
CocoMetric) and prints the 12-line AP/AR table and the copypaste line;
``--eval segm`` adds COCO mask AP of the instance masks (the same metric).
``--eval pq`` runs COCO panoptic evaluation (mmdet's CocoPanopticMetric:
PQ, SQ, RQ for all, things and stuff) on ``pred_panoptic_seg``, with the
config's CocoPanopticMetric or one for the test dataset's panoptic json and
PNG folder (``data_prefix.seg``). Metrics combine: ``--eval bbox segm pq``.
Without ``--eval`` the config's ``test_evaluator`` runs.
"""
import argparse
import os
import os.path as osp
import sys

from mmengine.config import Config, ConfigDict, DictAction

from mmdetr.engine import build_runner, closing_process_group
from mmdetr.engine.amp import amp_test_config

# tools/ is not a package: its shared module is imported as a sibling, also
# when a tool is loaded by path (tests) rather than run as a script
sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
from _common import (add_amp_args, add_runner_args,  # noqa: E402
                     apply_amp_or_exit, load_config_or_exit)

# --eval name -> the metric that computes it
COCO_METRICS = ('bbox', 'segm')  # mmdet's CocoMetric
PANOPTIC_METRICS = ('pq', )  # mmdet's CocoPanopticMetric
EVAL_METRICS = COCO_METRICS + PANOPTIC_METRICS


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Test a detector')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--work-dir', help='where to write logs/metrics')
    parser.add_argument(
        '--eval',
        nargs='+',
        choices=EVAL_METRICS,
        help='evaluate these metrics on the test set: COCO "bbox", "segm" '
        '(instance masks), "pq" (panoptic quality)')
    parser.add_argument(
        '--out', help='dump the raw detections to this .pkl file')
    parser.add_argument(
        '--format-only',
        action='store_true',
        help='only write a COCO results json (e.g. for test-dev), no '
        'evaluation; set the file prefix with --eval-options '
        'jsonfile_prefix=PATH')
    parser.add_argument(
        '--eval-options',
        nargs='+',
        action=DictAction,
        default={},
        help='options for the evaluator, e.g. jsonfile_prefix=PATH '
        'classwise=True')
    parser.add_argument(
        '--show', action='store_true', help='show results in a window')
    parser.add_argument(
        '--show-dir', help='write images with the drawn detections here')
    parser.add_argument(
        '--show-score-thr',
        type=float,
        default=0.3,
        help='draw detections scoring at least this (default 0.3)')
    parser.add_argument(
        '--wait-time', type=float, default=2, help='seconds per shown image')
    add_amp_args(parser)
    add_runner_args(parser)
    args = parser.parse_args(argv)
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def _evaluators(cfg: Config) -> list:
    ev = cfg.get('test_evaluator')
    if ev is None:
        return []
    return list(ev) if isinstance(ev, (list, tuple)) else [ev]


def _configured(cfg: Config, type_name: str):
    """The config's test evaluator of type ``type_name``, or None."""
    for ev in _evaluators(cfg):
        if ev.get('type', '').split('.')[-1] == type_name:
            return ev
    return None


def _coco_metric(cfg: Config, metrics=('bbox', )) -> ConfigDict:
    """The config's CocoMetric, or one built for the test dataset."""
    ev = _configured(cfg, 'CocoMetric')
    if ev is not None:
        return ev
    dataset = cfg.test_dataloader.dataset
    ann_file = dataset.get('ann_file')
    if not ann_file:
        sys.exit(f'test.py: --eval {" ".join(metrics)} needs '
                 'test_dataloader.dataset.ann_file (a COCO json) in the '
                 'config')
    return ConfigDict(
        type='CocoMetric',
        ann_file=osp.join(dataset.get('data_root', ''), ann_file))


def _panoptic_metric(cfg: Config) -> ConfigDict:
    """The config's CocoPanopticMetric, or one built for the test dataset
    (its panoptic json and PNG folder)."""
    ev = _configured(cfg, 'CocoPanopticMetric')
    if ev is not None:
        return ev
    dataset = cfg.test_dataloader.dataset
    ann_file = dataset.get('ann_file')
    seg = (dataset.get('data_prefix') or {}).get('seg')
    if not ann_file or not seg:
        sys.exit('test.py: --eval pq needs a CocoPanopticMetric in '
                 'test_evaluator, or test_dataloader.dataset.ann_file (a COCO '
                 'panoptic json) and data_prefix.seg (its PNG folder) in the '
                 'config')
    root = dataset.get('data_root', '')
    return ConfigDict(
        type='CocoPanopticMetric',
        ann_file=osp.join(root, ann_file),
        seg_prefix=osp.join(root, seg))


def build_cfg(args) -> Config:
    if not osp.isfile(args.checkpoint):
        sys.exit(f'test.py: checkpoint file not found: {args.checkpoint}')
    if args.out is not None and not args.out.endswith(('.pkl', '.pickle')):
        sys.exit(f'test.py: --out must end with .pkl or .pickle, got '
                 f'{args.out}')
    if args.format_only and args.eval:
        sys.exit('test.py: --format-only writes results without '
                 'evaluating; do not combine it with --eval')

    cfg = load_config_or_exit('test.py', args.config, args.cfg_options,
                              args.work_dir)
    cfg.load_from = args.checkpoint
    cfg.resume = False
    apply_amp_or_exit('test.py', cfg, args, amp_test_config)

    options = dict(args.eval_options)
    if 'jsonfile_prefix' in options:  # the mmdet 2.x name
        options['outfile_prefix'] = options.pop('jsonfile_prefix')
    if args.format_only:
        metric = _coco_metric(cfg)
        metric.update(options)
        metric.format_only = True
        metric.setdefault('outfile_prefix', osp.join(cfg.work_dir, 'results'))
        cfg.test_evaluator = [metric]
    elif args.eval:
        evaluators = []
        coco = [m for m in EVAL_METRICS if m in args.eval and
                m in COCO_METRICS]
        if coco:
            metric = _coco_metric(cfg, coco)
            metric.update(options)
            metric.metric = coco
            metric.format_only = False
            evaluators.append(metric)
        if 'pq' in args.eval:
            metric = _panoptic_metric(cfg)
            metric.update(options)
            metric.format_only = False
            evaluators.append(metric)
        cfg.test_evaluator = evaluators
    elif options:
        for ev in _evaluators(cfg):
            ev.update(options)

    if args.out is not None:
        cfg.test_evaluator = _evaluators(cfg) + [
            ConfigDict(type='DumpDetResults', out_file_path=args.out)
        ]

    if args.show or args.show_dir:
        hook = cfg.default_hooks.get('visualization')
        if hook is None:
            sys.exit('test.py: --show/--show-dir need the '
                     'default_hooks.visualization hook in the config')
        hook.draw = True
        hook.show = args.show
        hook.wait_time = args.wait_time
        hook.score_thr = args.show_score_thr
        if args.show_dir:
            hook.test_out_dir = osp.abspath(args.show_dir)
    return cfg


def main(argv=None) -> None:
    args = parse_args(argv)
    cfg = build_cfg(args)
    runner = build_runner(cfg, args.launcher)
    with closing_process_group():
        runner.test()


if __name__ == '__main__':
    main()
