# Copyright (c) mmdetr contributors. All rights reserved.
"""Tests of features that need a newer torch (or transformers) than the
oldest supported one skip there, saying which version they need."""
import importlib.util

import pytest
import torch

from mmdetr.supported import TRANSFORMERS5_TORCH, release


def torch_older_than(version: str) -> bool:
    pad = lambda v: v + (0, ) * (3 - len(v))  # noqa: E731
    return pad(release(torch.__version__)) < pad(release(version))


def requires_torch(version: str, what: str):
    """A mark: skip unless torch >= ``version``, naming ``what`` needs it
    and the installed torch."""
    return pytest.mark.skipif(
        torch_older_than(version),
        reason=f'{what} needs torch >= {version}; this is torch '
        f'{torch.__version__}')


def import_transformers():
    """``transformers``, or a skip (of the calling test, or module when
    called at import) saying why it is missing: transformers 5.x needs
    torch >= 2.6 (make install leaves it out below)."""
    if torch_older_than(TRANSFORMERS5_TORCH):
        pytest.skip(f'Hugging Face interop needs transformers 5.x, which '
                    f'needs torch >= {TRANSFORMERS5_TORCH}; this is torch '
                    f'{torch.__version__}', allow_module_level=True)
    if importlib.util.find_spec('transformers') is None:
        pytest.skip('transformers is not installed: pip install -r '
                    'requirements/hf.txt', allow_module_level=True)
    import transformers
    return transformers
