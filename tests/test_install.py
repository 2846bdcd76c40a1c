# Copyright (c) mmdetr contributors. All rights reserved.
"""What `make install` promises: the package imports at the declared version,
mmcv's compiled ops load, the supported versions are declared in one place
and enforced, and the installer keeps, builds and refuses what it should."""
import json
import os.path as osp
import re
import sys

import pytest
import torch
from packaging.version import Version

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, ROOT)  # for setup.py's helpers


def test_package_imports_with_its_components():
    import mmdetr
    from mmdetr.models import DETR, DETRHead, HungarianAssigner  # noqa
    assert mmdetr.__version__


def test_version_matches_setup_py():
    import mmdetr
    from setup import get_version  # the function setup() uses
    assert get_version() == mmdetr.__version__
    assert re.fullmatch(r'\d+\.\d+\.\d+', mmdetr.__version__)


def test_mmcv_compiled_ops_load_and_run():
    import mmcv
    from mmcv.ops import nms
    assert Version('2.1.0') <= Version(mmcv.__version__) < Version('2.2.0')
    boxes = torch.tensor([[0., 0., 10., 10.], [1., 1., 10., 10.],
                          [20., 20., 30., 30.]])
    scores = torch.tensor([0.9, 0.8, 0.7])
    _, keep = nms(boxes, scores, iou_threshold=0.5)
    assert keep.tolist() == [0, 2]


def test_setup_does_not_require_torch():
    """A plain install of mmdetr must never pull a CUDA torch over the
    user's build."""
    from setup import parse_requirements
    reqs = parse_requirements('runtime.txt')
    assert not any(r.split('<')[0].split('>')[0].split('=')[0].strip() ==
                   'torch' for r in reqs)
    assert 'mmcv>=2.1.0,<2.2.0' in reqs


# ----------------------------------------------------- the supported matrix
def test_the_ranges_are_declared_alike_everywhere():
    """requirements/runtime.txt and setup.py say what mmdetr/supported.py
    says."""
    from setup import parse_requirements, python_requires
    from mmdetr.supported import SUPPORTED, requirement
    reqs = parse_requirements('runtime.txt')
    for name in ('mmcv', 'mmdet', 'mmengine', 'numpy'):
        assert requirement(name) in reqs, name
    lo, hi = SUPPORTED['python']
    assert python_requires() == f'>={lo},<{hi}'


def test_this_environment_is_supported():
    from mmdetr.supported import installed_versions, problems
    versions = installed_versions()
    assert versions['torch'] and versions['mmdet'] and versions['numpy']
    assert problems(versions) == []


GOOD = dict(python='3.11.7', torch='2.13.0+cpu', mmcv='2.1.0',
            mmengine='0.10.7', mmdet='3.3.0', numpy='2.4.6')


@pytest.mark.parametrize('change,named', [
    (dict(torch='2.0.1+cu118'), 'torch 2.0.1+cu118 is installed; mmdetr '
     'supports torch >= 2.1, < 2.15'),
    (dict(torch='2.15.0'), 'torch 2.15.0 is installed'),
    (dict(mmcv='2.2.0'), 'mmcv 2.2.0 is installed; mmdetr supports mmcv >= '
     '2.1.0, < 2.2.0'),
    (dict(mmdet='3.2.0'), 'mmdet 3.2.0 is installed'),
    (dict(mmengine='0.9.1'), 'mmengine 0.9.1 is installed'),
    (dict(python='3.8.18'), 'python 3.8.18 is installed'),
    (dict(torch='2.1.2+cu121'), 'torch 2.1.2+cu121 was compiled against '
     'NumPy 1.x and does not work with numpy 2.4.6: pip install "numpy<2"'),
])
def test_an_unsupported_version_is_refused_by_name(change, named):
    from mmdetr.supported import UnsupportedVersionError, check_supported
    versions = dict(GOOD, **change)
    with pytest.raises(UnsupportedVersionError) as e:
        check_supported(versions, environ={})
    assert named in str(e.value)
    assert 'MMDETR_SKIP_VERSION_CHECK=1' in str(e.value)
    with pytest.warns(UserWarning, match=re.escape(named.split(';')[0])):
        check_supported(versions,
                        environ={'MMDETR_SKIP_VERSION_CHECK': '1'})


def test_supported_edges_and_missing_packages_pass():
    from mmdetr.supported import check_supported
    for change in (dict(torch='2.1.0', numpy='1.26.4'), dict(torch='2.14.1'),
                   dict(torch='2.1.2+cu121', numpy='1.26.4'),
                   dict(numpy='1.24.4', torch='2.2.2'), dict(mmcv=None),
                   dict(torch=None, mmdet=None, mmengine=None)):
        check_supported(dict(GOOD, **change), environ={})


def test_transformers_5_is_kept_out_of_mmdet_below_torch_2_6():
    from mmdetr.supported import transformers_unusable
    assert transformers_unusable(dict(torch='2.1.2', transformers='5.24.0'))
    assert not transformers_unusable(dict(torch='2.6.0',
                                          transformers='5.24.0'))
    assert not transformers_unusable(dict(torch='2.1.2',
                                          transformers='4.46.3'))
    assert not transformers_unusable(dict(torch='2.1.2', transformers=None))


def test_the_sources_parse_as_the_oldest_supported_python():
    """The syntax check of the Python versions this machine cannot run
    (3.11 runs the tests)."""
    import ast
    import glob
    from mmdetr.supported import SUPPORTED, release
    oldest = release(SUPPORTED['python'][0])
    files = [f for pattern in ('mmdetr/**/*.py', 'tools/**/*.py',
                               'tests/**/*.py', 'setup.py')
             for f in glob.glob(osp.join(ROOT, pattern), recursive=True)]
    assert len(files) > 100
    for path in files:
        with open(path) as f:
            ast.parse(f.read(), path, feature_version=oldest[:2])


# --------------------------------------------------------------- installer
installer = None


def _installer():
    global installer
    if installer is None:
        from helpers import load_tool
        installer = load_tool('tools/install/install.py', 'mmdetr_installer')
    return installer


@pytest.mark.parametrize('versions,pins', [
    (dict(torch='2.13.0+cpu', numpy='2.4.6', mmcv=None, mmengine=None,
          mmdet=None), ['torch==2.13.0+cpu', 'numpy==2.4.6']),
    # a torch compiled against NumPy 1.x: numpy < 2, also over a numpy 2
    (dict(torch='2.1.2', numpy=None), ['torch==2.1.2', 'numpy<2']),
    (dict(torch='2.1.2', numpy='2.4.6'), ['torch==2.1.2', 'numpy<2']),
    (dict(torch='2.1.2', numpy='1.26.4', mmcv='2.1.0', mmengine='0.10.7',
          mmdet='3.3.0'),
     ['torch==2.1.2', 'numpy==1.26.4', 'mmcv==2.1.0', 'mmengine==0.10.7',
      'mmdet==3.3.0']),
    # outside the supported ranges: not kept (pip installs a supported one)
    (dict(torch='2.14.1', mmcv='2.0.1', mmdet='3.1.0'), ['torch==2.14.1']),
])
def test_installed_versions_are_kept(versions, pins):
    assert _installer().constraints(versions) == pins


KEY = 'torch-2.14.1+cpu-cpython-311-cpu-ops'


@pytest.mark.parametrize('have,origin,ops_error,why', [
    (None, ('none', None), None, 'mmcv 2.1.0 is not installed'),
    ('2.0.1', ('prebuilt', None), None, 'mmcv 2.0.1 is installed, not 2.1.0'),
    ('2.1.0', ('here', KEY), None, None),
    ('2.1.0', ('here', 'torch-2.13.0+cpu-cpython-311-cpu-ops'), None,
     'built against another torch (torch-2.13.0+cpu'),
    ('2.1.0', ('local', None), None, 'the torch it was compiled against is '
     'not known'),
    ('2.1.0', ('prebuilt', None), None, None),
    ('2.1.0', ('prebuilt', None), 'undefined symbol: _ZN3c10',
     'ops do not run: undefined symbol'),
])
def test_an_installed_mmcv_is_kept_only_for_the_installed_torch(
        have, origin, ops_error, why):
    got = _installer().mmcv_decision('2.1.0', have, origin, KEY, ops_error)
    if why is None:
        assert got is None
    else:
        assert why in got


def test_the_origin_of_an_installed_mmcv_is_read_from_pip_s_record(
        monkeypatch, tmp_path):
    inst = _installer()
    monkeypatch.setenv('MMDETR_CACHE_DIR', str(tmp_path))

    class Dist:
        def __init__(self, files):
            self.files = files

        def read_text(self, name):
            return self.files.get(name)

    wheel = tmp_path / 'wheels' / 'mmcv-2.1.0' / KEY / 'mmcv-2.1.0-cp311-' \
        'cp311-linux_x86_64.whl'
    cases = [
        ({'direct_url.json': json.dumps({'url': wheel.as_uri()}),
          'WHEEL': 'Tag: cp311-cp311-linux_x86_64\n'}, ('here', KEY)),
        ({'WHEEL': 'Tag: cp311-cp311-linux_x86_64\n'}, ('local', None)),
        ({'WHEEL': 'Tag: cp38-cp38-manylinux1_x86_64\n'},
         ('prebuilt', None)),
        # a wheel from elsewhere on disk: not one of ours
        ({'direct_url.json': json.dumps({'url': 'file:///tmp/mmcv.whl'}),
          'WHEEL': 'Tag: cp311-cp311-linux_x86_64\n'}, ('local', None)),
    ]
    for files, want in cases:
        monkeypatch.setattr(inst.metadata, 'distribution',
                            lambda name, files=files: Dist(files))
        assert inst.built_against() == want, files


def test_the_cache_key_names_the_torch_python_and_ops():
    inst = _installer()
    key = inst.wheel_key('2.14.1+cpu', cuda_ops=False)
    assert key.startswith('torch-2.14.1+cpu-') and key.endswith('-cpu-ops')
    assert sys.implementation.cache_tag in key
    assert inst.wheel_key('2.14.1+cpu', True) != key
    assert inst.wheel_key('2.13.0+cpu', False) != key


@pytest.mark.parametrize('output,cause', [
    ('/torch/include/ATen/ATen.h:4:2: error: #error C++20 or later '
     'compatible compiler is required to use ATen.', 'newer C++ standard'),
    ("g++: error: unrecognized command-line option '-std=c++20'",
     'too old for the C++20'),
    ('fatal error: Python.h: No such file or directory',
     'Python headers are missing'),
    ("ModuleNotFoundError: No module named 'pkg_resources'",
     'setuptools<81'),
    ("error: command 'g++' failed: No such file or directory",
     "the compiler g++ is not installed"),
    ('c++: fatal error: Killed signal terminated program cc1plus',
     'ran out of memory'),
    ('something else went wrong', None),
])
def test_a_failed_mmcv_build_names_its_cause(output, cause):
    got = _installer().diagnose(output)
    if cause is None:
        assert got is None
    else:
        assert cause in got


def test_a_missing_compiler_or_python_headers_stop_before_the_build(
        monkeypatch, tmp_path):
    inst = _installer()
    monkeypatch.setenv('CXX', 'no-such-compiler-here')
    with pytest.raises(inst.InstallError, match='no C.. compiler'):
        inst.preflight()
    monkeypatch.setenv('CXX', sys.executable)  # any program will do
    monkeypatch.setattr(inst.sysconfig, 'get_paths',
                        lambda: {'include': str(tmp_path)})
    with pytest.raises(inst.InstallError, match='no Python headers'):
        inst.preflight()


def test_an_unsupported_torch_stops_the_install():
    inst = _installer()
    with pytest.raises(inst.InstallError,
                       match=r'torch 2.0.1 is installed; mmdetr supports '
                       r'torch >= 2.1, < 2.15'):
        inst.check_torch('2.0.1')
    inst.check_torch('2.1.2+cu121')
    inst.check_torch(torch.__version__)


@pytest.mark.slow  # in a fresh process
def test_the_installed_mmcv_ops_run():
    assert _installer().ops_run() is None
