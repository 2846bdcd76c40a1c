# Copyright (c) mmdetr contributors. All rights reserved.
"""Deployment: export DETR to ONNX and run it with ONNX Runtime.

``ORTDetector`` (and this package's import) needs no torch; the exporter,
the comparison with PyTorch and the runner model are imported on first use.
"""
from .errors import DeployMismatchError, ExportSettingError
from .ort_detector import ORTDetector

_LAZY = {
    'ExportableDETR': 'export',
    'export_onnx': 'export',
    'deploy_metadata': 'export',
    'check_exportable': 'export',
    'compare_with_pytorch': 'verify',
    'ORTDetectionModel': 'ort_model',
}

__all__ = ['ORTDetector', 'DeployMismatchError', 'ExportSettingError'
           ] + list(_LAZY)


def __getattr__(name):
    # torch-dependent parts load on first use: a serving process with only
    # onnxruntime can import this package
    if name in _LAZY:
        import importlib
        module = importlib.import_module(f'.{_LAZY[name]}', __name__)
        return getattr(module, name)
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
