# Copyright (c) mmdetr contributors. All rights reserved.
"""tools/slurm_train.sh and tools/dist_train.sh with stand-ins for sbatch,
srun, scontrol and python on PATH: the arguments they pass, and the
requeue of a job whose training stopped on a signal (exit status 75)."""
import os
import os.path as osp
import stat
import subprocess

import pytest

from helpers import ROOT, kill_group

pytestmark = pytest.mark.slow  # each test starts bash and the stand-ins

# sbatch: records its arguments, then runs the job script at once the way
# SLURM would (the --export variables set, SLURM_JOB_ID=4242)
SBATCH = r'''#!/usr/bin/env bash
printf '%s\n' "$@" > "$LOG/sbatch.args"
script=
while [ $# -gt 0 ]; do
    case "$1" in
        --export=*) IFS=, read -ra kv <<< "${1#--export=}"
            for x in "${kv[@]}"; do [ "$x" = ALL ] || export "$x"; done;;
        -p) shift;;
        -*) ;;
        *) script=$1; shift; break;;
    esac
    shift
done
SLURM_JOB_ID=4242 exec bash "$script" "$@"
'''
# srun: records its arguments; FAKE_SIGNAL_JOB=1 sends SIGTERM to the job
# shell first (a preemption reaching it too); exits with $FAKE_STATUS
SRUN = r'''#!/usr/bin/env bash
printf '%s\n' "$@" > "$LOG/srun.args"
echo "$PYTHONPATH" > "$LOG/srun.pythonpath"
if [ -n "${FAKE_SIGNAL_JOB:-}" ]; then kill -TERM $PPID; sleep 0.3; fi
exit "${FAKE_STATUS:-0}"
'''
SCONTROL = r'''#!/usr/bin/env bash
printf '%s\n' "$@" > "$LOG/scontrol.args"
'''
# python: records its arguments and process id (dist_train.sh execs it)
PYTHON = r'''#!/usr/bin/env bash
printf '%s\n' "$@" > "$LOG/python.args"
echo $$ > "$LOG/python.pid"
'''


@pytest.fixture
def fake(tmp_path):
    bin_dir = tmp_path / 'bin'
    bin_dir.mkdir()
    for name, text in dict(sbatch=SBATCH, srun=SRUN, scontrol=SCONTROL,
                           python=PYTHON).items():
        path = bin_dir / name
        path.write_text(text)
        path.chmod(path.stat().st_mode | stat.S_IEXEC)
    log = tmp_path / 'log'
    log.mkdir()

    def run(script, *args, **env):
        full = dict(os.environ, PATH=f'{bin_dir}:{os.environ["PATH"]}',
                    LOG=str(log), **env)
        full.pop('MMDETR_IN_SLURM_JOB', None)
        proc = subprocess.Popen(['bash', osp.join(ROOT, 'tools', script),
                                 *map(str, args)], env=full,
                                stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True,
                                start_new_session=True)
        try:
            out, err = proc.communicate(timeout=60)
        finally:
            kill_group(proc)  # and whatever the script started
        return proc, out + err

    def args(name):
        path = log / f'{name}.args'
        return path.read_text().splitlines() if path.exists() else None

    run.args = args
    run.log = log
    return run


def test_slurm_job_asks_for_the_signal_and_requeue_and_resumes(
        fake, tmp_path):
    work = tmp_path / 'work'
    proc, out = fake('slurm_train.sh', 'gpu', 'detr', 'cfg.py', work,
                     '--cfg-options', 'a=1', GPUS='16', GPUS_PER_NODE='8',
                     SIGNAL_BEFORE='240', SBATCH_ARGS='--time=24:00:00')
    assert proc.returncode == 0, out
    sbatch = fake.args('sbatch')
    for expected in ('--job-name=detr', '--gres=gpu:8', '--ntasks=16',
                     '--ntasks-per-node=8', '--signal=USR1@240',
                     '--requeue', '--open-mode=append',
                     f'--output={work}/slurm-%j.out', '--time=24:00:00'):
        assert expected in sbatch, (expected, sbatch)
    assert sbatch[sbatch.index('-p') + 1] == 'gpu'
    assert work.is_dir()
    # the job runs training with --resume: a requeued job continues
    srun = fake.args('srun')
    assert srun == [
        '--kill-on-bad-exit=1', 'python', '-u',
        osp.join(ROOT, 'tools', 'train.py'), 'cfg.py', f'--work-dir={work}',
        '--launcher=slurm', '--resume', '--cfg-options', 'a=1'
    ]
    assert (fake.log / 'srun.pythonpath').read_text().startswith(ROOT)
    assert fake.args('scontrol') is None  # finished: no requeue


def test_a_run_stopped_by_a_signal_requeues_its_job(fake, tmp_path):
    """Training exits 75 after its checkpoint; the job shell, signalled
    too, waits for it and requeues the job."""
    proc, out = fake('slurm_train.sh', 'gpu', 'detr', 'cfg.py',
                     tmp_path / 'w', FAKE_STATUS='75', FAKE_SIGNAL_JOB='1')
    assert proc.returncode == 75, out
    assert 'signal received' in out
    assert fake.args('scontrol') == ['requeue', '4242']


def test_a_failed_run_is_not_requeued(fake, tmp_path):
    proc, out = fake('slurm_train.sh', 'gpu', 'detr', 'cfg.py',
                     tmp_path / 'w', FAKE_STATUS='1')
    assert proc.returncode == 1
    assert fake.args('scontrol') is None


@pytest.mark.parametrize('args,match', [
    (('gpu', 'detr', 'cfg.py', 'w', '--resume'), 'resumes by itself'),
    (('gpu', 'detr'), 'usage'),
])
def test_slurm_bad_arguments_are_refused_before_submitting(fake, args,
                                                           match):
    proc, out = fake('slurm_train.sh', *args)
    assert proc.returncode == 2 and match in out
    assert fake.args('sbatch') is None


def test_dist_train_forwards_the_stop_signals(fake):
    proc, out = fake('dist_train.sh', 'cfg.py', 4, '--resume',
                     SHUTDOWN_TIMEOUT='90')
    assert proc.returncode == 0, out
    argv = fake.args('python')
    assert argv[:2] == ['-m', 'torch.distributed.run']
    assert '--signals-to-handle=SIGTERM,SIGINT,SIGHUP,SIGQUIT,SIGUSR1' in argv
    assert '--shutdown-timeout=90' in argv and '--nproc_per_node=4' in argv
    assert argv[-5:] == [osp.join(ROOT, 'tools', 'train.py'), 'cfg.py',
                         '--launcher', 'pytorch', '--resume']
    # exec: a signal to the script's process is one to torchrun
    assert int((fake.log / 'python.pid').read_text()) == proc.pid
