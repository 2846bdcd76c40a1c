# Copyright (c) mmdetr contributors. All rights reserved.
"""Detect objects in one image and draw the boxes with labels and scores.

    python tools/demo/image_demo.py IMAGE CONFIG CHECKPOINT \
        [--out-file result.png] [--score-thr 0.3] [--device cpu] [--amp]

The model is built from CONFIG (its ``custom_imports`` load mmdetr), the
weights come from CHECKPOINT (loaded with ``weights_only=True`` and mmdetr's
allowlist, so a checkpoint cannot run code), and the class names from the
checkpoint's ``dataset_meta`` (written by training) or else the config's
``metainfo``. Inference is mmdet's ``inference_detector``; drawing is mmdet's
``DetLocalVisualizer``, with images under ``--min-size`` pixels enlarged so
that labels stay readable. ``--amp`` runs the model under mixed precision
(:func:`mmdetr.engine.amp_autocast`: bfloat16 on a CPU with bfloat16
instructions, float16 or ``--amp-dtype`` on a GPU).
"""
import argparse
import os
import os.path as osp
import sys
from contextlib import nullcontext

import mmcv
import torch
from mmdet.apis import inference_detector
from mmdet.registry import MODELS
from mmengine.config import Config
from mmengine.registry import init_default_scope

from mmdetr.checkpoints import load_checkpoint_file
from mmdetr.engine.amp import AmpUnsupportedError, amp_autocast, check_amp
from mmdetr.visualization import DetLocalVisualizer


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Detect objects in one image and draw them')
    parser.add_argument('img', help='image file')
    parser.add_argument('config', help='config file')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument(
        '--out-file',
        default='result.png',
        help='where to write the drawn image (default: result.png)')
    parser.add_argument(
        '--score-thr',
        type=float,
        default=0.3,
        help='draw detections scoring at least this (default: 0.3)')
    parser.add_argument(
        '--min-size',
        type=int,
        default=480,
        help='draw images whose shorter side is smaller enlarged by an '
        'integer factor, boxes too (default: 480; 0 = as they are)')
    parser.add_argument(
        '--device',
        default='cuda:0' if torch.cuda.is_available() else 'cpu',
        help='device, e.g. cpu or cuda:0 (default: cuda:0 if there is '
        'one, else cpu)')
    parser.add_argument(
        '--amp',
        action='store_true',
        help='mixed precision: bfloat16 on a CPU with bfloat16 '
        'instructions, float16 on a GPU')
    parser.add_argument(
        '--amp-dtype', choices=('float16', 'bfloat16'), default=None,
        help='autocast dtype with --amp (default: the device\'s)')
    return parser.parse_args(argv)


def _dataset_meta(cfg: Config, checkpoint: dict) -> dict:
    """Class names (and palette) from the checkpoint, else the config."""
    meta = checkpoint.get('meta', {}) if isinstance(checkpoint, dict) else {}
    if meta.get('dataset_meta'):
        return dict(meta['dataset_meta'])
    for loader in ('test_dataloader', 'val_dataloader', 'train_dataloader'):
        dataset = cfg.get(loader, {}).get('dataset', {})
        if dataset.get('metainfo', {}).get('classes'):
            return dict(dataset['metainfo'])
    raise KeyError('image_demo: no class names in the checkpoint meta '
                   '(dataset_meta) nor in the config (*_dataloader.dataset.'
                   'metainfo.classes)')


def init_model(config: str, checkpoint: str, device: str):
    """Build the detector of ``config`` with the weights of ``checkpoint``.

    Raises:
        FileNotFoundError: a file is missing.
        RuntimeError: the checkpoint's weights do not fit the model.
    """
    for path, what in ((config, 'config'), (checkpoint, 'checkpoint')):
        if not osp.isfile(path):
            raise FileNotFoundError(f'image_demo: {what} not found: {path}')
    cfg = Config.fromfile(config)
    init_default_scope(cfg.get('default_scope', 'mmdet'))
    model = MODELS.build(cfg.model)
    ckpt = load_checkpoint_file(checkpoint)
    state_dict = ckpt.get('state_dict', ckpt)
    result = model.load_state_dict(state_dict, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise RuntimeError(
            f'image_demo: {checkpoint} does not fit the model of {config}: '
            f'missing {result.missing_keys[:5]}, unexpected '
            f'{result.unexpected_keys[:5]} (first 5 of each)')
    model.cfg = cfg  # inference_detector reads the test pipeline from it
    model.dataset_meta = _dataset_meta(cfg, ckpt)
    return model.to(device).eval()


def main(argv=None) -> int:
    args = parse_args(argv)
    if not osp.isfile(args.img):
        sys.exit(f'image_demo: image not found: {args.img}')
    if not 0 <= args.score_thr <= 1:
        sys.exit(f'image_demo: --score-thr must be in [0, 1], got '
                 f'{args.score_thr}')
    if args.amp_dtype is not None and not args.amp:
        sys.exit('image_demo: --amp-dtype needs --amp')
    if args.amp:
        try:
            check_amp(args.device, args.amp_dtype)
        except AmpUnsupportedError as e:
            sys.exit(f'image_demo: --amp: {e}')
    try:
        model = init_model(args.config, args.checkpoint, args.device)
    except (FileNotFoundError, KeyError, RuntimeError) as e:
        sys.exit(str(e.args[0]) if e.args else str(e))
    with amp_autocast(args.device, args.amp_dtype) if args.amp \
            else nullcontext():
        result = inference_detector(model, args.img)

    visualizer = DetLocalVisualizer(
        name='mmdetr_image_demo', min_size=args.min_size)
    visualizer.dataset_meta = model.dataset_meta
    image = mmcv.imread(args.img, channel_order='rgb')
    out_dir = osp.dirname(osp.abspath(args.out_file))
    os.makedirs(out_dir, exist_ok=True)
    visualizer.add_datasample(
        'result',
        image,
        data_sample=result,
        draw_gt=False,
        show=False,
        pred_score_thr=args.score_thr,
        out_file=args.out_file)
    pred = result.pred_instances
    keep = pred.scores >= args.score_thr
    classes = model.dataset_meta['classes']
    for box, score, label in zip(pred.bboxes[keep].tolist(),
                                 pred.scores[keep].tolist(),
                                 pred.labels[keep].tolist()):
        print(f'{classes[label]:>12s} {score:.2f} '
              f'[{", ".join(f"{v:.1f}" for v in box)}]')
    print(f'image_demo: {int(keep.sum())} detections >= {args.score_thr} '
          f'drawn into {args.out_file}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
