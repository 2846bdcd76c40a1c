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
        python_requires='>=3.8',
        # torch is needed at run time but deliberately not listed: a plain
        # `pip install mmdetr` must never replace the user's torch build.
        install_requires=parse_requirements('runtime.txt'),
        extras_require=dict(tests=parse_requirements('tests.txt')),
        zip_safe=False)
