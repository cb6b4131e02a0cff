#!/usr/bin/env bash
# Creates (or reuses) the project's virtualenv and installs everything DFSS needs.
# Idempotent: when nothing changed since the last successful run it only checks
# imports and returns in seconds; mmcv is compiled only when no compiled mmcv
# (with ops) is importable.
#
# Environment overrides:
#   DFSS_VENV             virtualenv folder (default: <repo>/.venv)
#   PYTHON                interpreter that creates the virtualenv (default: python3)
#   DFSS_TORCH_SPEC       torch requirement (default: torch==2.13.0, the CPU build here)
#   DFSS_TORCH_INDEX_URL  extra index for torch, e.g. PyTorch's CPU/CUDA wheel index
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${DFSS_VENV:-$ROOT/.venv}"
PY_BOOT="${PYTHON:-python3}"
TORCH_SPEC="${DFSS_TORCH_SPEC:-torch==2.13.0}"
MMCV_VERSION="2.1.0"

log() { echo "[setup_env] $*" >&2; }

if [ ! -x "$VENV/bin/python" ]; then
  log "creating virtualenv $VENV"
  "$PY_BOOT" -m venv "$VENV"
fi
PY="$VENV/bin/python"
PIP=("$PY" -m pip --disable-pip-version-check)

STAMP="$VENV/.dfss-setup.stamp"
KEY="$(cat "$ROOT/setup.py" "$ROOT/scripts/setup_env.sh" | sha256sum | cut -d' ' -f1)"

imports_ok() {
  "$PY" - <<'PYEOF' >/dev/null 2>&1
import torch, mmengine, mmseg, mmseg_dfss  # noqa: F401
from mmcv import _ext  # noqa: F401  (compiled ops)
PYEOF
}

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$KEY" ] && imports_ok; then
  log "environment up to date ($VENV)"
  exit 0
fi

start=$(date +%s)
if ! "$PY" -c "import torch" >/dev/null 2>&1; then
  log "installing $TORCH_SPEC"
  if [ -n "${DFSS_TORCH_INDEX_URL:-}" ]; then
    "${PIP[@]}" install "$TORCH_SPEC" --extra-index-url "$DFSS_TORCH_INDEX_URL"
  else
    "${PIP[@]}" install "$TORCH_SPEC"
  fi
fi

# setuptools<81 still ships pkg_resources (mmengine resolves mmseg:: bases with it,
# mmcv's setup.py imports it); >=77 satisfies recent torch.
"${PIP[@]}" install -q 'setuptools>=77,<81' ninja wheel

if ! "$PY" -c "from mmcv import _ext" >/dev/null 2>&1; then
  log "no compiled mmcv importable: building mmcv==$MMCV_VERSION with ops" \
      "(about 16 minutes on 2 cores the first time; pip's wheel cache makes it fast afterwards)"
  MMCV_WITH_OPS=1 MAX_JOBS="${MAX_JOBS:-$(nproc)}" \
    "${PIP[@]}" install --no-build-isolation "mmcv==$MMCV_VERSION"
fi

log "installing mmseg-dfss (editable) with its dependencies"
"${PIP[@]}" install -q --no-build-isolation -e "$ROOT[tests,plots,convert]"

if ! imports_ok; then
  log "set-up finished but imports still fail:"
  "$PY" -c "import torch, mmengine, mmseg, mmseg_dfss; from mmcv import _ext"
  exit 1
fi
echo "$KEY" > "$STAMP"
log "environment ready in $(( $(date +%s) - start ))s ($VENV)"
