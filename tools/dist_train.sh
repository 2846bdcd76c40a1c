#!/usr/bin/env bash
# Usage: bash tools/dist_train.sh CONFIG GPUS [train.py options]
# Multi-node: NNODES=2 NODE_RANK=0 MASTER_ADDR=host0 bash tools/dist_train.sh ...
# Works on CPU-only machines too (one process per GPUS, gloo backend).
# SIGTERM or SIGUSR1 to this script reaches every training process: they
# finish the iteration, save a checkpoint and exit with status 75 (torchrun
# then reports the failure and exits 1); the same command with --resume
# continues. They get SHUTDOWN_TIMEOUT seconds for it before SIGKILL.
set -e
CONFIG=$1
GPUS=$2
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
PORT=${PORT:-29500}
MASTER_ADDR=${MASTER_ADDR:-"127.0.0.1"}
SHUTDOWN_TIMEOUT=${SHUTDOWN_TIMEOUT:-120}
DIR=$(cd "$(dirname "$0")" && pwd)

# exec: the script's process becomes torchrun's, so signals sent to it reach
# torchrun, which forwards them to the workers
PYTHONPATH="$DIR/..":$PYTHONPATH \
exec python -m torch.distributed.run \
    --nnodes=$NNODES \
    --node_rank=$NODE_RANK \
    --master_addr=$MASTER_ADDR \
    --nproc_per_node=$GPUS \
    --master_port=$PORT \
    --signals-to-handle=SIGTERM,SIGINT,SIGHUP,SIGQUIT,SIGUSR1 \
    --shutdown-timeout=$SHUTDOWN_TIMEOUT \
    "$DIR/train.py" \
    $CONFIG \
    --launcher pytorch "${@:3}"
