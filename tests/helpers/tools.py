# Copyright (c) mmdetr contributors. All rights reserved.
"""Running the repository's tools: as subprocesses (with this checkout and
tests/ on the path, so configs can ``custom_imports`` test-only modules such
as ``helpers.kill_hook``), or a script under tools/ loaded as a module."""
import glob
import importlib.util
import json
import os
import os.path as osp
import re
import signal
import subprocess
import sys

# the repository root and tests/ (this file is tests/helpers/tools.py)
ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TESTS = osp.join(ROOT, 'tests')


def run(*cmd, env=None, check=True, timeout=600):
    """Run ``cmd`` in the repository root with this checkout and tests/
    first on ``PYTHONPATH``; with ``check``, fail showing the output's tail.

    The command runs in a process group of its own, which is killed when it
    returns, runs past ``timeout`` seconds or the test is interrupted (a
    time limit): nothing it started (torchrun's ranks, loader workers)
    outlives the test."""
    full_env = dict(os.environ)
    full_env['PYTHONPATH'] = os.pathsep.join(
        [ROOT, TESTS, full_env.get('PYTHONPATH', '')])
    full_env.update(env or {})
    args = [str(c) for c in cmd]
    proc = subprocess.Popen(args, cwd=ROOT, env=full_env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_group(proc)
        out, err = proc.communicate()
        raise AssertionError(f'{cmd} ran past {timeout} s and was killed\n'
                             f'{out[-3000:]}\n{err[-5000:]}')
    finally:
        kill_group(proc)
    done = subprocess.CompletedProcess(args, proc.returncode, out, err)
    if check and done.returncode != 0:
        raise AssertionError(f'{cmd} exited {done.returncode}\n'
                             f'{out[-3000:]}\n{err[-5000:]}')
    return done


def kill_group(proc: subprocess.Popen) -> None:
    """Kill the process group ``proc`` leads (started with
    ``start_new_session=True``): it and whatever it started."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass  # nothing left in the group
    if proc.poll() is None:
        proc.wait()


# A 2-process gloo run on this CPU torch build sometimes dies in torch's C++
# runtime ("terminate called without an active exception", SIGABRT in one
# rank): at its start, or after its last iteration with the process group
# closed (2 runs of 16 of the demo model beside another job; none of 6 on
# an idle machine). Such a run is repeated, up to GLOO_ATTEMPTS runs in all
# (test_preemption_ddp.py restores the work dir each one started from); any
# other failure fails at once.
GLOO_ABORT = 'terminate called without an active exception'
GLOO_ATTEMPTS = 3


def run_distributed(*cmd, env=None, timeout=600):
    """:func:`run` for a multi-process launch, repeated (same command,
    fresh processes, up to :data:`GLOO_ATTEMPTS` runs) while a rank dies of
    :data:`GLOO_ABORT`."""
    for _ in range(GLOO_ATTEMPTS):
        proc = run(*cmd, env=env, check=False, timeout=timeout)
        if proc.returncode == 0 or GLOO_ABORT not in proc.stderr:
            break
    if proc.returncode != 0:
        raise AssertionError(f'{cmd} exited {proc.returncode}\n'
                             f'{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}')
    return proc


def train(cfg, work_dir, *extra, check=True):
    """``tools/train.py cfg --work-dir work_dir *extra`` in a subprocess."""
    return run(sys.executable, 'tools/train.py', cfg, '--work-dir', work_dir,
               *extra, check=check)


def run_script(path: str, *args) -> int:
    """Run the script ``path`` in this process as ``__main__`` with
    ``args`` as its command line; its exit code (0 if it returns)."""
    import runpy
    argv = sys.argv
    sys.argv = [str(path), *map(str, args)]
    try:
        runpy.run_path(str(path), run_name='__main__')
    except SystemExit as e:
        return e.code
    finally:
        sys.argv = argv
    return 0


def copypaste_ap(output: str) -> str:
    """The last ``bbox_mAP_copypaste`` line's six numbers in ``output``."""
    found = re.findall(r'bbox_mAP_copypaste: ([\d. -]+)', output)
    assert found, output[-3000:]
    return found[-1].strip()


def scalars(work_dir):
    """The newest run's ``vis_data/scalars.json`` under ``work_dir``, one
    dict per logged line."""
    files = glob.glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json'))
    assert files, f'no scalars log under {work_dir}'
    with open(sorted(files)[-1]) as f:
        return [json.loads(line) for line in f]


def load_ckpt(path):
    """Load a checkpoint file the way mmdetr does (safe, weights only)."""
    from mmdetr.checkpoints import load_checkpoint_file
    return load_checkpoint_file(path)


def load_tool(rel_path: str, name: str):
    """Load the script ``ROOT/rel_path`` as module ``name`` (tools/ is not a
    package, so its scripts cannot be imported by name)."""
    spec = importlib.util.spec_from_file_location(name,
                                                  osp.join(ROOT, rel_path))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
