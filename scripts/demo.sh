#!/usr/bin/env bash
# Sets up the environment (idempotent) and runs the main job on the embedded
# synthetic default. Extra arguments go to tools/demo.py (see --help).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup_env.sh"
cd "$ROOT"
exec "${DFSS_VENV:-$ROOT/.venv}/bin/python" tools/demo.py "$@"
