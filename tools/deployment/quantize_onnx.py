# Copyright (c) mmdetr contributors. All rights reserved.
"""Quantize an exported DETR to int8 for ONNX Runtime on CPU (static, QDQ,
calibrated on the config's training images).

    python tools/deployment/quantize_onnx.py CONFIG detr.onnx \
        --output-file detr_int8.onnx [--calib-images 64] \
        [--op-types Conv]

The convolutions (``--op-types``, default ``Conv``: the backbone and the
input projection) get int8 weights (per output channel, symmetric) and
uint8 activations whose ranges are measured on ``--calib-images`` images
of the config's training set, passed through its test pipeline and data
preprocessor as ``tools/deployment/test.py`` passes the test images
(the training images, so that the evaluation images stay unseen). ONNX
Runtime runs such convolutions with integer kernels (VNNI on x86 CPUs that
have it); the rest of the graph (transformer, heads, detections) stays
float32. The result keeps the input/output names and the mmdetr metadata,
so ``tools/deployment/test.py`` and ``ORTDetector`` take it like the
float32 file. docs/deployment.md gives its speed and AP next to
float32's.
"""
import argparse
import os
import os.path as osp
import sys

from mmengine.config import Config, DictAction

from mmdetr.deploy.errors import require


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Quantize an exported DETR to int8 (static, QDQ)')
    parser.add_argument('config', help='the config the model was exported '
                        'from (its training set calibrates)')
    parser.add_argument('onnx_file', help='float32 ONNX model '
                        '(tools/deployment/pytorch2onnx.py)')
    parser.add_argument('--output-file', default='detr_int8.onnx',
                        help='where to write (default: detr_int8.onnx)')
    parser.add_argument('--calib-images', type=int, default=64,
                        help='training images that calibrate the '
                        'activation ranges (default: 64)')
    parser.add_argument('--op-types', nargs='+', default=['Conv'],
                        help='ONNX operators to quantize (default: Conv)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config keys')
    args = parser.parse_args(argv)
    if args.calib_images < 1:
        parser.error('--calib-images must be >= 1')
    return args


def calibration_batches(cfg: Config, num: int):
    """Up to ``num`` training images as the ONNX graph takes them: the
    test pipeline and the data preprocessor, one image per batch.

    Yields:
        dict: ``input`` (1, 3, H, W) float32 and ``img_shape`` (1, 2)
        int64, as numpy arrays.
    """
    import numpy as np
    import torch
    from mmengine.dataset import pseudo_collate
    from mmengine.registry import DATASETS, MODELS, init_default_scope
    init_default_scope(cfg.get('default_scope', 'mmdet'))
    dataset_cfg = cfg.train_dataloader.dataset.copy()
    dataset_cfg.pipeline = cfg.test_dataloader.dataset.pipeline
    dataset_cfg.pop('filter_cfg', None)
    dataset = DATASETS.build(dataset_cfg)
    preprocessor = MODELS.build(cfg.model.data_preprocessor)
    for i in range(min(num, len(dataset))):
        data = preprocessor(pseudo_collate([dataset[i]]), False)
        shape = [s.img_shape[:2] for s in data['data_samples']]
        yield dict(input=data['inputs'].numpy().astype(np.float32),
                   img_shape=torch.tensor(shape).numpy().astype(np.int64))


def quantize(cfg: Config, onnx_file: str, output_file: str,
             calib_images: int, op_types) -> str:
    """Static int8 quantization (QDQ) of ``op_types``; returns
    ``output_file``."""
    onnx = require('onnx')
    require('onnxruntime')
    from onnxruntime.quantization import (CalibrationDataReader,
                                          QuantFormat, QuantType,
                                          quantize_static)

    class Reader(CalibrationDataReader):

        def __init__(self):
            self.batches = calibration_batches(cfg, calib_images)

        def get_next(self):
            return next(self.batches, None)

    quantize_static(
        onnx_file, output_file, Reader(), quant_format=QuantFormat.QDQ,
        op_types_to_quantize=list(op_types), per_channel=True,
        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    # keep the mmdetr metadata (classes, preprocessing) of the source
    source = onnx.load(onnx_file, load_external_data=False)
    model = onnx.load(output_file)
    kept = {p.key for p in model.metadata_props}
    for prop in source.metadata_props:
        if prop.key not in kept:
            model.metadata_props.add(key=prop.key, value=prop.value)
    onnx.save(model, output_file)
    return output_file


def main(argv=None) -> int:
    args = parse_args(argv)
    for path, what in ((args.config, 'config'), (args.onnx_file, 'model')):
        if not osp.isfile(path):
            sys.exit(f'quantize_onnx: {what} not found: {path}')
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    out_dir = osp.dirname(osp.abspath(args.output_file))
    os.makedirs(out_dir, exist_ok=True)
    quantize(cfg, args.onnx_file, args.output_file, args.calib_images,
             args.op_types)
    ops = ', '.join(args.op_types)
    print(f'quantize_onnx: wrote {args.output_file} (int8 {ops}, '
          f'calibrated on {args.calib_images} training images)')
    return 0


if __name__ == '__main__':
    sys.exit(main())
