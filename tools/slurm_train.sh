#!/usr/bin/env bash
# Submit a training job that survives preemption and time limits:
#
#   [GPUS=16] bash tools/slurm_train.sh PARTITION JOB_NAME CONFIG WORK_DIR [train.py options]
#
# The job (sbatch, this script again inside it) is requeueable and asks SLURM
# for SIGUSR1 SIGNAL_BEFORE seconds before its time limit. Training always
# runs with --resume: the first run starts from scratch, a requeued one
# continues from the newest whole checkpoint in WORK_DIR. On SIGUSR1 or
# SIGTERM (preemption) training finishes its iteration, saves and exits with
# status 75; the job then requeues itself. Log: WORK_DIR/slurm-JOBID.out.
#
# Environment: GPUS (8), GPUS_PER_NODE (8), CPUS_PER_TASK (5),
# SIGNAL_BEFORE (180 s), SBATCH_ARGS (e.g. "--time=24:00:00"), SRUN_ARGS.
# docs/distributed.md explains the whole path.
set -eu
EXIT_RESUMABLE=75  # tools/train.py: stopped on a signal, checkpoint written

if [ -z "${MMDETR_IN_SLURM_JOB:-}" ]; then
    if [ $# -lt 4 ]; then
        echo "usage: [GPUS=16] bash $0 PARTITION JOB_NAME CONFIG WORK_DIR [train.py options]" >&2
        exit 2
    fi
    for arg in "${@:5}"; do
        case "$arg" in --resume|--resume=*)
            echo "slurm_train.sh: the job resumes by itself (it adds --resume);" \
                 "to start from weights use --cfg-options load_from=CKPT" >&2
            exit 2;;
        esac
    done
    GPUS=${GPUS:-8}
    GPUS_PER_NODE=${GPUS_PER_NODE:-8}
    CPUS_PER_TASK=${CPUS_PER_TASK:-5}
    SIGNAL_BEFORE=${SIGNAL_BEFORE:-180}
    ROOT=$(cd "$(dirname "$0")/.." && pwd)
    mkdir -p "$4"
    # sbatch runs a copy of this script: it finds the checkout via MMDETR_ROOT
    set -x
    exec sbatch -p "$1" \
        --job-name="$2" \
        --gres=gpu:"$GPUS_PER_NODE" \
        --ntasks="$GPUS" \
        --ntasks-per-node="$GPUS_PER_NODE" \
        --cpus-per-task="$CPUS_PER_TASK" \
        --signal=USR1@"$SIGNAL_BEFORE" \
        --requeue \
        --open-mode=append \
        --output="$4/slurm-%j.out" \
        --export=ALL,MMDETR_IN_SLURM_JOB=1,MMDETR_ROOT="$ROOT" \
        ${SBATCH_ARGS:-} \
        "$ROOT/tools/slurm_train.sh" "$@"
fi

# Inside the job. SLURM signals the training processes themselves; this
# shell only waits for them (a trapped signal interrupts `wait`, not srun).
CONFIG=$3
WORK_DIR=$4
echo "slurm_train.sh: job ${SLURM_JOB_ID:-?} (restart ${SLURM_RESTART_COUNT:-0}) on $(hostname)"
trap 'echo "slurm_train.sh: $(date +%T) signal received; training saves and exits"' TERM USR1
set +e
PYTHONPATH="$MMDETR_ROOT":${PYTHONPATH:-} \
srun --kill-on-bad-exit=1 ${SRUN_ARGS:-} \
    python -u "$MMDETR_ROOT/tools/train.py" "$CONFIG" --work-dir="$WORK_DIR" \
    --launcher=slurm --resume "${@:5}" &
pid=$!
wait $pid
status=$?
while kill -0 $pid 2>/dev/null; do  # woken by a signal: wait on
    wait $pid
    status=$?
done
if [ $status -eq $EXIT_RESUMABLE ]; then
    echo "slurm_train.sh: training stopped on a signal with a checkpoint; requeueing job $SLURM_JOB_ID"
    scontrol requeue "$SLURM_JOB_ID" || true
fi
exit $status
