#!/usr/bin/env bash
# Usage: [GPUS=4] [GPUS_PER_NODE=4] [CPUS_PER_TASK=5] [SRUN_ARGS="..."] \
#     bash tools/slurm_test.sh PARTITION JOB_NAME CONFIG CHECKPOINT [test.py args...]
# One srun task per GPU; every task runs tools/test.py with MMEngine's slurm launcher
# (see tools/slurm_train.sh).
set -euo pipefail
if [ $# -lt 4 ]; then
  echo "usage: bash $0 PARTITION JOB_NAME CONFIG CHECKPOINT [test.py args...]" >&2
  exit 2
fi
PARTITION=$1
JOB_NAME=$2
CONFIG=$3
CHECKPOINT=$4
shift 4
GPUS=${GPUS:-4}
GPUS_PER_NODE=${GPUS_PER_NODE:-$(( GPUS < 8 ? GPUS : 8 ))}
CPUS_PER_TASK=${CPUS_PER_TASK:-5}
read -r -a EXTRA_SRUN <<< "${SRUN_ARGS:-}"
DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

set -x
PYTHONPATH="$DIR/..${PYTHONPATH:+:$PYTHONPATH}" \
exec srun -p "$PARTITION" \
    --job-name="$JOB_NAME" \
    --gres=gpu:"$GPUS_PER_NODE" \
    --ntasks="$GPUS" \
    --ntasks-per-node="$GPUS_PER_NODE" \
    --cpus-per-task="$CPUS_PER_TASK" \
    --kill-on-bad-exit=1 \
    ${EXTRA_SRUN[@]+"${EXTRA_SRUN[@]}"} \
    python -u "$DIR/test.py" "$CONFIG" "$CHECKPOINT" --launcher=slurm "$@"
