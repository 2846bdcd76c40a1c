# Copyright (c) mmdetr contributors. All rights reserved.
"""``make install``: torch (if absent), mmcv with its compiled ops built
against that torch, mmdet and the other dependencies at versions that work
with what is installed, and mmdetr (editable), into this Python.

    python tools/install/install.py [--torch 2.13.0] [--mmcv 2.1.0]

What it keeps: an installed torch (any supported one; CPU or CUDA), numpy
(numpy < 2 with a torch compiled against NumPy 1.x), and an installed
mmcv, mmengine or mmdet inside mmdetr's supported ranges
(:mod:`mmdetr.supported`): every pip call of the install runs under
constraints that pin them, so pip picks versions of the other packages
(opencv-python, ml_dtypes ...) that work with them.

mmcv: PyPI has only its source, so it is built here, with
``mmcv-2.1.0-cxx-std.patch`` (beside this file; it says why) applied, and
the wheel is kept in ``~/.cache/mmdetr/wheels`` (``MMDETR_CACHE_DIR``)
under a key naming the torch it was compiled against. A cached wheel is
used only for that same torch (and Python, and CPU or CUDA ops); an
installed mmcv is kept when this script built it for the installed torch,
or when it is a prebuilt wheel (OpenMMLab's) whose ops load and run. A
mmcv compiled here by pip outside this script is rebuilt: nothing records
the torch it was compiled against, and pip's wheel cache reuses such a
wheel after a torch change.

An install that cannot work stops with the cause and the fix (no compiler,
no Python headers, an unsupported torch, a compiler too old for torch's
C++ standard ...).
"""
import argparse
import importlib
import json
import os
import os.path as osp
import re
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import tempfile
import urllib.parse
from importlib import metadata
from typing import Dict, List, Optional, Tuple

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
HERE = osp.dirname(osp.abspath(__file__))


def _load_supported():
    """mmdetr/supported.py without importing mmdetr (its dependencies may
    not be installed yet)."""
    spec = importlib.util.spec_from_file_location(
        'mmdetr_supported', osp.join(ROOT, 'mmdetr', 'supported.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


supported = _load_supported()

#: transformers 5.x (Hugging Face interop, requirements/hf.txt) disables
#: itself below this torch
TRANSFORMERS_TORCH = '2.6'


class InstallError(RuntimeError):
    """``make install`` cannot go on; the message says why and what to do."""


def say(msg: str) -> None:
    print(msg, flush=True)


def step(i: int, n: int, what: str) -> None:
    say(f'==> [make install] {i}/{n} {what}')


# ------------------------------------------------------------------ versions
def installed(name: str) -> Optional[str]:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def older(version: str, than: str) -> bool:
    """``version < than`` by release numbers: ``'2.1.2+cu121'`` <
    ``'2.3'``."""
    pad = lambda v: v + (0, ) * (4 - len(v))  # noqa: E731
    return pad(supported.release(version)) < pad(supported.release(than))


def constraints(versions: Dict[str, Optional[str]]) -> List[str]:
    """The pip constraints that keep what is installed (see the module's
    description): ``versions`` is name -> installed version or None."""
    lines = []
    torch = versions.get('torch')
    if torch:
        lines.append(f'torch=={torch}')
    numpy = versions.get('numpy')
    numpy1_torch = bool(torch) and older(torch, supported.TORCH_WITH_NUMPY2)
    if numpy and not (numpy1_torch and not older(numpy, '2')):
        lines.append(f'numpy=={numpy}')
    elif numpy1_torch:
        lines.append('numpy<2')
    for name in ('mmcv', 'mmengine', 'mmdet'):
        version = versions.get(name)
        if version and supported.in_range(version, *supported.SUPPORTED[name]):
            lines.append(f'{name}=={version}')
    return lines


def check_torch(version: str) -> None:
    """Refuse a torch or Python outside mmdetr's supported ranges."""
    lo, hi = supported.SUPPORTED['python']
    py = '.'.join(map(str, sys.version_info[:3]))
    if not supported.in_range(py, lo, hi):
        raise InstallError(f'Python {py}: mmdetr supports Python >= {lo}, '
                           f'< {hi}. Use a supported Python.')
    lo, hi = supported.SUPPORTED['torch']
    if not supported.in_range(version, lo, hi):
        raise InstallError(
            f'torch {version} is installed; mmdetr supports torch >= {lo}, '
            f'< {hi}. Install a supported torch first (pip install '
            f'"torch>={lo},<{hi}", the build for your platform), or set '
            f'{supported.SKIP_ENV}=1 to try this one anyway.')


# ---------------------------------------------------------------------- mmcv
def cache_root() -> str:
    return os.environ.get('MMDETR_CACHE_DIR') or osp.join(
        os.environ.get('XDG_CACHE_HOME') or osp.expanduser('~/.cache'),
        'mmdetr')


def wheel_key(torch_version: str, cuda_ops: bool) -> str:
    """The cache key of an mmcv wheel: the torch it is compiled against,
    the Python, and whether it has CUDA ops."""
    return (f'torch-{torch_version}-{sys.implementation.cache_tag}-'
            f'{"cuda" if cuda_ops else "cpu"}-ops')


def wheel_dir(mmcv_version: str, key: str) -> str:
    return osp.join(cache_root(), 'wheels', f'mmcv-{mmcv_version}', key)


def builds_cuda_ops() -> bool:
    """Whether mmcv's setup.py would compile CUDA ops here (its rule)."""
    if os.environ.get('FORCE_CUDA', '0') == '1':
        return True
    import torch
    return torch.cuda.is_available() or torch.version.hip is not None


def built_against(dist_name: str = 'mmcv') -> Tuple[str, Optional[str]]:
    """Where the installed mmcv comes from: ``('here', key)`` for a wheel
    this script built (its cache key, read from the install record pip
    keeps, PEP 610 ``direct_url.json``), ``('local', None)`` for one
    compiled here by anything else, ``('prebuilt', None)`` for a
    distributed binary wheel."""
    dist = metadata.distribution(dist_name)
    record = dist.read_text('direct_url.json')
    if record:
        url = urllib.parse.urlparse(json.loads(record).get('url', ''))
        path = urllib.parse.unquote(url.path)
        wheels = osp.join(cache_root(), 'wheels') + os.sep
        if url.scheme == 'file' and path.startswith(wheels):
            parts = path[len(wheels):].split(os.sep)
            if len(parts) == 3:
                return 'here', parts[1]
    tags = re.findall(r'^Tag: (.+)$', dist.read_text('WHEEL') or '', re.M)
    binary = ('manylinux', 'musllinux', 'win', 'macosx')
    if tags and all(t.split('-')[-1].startswith(binary) for t in tags):
        return 'prebuilt', None
    return 'local', None


def ops_run(python: str = sys.executable) -> Optional[str]:
    """None when mmcv's compiled ops load and one runs (in a fresh
    process); else the error's last line."""
    code = ('import torch\nfrom mmcv.ops import nms\n'
            'b = torch.tensor([[0., 0., 10., 10.], [1., 1., 10., 10.]])\n'
            '_, keep = nms(b, torch.tensor([.9, .8]), 0.5)\n'
            'assert keep.tolist() == [0], keep\n')
    proc = subprocess.run([python, '-c', code], capture_output=True,
                          text=True)
    if proc.returncode == 0:
        return None
    lines = (proc.stderr or proc.stdout).strip().splitlines()
    return lines[-1] if lines else f'exit status {proc.returncode}'


def mmcv_decision(want: str, have: Optional[str],
                  origin: Tuple[str, Optional[str]], key: str,
                  ops_error: Optional[str]) -> Optional[str]:
    """None to keep the installed mmcv, else why it is (re)installed."""
    if have is None:
        return f'mmcv {want} is not installed'
    if have != want:
        return f'mmcv {have} is installed, not {want}'
    kind, built_key = origin
    if kind == 'here' and built_key != key:
        return (f'the installed mmcv {have} was built against another torch '
                f'({built_key}; now {key})')
    if kind == 'local':
        return (f'the installed mmcv {have} was compiled here outside make '
                'install: the torch it was compiled against is not known '
                '(pip\'s wheel cache reuses a wheel after a torch change)')
    if ops_error is not None:
        return f'the installed mmcv {have}\'s ops do not run: {ops_error}'
    return None


def preflight() -> None:
    """A C++ compiler and the Python headers, before anything is built."""
    cxx = os.environ.get('CXX', 'c++')
    if shutil.which(cxx.split()[0]) is None:
        raise InstallError(
            f'no C++ compiler ({cxx!r} is not on PATH): mmcv\'s ops are '
            'compiled from source. Install one (Debian/Ubuntu: apt-get '
            'install build-essential; conda: conda install gxx_linux-64) '
            'or set CXX')
    include = sysconfig.get_paths().get('include', '')
    if not osp.isfile(osp.join(include, 'Python.h')):
        raise InstallError(
            f'no Python headers ({include}/Python.h is missing): mmcv\'s '
            'ops are compiled against them. Install them (Debian/Ubuntu: '
            f'apt-get install python{sys.version_info[0]}.'
            f'{sys.version_info[1]}-dev)')


#: (pattern in a failed build's output, the cause and the fix)
BUILD_FAILURES = [
    (r'C\+\+(20|17) or later compatible compiler is required',
     'the installed torch\'s headers need a newer C++ standard than the '
     'build used ({m}); the patch beside this script leaves the choice to '
     'torch: check that it applied'),
    (r"unrecognized command[- ]line option '-std=c\+\+(2a|20)'|"
     r"invalid value 'c\+\+20' in '-std=c\+\+20'",
     'the C++ compiler is too old for the C++20 that this torch\'s headers '
     'need: install gcc >= 10 (or clang >= 12) and set CXX to it'),
    (r'Python\.h: No such file',
     'the Python headers are missing: install python3-dev (Debian/Ubuntu) '
     'for this Python'),
    (r"No module named 'pkg_resources'",
     'setuptools >= 81 has no pkg_resources, which mmcv\'s setup.py '
     'imports: pip install "setuptools<81"'),
    (r"unable to execute '([^']+)'|command '([^']+)' failed: No such file",
     'the compiler {m} is not installed: install build-essential or set '
     'CXX'),
    (r'(cc1plus|c\+\+): fatal error: Killed|virtual memory exhausted|'
     r'internal compiler error: Killed',
     'the compiler ran out of memory: build with fewer jobs '
     '(make install MAX_JOBS=1)'),
]


def diagnose(output: str) -> Optional[str]:
    """The cause and fix of a failed mmcv build, from its output; None when
    the output shows no known cause."""
    for pattern, why in BUILD_FAILURES:
        m = re.search(pattern, output)
        if m:
            found = next((g for g in m.groups() if g), m.group(0)) \
                if m.groups() else m.group(0)
            return why.format(m=found)
    return None


def apply_patch(src: str, mmcv_version: str) -> Optional[str]:
    """Apply ``mmcv-<version>-*.patch`` (beside this script) in ``src``;
    the patch's path, or None when there is none for this version."""
    patches = sorted(p for p in os.listdir(HERE)
                     if p.startswith(f'mmcv-{mmcv_version}-')
                     and p.endswith('.patch'))
    for name in patches:
        path = osp.join(HERE, name)
        with open(path) as f:
            proc = subprocess.run(['patch', '-p1', '--forward'], cwd=src,
                                  stdin=f, capture_output=True, text=True)
        if proc.returncode != 0:
            raise InstallError(f'{path} does not apply to mmcv '
                               f'{mmcv_version}\'s source:\n{proc.stdout}'
                               f'{proc.stderr}')
    return ', '.join(patches) or None


def pip(*args: str, quiet: bool = False, env=None) -> None:
    cmd = [sys.executable, '-m', 'pip', *args] + (['-q'] if quiet else [])
    full_env = dict(os.environ, PIP_ROOT_USER_ACTION='ignore', **(env or {}))
    proc = subprocess.run(cmd, env=full_env)
    if proc.returncode != 0:
        raise InstallError(f'{" ".join(cmd[2:])} failed (exit status '
                           f'{proc.returncode}); its output is above')


def build_mmcv(want: str, out_dir: str, jobs: int, log_path: str) -> str:
    """Build mmcv ``want`` with ops into ``out_dir``; the wheel's path."""
    preflight()
    with tempfile.TemporaryDirectory(prefix='mmdetr-mmcv-') as tmp:
        pip('download', '--no-deps', '--no-binary', ':all:', '--no-cache-dir',
            '-d', tmp, f'mmcv=={want}', quiet=True)
        sdist = [f for f in os.listdir(tmp) if f.endswith('.tar.gz')]
        if not sdist:
            raise InstallError(f'pip downloaded no source of mmcv {want}')
        with tarfile.open(osp.join(tmp, sdist[0])) as tar:
            if hasattr(tarfile, 'data_filter'):  # Python >= 3.11.4
                tar.extractall(tmp, filter='data')
            else:
                tar.extractall(tmp)
        src = osp.join(tmp, f'mmcv-{want}')
        patched = apply_patch(src, want)
        say(f'    patched with {patched}' if patched else
            f'    (no patch for mmcv {want}: built as released)')
        build = osp.join(tmp, 'wheel')
        cmd = [sys.executable, '-m', 'pip', 'wheel', '--no-build-isolation',
               '--no-deps', '--no-cache-dir', '-v', '-w', build, src]
        env = dict(os.environ, MMCV_WITH_OPS='1', MAX_JOBS=str(jobs),
                   PIP_ROOT_USER_ACTION='ignore')
        os.makedirs(osp.dirname(log_path), exist_ok=True)
        with open(log_path, 'w') as log:
            proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, text=True)
            for line in proc.stdout:
                log.write(line)
                progress = re.search(r'(\[\d+/\d+\]).* -c (\S+)', line)
                if progress:  # ninja's
                    say(f'    {progress.group(1)} '
                        f'{osp.basename(progress.group(2))}')
            proc.wait()
        if proc.returncode != 0:
            with open(log_path) as f:
                output = f.read()
            cause = diagnose(output)
            tail = '\n'.join(output.splitlines()[-25:])
            raise InstallError(
                f'building mmcv {want} failed; the whole log is {log_path}'
                + (f'.\nCause: {cause}' if cause else
                   f'. Its end:\n{tail}'))
        wheels = [f for f in os.listdir(build) if f.endswith('.whl')]
        os.makedirs(out_dir, exist_ok=True)
        dest = osp.join(out_dir, wheels[0])
        shutil.move(osp.join(build, wheels[0]), dest)
    return dest


def install_mmcv(want: str, jobs: int, constraint_file: str) -> None:
    import torch
    key = wheel_key(torch.__version__, builds_cuda_ops())
    have = installed('mmcv')
    origin = built_against() if have else ('none', None)
    ops_error = ops_run() if have == want else None
    why = mmcv_decision(want, have, origin, key, ops_error)
    if why is None:
        how = dict(here='built by make install',
                   prebuilt='a prebuilt wheel')[origin[0]]
        say(f'    keeping mmcv {have} ({how}; its ops run with torch '
            f'{torch.__version__})')
        return
    say(f'    {why}')
    out_dir = wheel_dir(want, key)
    cached = sorted(f for f in os.listdir(out_dir)
                    if f.endswith('.whl')) if osp.isdir(out_dir) else []
    if cached:
        wheel = osp.join(out_dir, cached[-1])
        say(f'    using the wheel built against {key}: {wheel}')
    else:
        say(f'    building mmcv {want} with ops against {key} (about 10-17 '
            f'minutes on 2 cores, {jobs} jobs); kept in {out_dir}')
        wheel = build_mmcv(want, out_dir, jobs,
                           osp.join(cache_root(), 'logs', f'mmcv-{want}-'
                                    f'{key}.log'))
    pip('install', '--force-reinstall', '--no-deps', wheel, quiet=True)
    # mmcv's own dependencies (opencv-python, addict, yapf ...), under the
    # constraints
    pip('install', '-c', constraint_file, wheel, quiet=True)
    error = ops_run()
    if error is not None:
        raise InstallError(f'mmcv {want} from {wheel} is installed but its '
                           f'ops do not run with torch {torch.__version__}: '
                           f'{error}. Delete {out_dir} and run make install '
                           'again')


# ---------------------------------------------------------------------- main
def requirement_files(*names: str) -> List[str]:
    out = []
    for name in names:
        out += ['-r', osp.join(ROOT, 'requirements', name)]
    return out


def importable(*modules: str) -> bool:
    code = ';'.join(f'import {m}' for m in modules)
    return subprocess.run([sys.executable, '-c', code],
                          capture_output=True).returncode == 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--torch', default='2.13.0',
                        help='the torch to install when none is installed')
    parser.add_argument('--mmcv', default='2.1.0')
    parser.add_argument('--jobs', type=int, default=os.cpu_count() or 2,
                        help='parallel compile jobs for mmcv')
    args = parser.parse_args(argv)
    n = 8
    constraint_file = None
    try:
        step(1, n, 'torch')
        if installed('torch') is None:
            pip('install', f'torch=={args.torch}')
        else:
            say(f'    keeping the installed torch {installed("torch")}')
        check_torch(installed('torch'))

        step(2, n, 'build tools (requirements/build.txt)')
        versions = {
            name: installed(name)
            for name in ('torch', 'numpy', 'mmcv', 'mmengine', 'mmdet')
        }
        pins = constraints(versions)
        fd, constraint_file = tempfile.mkstemp(prefix='mmdetr-constraints-',
                                               suffix='.txt')
        with os.fdopen(fd, 'w') as f:
            f.write('\n'.join(pins) + '\n')
        say('    keeping: ' + ', '.join(pins))
        pip('install', '-c', constraint_file, *requirement_files('build.txt'),
            quiet=True)

        step(3, n, f'mmcv {args.mmcv} with its compiled ops')
        install_mmcv(args.mmcv, args.jobs, constraint_file)

        step(4, n, 'mmengine, mmdet, scipy, pycocotools, test tools '
             '(requirements/runtime.txt, tests.txt)')
        pip('install', '-c', constraint_file,
            *requirement_files('runtime.txt', 'tests.txt'), quiet=True)
        pip('install', '--no-deps', *requirement_files('panoptic.txt'),
            quiet=True)

        step(5, n, 'onnx, onnxruntime (requirements/deploy.txt)')
        if importable('onnx', 'onnxruntime'):
            say(f'    keeping onnx {installed("onnx")}, onnxruntime '
                f'{installed("onnxruntime")}')
        else:
            pip('install', '-c', constraint_file,
                *requirement_files('deploy.txt'), quiet=True)

        step(6, n, 'transformers (Hugging Face interop, requirements/hf.txt)')
        torch_version = installed('torch')
        if older(torch_version, TRANSFORMERS_TORCH):
            say(f'    skipped: transformers 5.x needs torch >= '
                f'{TRANSFORMERS_TORCH}, this is {torch_version}; the Hugging '
                'Face tests skip')
        else:
            pip('install', '-c', constraint_file,
                *requirement_files('hf.txt'), quiet=True)

        step(7, n, 'mmdetr (editable)')
        pip('install', '--no-build-isolation', '--no-deps', '-e', ROOT,
            quiet=True)

        step(8, n, 'import check')
        code = ('import torch, numpy, mmcv, mmcv.ops, mmengine, mmdet, '
                'mmdet.models, mmdetr\n'
                'print("    torch", torch.__version__, "| numpy", '
                'numpy.__version__, "| mmcv", mmcv.__version__, "| mmengine",'
                ' mmengine.__version__, "| mmdet", mmdet.__version__, '
                '"| mmdetr", mmdetr.__version__)')
        proc = subprocess.run([sys.executable, '-c', code])
        if proc.returncode != 0:
            raise InstallError('the import check failed; its error is above')
    except InstallError as e:
        print(f'!! [make install] {e}', file=sys.stderr)
        return 1
    finally:
        if constraint_file is not None:
            os.remove(constraint_file)
    return 0


if __name__ == '__main__':
    sys.exit(main())
