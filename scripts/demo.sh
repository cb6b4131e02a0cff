#!/usr/bin/env bash
# Sets up the environment of DFSS_STACK (maintained, the default, or 1.2; idempotent) and runs the main job on the embedded
# synthetic default. Extra arguments go to tools/demo.py (see --help).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup_env.sh"
source "$ROOT/scripts/stack_env.sh"
cd "$ROOT"
exec "$VENV/bin/python" tools/demo.py "$@"
