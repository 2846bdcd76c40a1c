# Copyright (c) mmdetr contributors. All rights reserved.
"""The versions mmdetr supports, and the check ``import mmdetr`` makes.

One table, :data:`SUPPORTED`, read by ``setup.py`` (``python_requires`` and
``install_requires``), by ``make install`` and by the check below. The
versions each range was tested with are listed in docs/install.md.

The check reads the installed versions from the packages' metadata (nothing
is imported) and refuses a version outside its range with an error that
names the installed and the supported versions, as mmdet does for mmcv. Set
``MMDETR_SKIP_VERSION_CHECK=1`` to turn the error into a warning (a newer
torch than the tested ones, say); a package that is not installed is not
checked (a serving process may have only onnxruntime).
"""
import importlib
import os
import re
import sys
import warnings
from importlib import metadata
from typing import Dict, List, Optional, Tuple

#: package -> (lowest supported, first unsupported) release; ``python`` is
#: the interpreter
SUPPORTED: Dict[str, Tuple[str, str]] = {
    'python': ('3.10', '3.13'),
    'torch': ('2.1', '2.15'),
    'mmcv': ('2.1.0', '2.2.0'),
    'mmengine': ('0.10.0', '0.11.0'),
    'mmdet': ('3.3.0', '3.4.0'),
    'numpy': ('1.24', '3'),
}

#: torch releases below this one were compiled against NumPy 1.x and fail
#: with NumPy 2 (``A module that was compiled using NumPy 1.x cannot be run
#: in NumPy 2``)
TORCH_WITH_NUMPY2 = '2.3'

SKIP_ENV = 'MMDETR_SKIP_VERSION_CHECK'

#: transformers 5.x disables itself below this torch (its classes are then
#: left undefined)
TRANSFORMERS5_TORCH = '2.6'


class UnsupportedVersionError(ImportError):
    """An installed package (or Python) is outside mmdetr's supported
    range."""


def release(version: str) -> Tuple[int, ...]:
    """The numeric release of a version string: ``'2.13.0+cpu'`` ->
    ``(2, 13, 0)``, ``'2.15.0a0+git12'`` -> ``(2, 15, 0)``.

    Raises:
        ValueError: ``version`` does not start with a number.
    """
    m = re.match(r'\d+(\.\d+)*', version.strip())
    if m is None:
        raise ValueError(f'not a version: {version!r}')
    return tuple(int(x) for x in m.group(0).split('.'))


def _padded(v: Tuple[int, ...], n: int = 3) -> Tuple[int, ...]:
    return v + (0, ) * (n - len(v))


def in_range(version: str, lowest: str, first_unsupported: str) -> bool:
    """``lowest <= version < first_unsupported``, by release numbers."""
    v = _padded(release(version))
    return _padded(release(lowest)) <= v < _padded(
        release(first_unsupported))


def requirement(name: str) -> str:
    """The pip requirement of ``name``'s range: ``'mmcv>=2.1.0,<2.2.0'``."""
    lo, hi = SUPPORTED[name]
    return f'{name}>={lo},<{hi}'


def installed_versions() -> Dict[str, Optional[str]]:
    """name -> installed version (None: not installed), from the packages'
    metadata; ``python`` is this interpreter."""
    found: Dict[str, Optional[str]] = {
        'python': '.'.join(map(str, sys.version_info[:3]))
    }
    for name in SUPPORTED:
        if name == 'python':
            continue
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


def problems(versions: Dict[str, Optional[str]]) -> List[str]:
    """What is wrong with ``versions`` (see :func:`installed_versions`), one
    sentence each; empty when everything installed is supported."""
    out = []
    for name, (lo, hi) in SUPPORTED.items():
        version = versions.get(name)
        if version is None:
            continue
        if not in_range(version, lo, hi):
            out.append(f'{name} {version} is installed; mmdetr supports '
                       f'{name} >= {lo}, < {hi}')
    torch, numpy = versions.get('torch'), versions.get('numpy')
    if torch and numpy and release(numpy) >= (2, ) and _padded(
            release(torch)) < _padded(release(TORCH_WITH_NUMPY2)):
        out.append(f'torch {torch} was compiled against NumPy 1.x and does '
                   f'not work with numpy {numpy}: pip install "numpy<2"')
    return out


def check_supported(versions: Optional[Dict[str, Optional[str]]] = None,
                    environ=None) -> None:
    """Refuse versions outside :data:`SUPPORTED` (``import mmdetr`` calls
    this before importing torch or mmdet).

    Raises:
        UnsupportedVersionError: naming each installed and supported
            version, unless ``MMDETR_SKIP_VERSION_CHECK=1`` is set (then a
            warning says the same).
    """
    versions = installed_versions() if versions is None else versions
    found = problems(versions)
    if not found:
        return
    environ = os.environ if environ is None else environ
    message = ('mmdetr does not support this environment: ' +
               '; '.join(found) + '. The supported versions are in '
               'docs/install.md; `make install` installs them.')
    if environ.get(SKIP_ENV, '') == '1':
        warnings.warn(f'{message} ({SKIP_ENV}=1: going on anyway)',
                      stacklevel=2)
        return
    raise UnsupportedVersionError(
        f'{message} Set {SKIP_ENV}=1 to try it anyway.')


def transformers_unusable(
        versions: Optional[Dict[str, Optional[str]]] = None) -> bool:
    """Whether an installed transformers cannot work with the installed
    torch (transformers >= 5 with torch < 2.6)."""
    if versions is None:
        versions = installed_versions()
        try:
            versions['transformers'] = metadata.version('transformers')
        except metadata.PackageNotFoundError:
            versions['transformers'] = None
    torch, hf = versions.get('torch'), versions.get('transformers')
    return bool(torch and hf) and release(hf) >= (5, ) and _padded(
        release(torch)) < _padded(release(TRANSFORMERS5_TORCH))


def import_mmdet_models() -> None:
    """``import mmdet.models``, as if transformers were not installed when
    it cannot work with this torch: mmdet 3.3 imports transformers' BERT
    (for GLIP and Grounding DINO) and falls back only on an ImportError,
    but transformers 5 below torch 2.6 fails with a NameError instead.
    ``import transformers`` is as before afterwards."""
    hide = not ('mmdet.models' in sys.modules or 'transformers' in sys.modules
                or not transformers_unusable())
    if hide:
        sys.modules['transformers'] = None  # its import raises ImportError
    try:
        importlib.import_module('mmdet.models')
    finally:
        if hide:
            del sys.modules['transformers']
