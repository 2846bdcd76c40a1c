# Copyright (c) mmdetr contributors. All rights reserved.
"""Errors of the deployment tools, and the optional-dependency import.

Torch-free: imported by the ONNX Runtime detector in serving processes.
"""
import importlib


class ExportSettingError(ValueError):
    """A model or export setting the ONNX graph cannot hold."""


class DeployMismatchError(ValueError):
    """An ONNX model that does not fit the config (or input) it is used
    with."""


_INSTALL = {
    'onnx': 'onnx',
    'onnxruntime': 'onnxruntime',
}


def require(module: str):
    """Import an optional dependency, or say which package to install.

    Raises:
        ImportError: naming the pip package and requirements/deploy.txt.
    """
    try:
        return importlib.import_module(module)
    except ImportError as e:
        package = _INSTALL.get(module, module)
        raise ImportError(
            f'mmdetr deployment needs the "{package}" package: pip install '
            f'{package} (or pip install -r requirements/deploy.txt); '
            f'importing {module} failed: {e}') from e
