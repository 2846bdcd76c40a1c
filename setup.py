# Copyright (c) mmdetr contributors. All rights reserved.
"""Installs mmdetr. Install torch for your platform first (see README.md)."""
import os.path as osp
import re

from setuptools import find_packages, setup

HERE = osp.dirname(osp.abspath(__file__))


def get_version() -> str:
    with open(osp.join(HERE, 'mmdetr', 'version.py')) as f:
        match = re.search(r"^__version__ = '([^']+)'", f.read(), re.M)
    if match is None:
        raise RuntimeError('mmdetr/version.py has no __version__ line')
    return match.group(1)


def supported() -> dict:
    """mmdetr/supported.py's SUPPORTED (read without importing mmdetr,
    whose dependencies may not be installed yet)."""
    import importlib.util
    spec = importlib.util.spec_from_file_location(
        'mmdetr_supported', osp.join(HERE, 'mmdetr', 'supported.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.SUPPORTED


def python_requires() -> str:
    lo, hi = supported()['python']
    return f'>={lo},<{hi}'


def parse_requirements(name: str) -> list:
    """Requirement lines of requirements/<name>.txt, comments dropped."""
    with open(osp.join(HERE, 'requirements', name)) as f:
        lines = [line.split('#', 1)[0].strip() for line in f]
    return [line for line in lines if line]


if __name__ == '__main__':
    setup(
        name='mmdetr',
        version=get_version(),
        description='DETR as an OpenMMLab (mmdet 3.x) registry plugin',
        long_description=open(osp.join(HERE, 'README.md')).read(),
        long_description_content_type='text/markdown',
        license='Apache License 2.0',
        packages=find_packages(exclude=('configs', 'tools', 'tests')),
        python_requires=python_requires(),
        # torch is needed at run time but deliberately not listed: a plain
        # `pip install mmdetr` must never replace the user's torch build.
        # Its supported range is checked by `import mmdetr`
        # (mmdetr/supported.py; docs/install.md).
        install_requires=parse_requirements('runtime.txt'),
        extras_require=dict(tests=parse_requirements('tests.txt'),
                            hf=parse_requirements('hf.txt')),
        zip_safe=False)
