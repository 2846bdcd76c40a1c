# Copyright (c) mmdetr contributors. All rights reserved.
"""Export a trained DETR to ONNX (the whole model after data preprocessing,
post-processing included), optionally checking it against PyTorch.

    python tools/deployment/pytorch2onnx.py CONFIG CHECKPOINT \
        --output-file detr.onnx [--shape H W] [--dynamic-export] \
        [--verify] [--opset-version 17]

Inputs of the graph: ``input`` (N, 3, H, W), the padded normalised batch,
and ``img_shape`` (N, 2) int64, each image's valid (h, w); outputs: ``dets``
(N, K, 5) (x1, y1, x2, y2, score) in input pixels and ``labels`` (N, K).
Without ``--dynamic-export`` the graph takes exactly one (H, W) image.
``--verify`` runs the exported model with ONNX Runtime and mmdetr's
``predict`` on the same padded batches of random images (batch 1 at H x W,
and with ``--dynamic-export`` a batch of three different sizes), prints the
largest differences and exits with 1 if any exceeds 1e-4 (boxes relative to
the image size) or a label differs. See docs/deployment.md.
"""
import argparse
import os
import os.path as osp
import sys

from mmengine.config import Config, DictAction
from mmengine.registry import MODELS, init_default_scope

from mmdetr.checkpoints import load_checkpoint_file
from mmdetr.deploy.errors import ExportSettingError, require


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Export DETR to ONNX')
    parser.add_argument('config', help='config file')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument(
        '--output-file', default='detr.onnx',
        help='the ONNX file to write (default: detr.onnx)')
    parser.add_argument(
        '--shape', type=int, nargs=2, default=[800, 1333],
        metavar=('H', 'W'),
        help='input height and width of the example batch; the fixed size '
        'without --dynamic-export (default: 800 1333)')
    parser.add_argument(
        '--dynamic-export', action='store_true',
        help='one graph for any batch size and any padded H, W')
    parser.add_argument(
        '--verify', action='store_true',
        help='compare ONNX Runtime with PyTorch on random padded batches')
    parser.add_argument(
        '--opset-version', type=int, default=17,
        help='ONNX opset (>= 14; default: 17)')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='override config keys, e.g. model.test_cfg.max_per_img=50')
    return parser.parse_args(argv)


def build_detector(config: str, checkpoint: str, cfg_options=None):
    """The config's model with the checkpoint's weights (strict), and the
    config and the checkpoint's ``dataset_meta``."""
    for path, what in ((config, 'config'), (checkpoint, 'checkpoint')):
        if not osp.isfile(path):
            raise FileNotFoundError(f'pytorch2onnx: {what} not found: {path}')
    cfg = Config.fromfile(config)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    init_default_scope(cfg.get('default_scope', 'mmdet'))
    model = MODELS.build(cfg.model)
    ckpt = load_checkpoint_file(checkpoint)
    result = model.load_state_dict(ckpt.get('state_dict', ckpt), strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise RuntimeError(
            f'pytorch2onnx: {checkpoint} does not fit the model of {config}: '
            f'missing {result.missing_keys[:5]}, unexpected '
            f'{result.unexpected_keys[:5]} (first 5 of each)')
    meta = ckpt.get('meta', {}) if isinstance(ckpt, dict) else {}
    return model.eval(), cfg, (meta or {}).get('dataset_meta')


def verify_sizes(shape, dynamic: bool):
    """Batches to compare on: one image filling (H, W); with a dynamic
    graph also three images of different sizes, padded to the largest."""
    h, w = shape
    batches = [[(h, w)]]
    if dynamic:
        batches.append([(h, w), (max(1, h * 3 // 4), max(1, w * 5 // 8)),
                        (max(1, h // 2), max(1, w * 7 // 8))])
    return batches


def verify(model, onnx_file: str, shape, dynamic: bool) -> bool:
    """Print the largest differences per batch; True if all within 1e-4."""
    from mmdetr.deploy.ort_detector import make_session
    from mmdetr.deploy.verify import (TOLERANCE, compare_with_pytorch,
                                      within_tolerance)
    session = make_session(onnx_file)
    ok = True
    for sizes in verify_sizes(shape, dynamic):
        d = compare_with_pytorch(model, session, sizes)
        good = within_tolerance(d)
        ok &= good
        print(f'verify: batch of {len(sizes)} '
              f'({", ".join(f"{h}x{w}" for h, w in sizes)}): '
              f'{d["num_dets"]} detections compared, label mismatches '
              f'{d["label_mismatches"]}, max |score diff| '
              f'{d["max_score_diff"]:.2e}, max |box diff| / image size '
              f'{d["max_box_diff"]:.2e}: '
              f'{"OK" if good else "FAILED"} (tolerance {TOLERANCE:g})')
    return ok


def main(argv=None) -> int:
    args = parse_args(argv)
    from mmdetr.deploy.export import deploy_metadata, export_onnx
    try:
        require('onnx')
        if args.verify:
            require('onnxruntime')
        model, cfg, dataset_meta = build_detector(args.config,
                                                  args.checkpoint,
                                                  args.cfg_options)
        out_dir = osp.dirname(osp.abspath(args.output_file))
        os.makedirs(out_dir, exist_ok=True)
        export_onnx(
            model,
            args.output_file,
            shape=args.shape,
            dynamic=args.dynamic_export,
            opset_version=args.opset_version,
            metadata=deploy_metadata(cfg, dataset_meta))
    except (ImportError, FileNotFoundError, RuntimeError,
            ExportSettingError) as e:
        sys.exit(str(e))
    print(f'pytorch2onnx: wrote {args.output_file} '
          f'({"dynamic batch and size" if args.dynamic_export else "static"}'
          f' {args.shape[0]}x{args.shape[1]}, opset {args.opset_version})')
    if args.verify and not verify(model, args.output_file, args.shape,
                                  args.dynamic_export):
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
