#!/usr/bin/env bash
# Usage: [GPUS=8] [GPUS_PER_NODE=8] [CPUS_PER_TASK=5] [SRUN_ARGS="..."] \
#     bash tools/slurm_train.sh PARTITION JOB_NAME CONFIG [WORK_DIR] [train.py args...]
# One srun task per GPU (GPUS tasks, GPUS_PER_NODE per node); every task runs
# tools/train.py with MMEngine's slurm launcher, which reads SLURM_PROCID/NTASKS/
# NODELIST/LOCALID and takes the first node of the job as MASTER_ADDR (MASTER_PORT
# from the environment, else 29500). Multi-node jobs need GPUS > GPUS_PER_NODE, and
# the ADS score cache (cache_dir) on a filesystem every node sees (docs/reliability.md).
set -euo pipefail
if [ $# -lt 3 ]; then
  echo "usage: bash $0 PARTITION JOB_NAME CONFIG [WORK_DIR] [train.py args...]" >&2
  exit 2
fi
PARTITION=$1
JOB_NAME=$2
CONFIG=$3
shift 3
PY_ARGS=()
if [ $# -gt 0 ] && [ "${1#-}" = "$1" ]; then  # a 4th argument that is not a flag: WORK_DIR
  PY_ARGS=(--work-dir "$1")
  shift
fi
PY_ARGS+=("$@")
GPUS=${GPUS:-8}
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
    python -u "$DIR/train.py" "$CONFIG" --launcher=slurm ${PY_ARGS[@]+"${PY_ARGS[@]}"}
