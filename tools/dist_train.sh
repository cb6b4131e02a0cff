#!/usr/bin/env bash
# Usage: bash tools/dist_train.sh CONFIG GPUS [train.py args...]
# torchrun + MMEngine's pytorch launcher (NCCL on GPUs, gloo on CPU), GPUS processes
# on this machine. Multi-node: run it once on every node with the same CONFIG, GPUS,
# NNODES, MASTER_ADDR (node 0's address, reachable from every node) and PORT, and
# NODE_RANK = 0 .. NNODES-1, e.g. on 2 nodes of 8 GPUs:
#   NNODES=2 NODE_RANK=0 MASTER_ADDR=10.1.1.1 PORT=29500 bash tools/dist_train.sh CFG 8
#   NNODES=2 NODE_RANK=1 MASTER_ADDR=10.1.1.1 PORT=29500 bash tools/dist_train.sh CFG 8
# The work dir and the ADS cache_dir must be on a filesystem all nodes share
# (docs/reliability.md, "Several nodes").
set -euo pipefail
if [ $# -lt 2 ]; then
  echo "usage: bash $0 CONFIG GPUS [train.py args...]" >&2
  exit 2
fi
CONFIG=$1
GPUS=$2
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
PORT=${PORT:-29500}
if [ "$NNODES" -gt 1 ] && [ -z "${MASTER_ADDR:-}" ]; then
  echo "$0: NNODES=$NNODES: set MASTER_ADDR to the address of node 0 (NODE_RANK=0)" >&2
  exit 2
fi
MASTER_ADDR=${MASTER_ADDR:-127.0.0.1}
DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PYTHONPATH="$DIR/..${PYTHONPATH:+:$PYTHONPATH}" \
exec python -m torch.distributed.run \
    --nnodes="$NNODES" --node_rank="$NODE_RANK" --master_addr="$MASTER_ADDR" \
    --nproc_per_node="$GPUS" --master_port="$PORT" \
    "$DIR/train.py" "$CONFIG" --launcher pytorch "${@:3}"
