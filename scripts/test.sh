#!/usr/bin/env bash
# Sets up the environment of DFSS_STACK (maintained, the default, or 1.2; idempotent) and runs the default test suite.
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -k ads` or `-m slow`.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup_env.sh"
source "$ROOT/scripts/stack_env.sh"
cd "$ROOT"
exec "$VENV/bin/python" -m pytest tests "$@"
