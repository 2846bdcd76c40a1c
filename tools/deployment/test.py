# Copyright (c) mmdetr contributors. All rights reserved.
"""Evaluate an exported DETR on the config's test set, with ONNX Runtime.

    python tools/deployment/test.py CONFIG detr.onnx --backend onnxruntime \
        --eval bbox [--num-threads N] [tools/test.py's other options]

The config's test dataloader, data preprocessor and evaluator (mmdet's
CocoMetric with ``--eval bbox``) run as in ``tools/test.py``, which this
tool reuses; only the model is the ONNX file, run by ONNX Runtime. It prints
the same COCO table and ``bbox_mAP_copypaste`` line. A model exported from
another config (number of classes, channel order or normalisation) is
refused, naming both files.
"""
import argparse
import importlib.util
import os.path as osp
import sys

from mmengine.config import ConfigDict

BACKENDS = ('onnxruntime', )
_HERE = osp.dirname(osp.abspath(__file__))


def _test_tool():
    """tools/test.py as a module (tools/ is not a package)."""
    spec = importlib.util.spec_from_file_location(
        'mmdetr_tools_test', osp.join(osp.dirname(_HERE), 'test.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def parse_args(argv=None):
    """``--backend`` and ``--num-threads`` here; CONFIG, the model and every
    other option as ``tools/test.py`` (its CHECKPOINT is the ONNX file)."""
    parser = argparse.ArgumentParser(
        description='Evaluate an ONNX model exported by pytorch2onnx.py; '
        "takes tools/test.py's options too (--eval, --out, --show-dir, "
        '--cfg-options ...)')
    parser.add_argument('--backend', choices=BACKENDS, default='onnxruntime',
                        help='inference backend (default: onnxruntime)')
    parser.add_argument('--num-threads', type=int, default=None,
                        help='ONNX Runtime intra-op threads (default: its '
                        'own choice)')
    own, rest = parser.parse_known_args(argv)
    if any(a in ('-h', '--help') for a in rest):
        parser.print_help()
    tool = _test_tool()
    args = tool.parse_args(rest)
    args.backend, args.num_threads = own.backend, own.num_threads
    return tool, args


def main(argv=None) -> None:
    tool, args = parse_args(argv)
    onnx_file = args.checkpoint
    if not osp.isfile(onnx_file):
        sys.exit(f'deployment/test.py: ONNX model not found: {onnx_file}')
    from mmdetr.deploy.errors import DeployMismatchError
    from mmdetr.deploy.ort_detector import (check_io, check_matches_config,
                                            make_session, read_metadata)
    from mmdetr.engine.launcher import build_runner
    cfg = tool.build_cfg(args)
    try:
        session = make_session(onnx_file)
        check_io(session, onnx_file)
        check_matches_config(read_metadata(session, onnx_file), cfg.model,
                             onnx_file, args.config)
    except (ImportError, DeployMismatchError) as e:
        sys.exit(f'deployment/test.py: {e}')
    del session
    import mmdetr.deploy.ort_model  # noqa: F401  registers the model
    cfg.load_from = None  # the weights are in the graph
    cfg.model = ConfigDict(
        _scope_='mmdetr',
        type='ORTDetectionModel',
        onnx_file=onnx_file,
        data_preprocessor=cfg.model.get('data_preprocessor'),
        num_threads=args.num_threads)
    runner = build_runner(cfg, 'none')
    runner.test()


if __name__ == '__main__':
    main()
