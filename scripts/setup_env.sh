#!/usr/bin/env bash
# Creates (or reuses) the project's virtualenv and installs everything DFSS needs, on
# one of the two OpenMMLab lines (they share import names: never both in one venv):
#
#   DFSS_STACK=maintained (default)  onedl-mmengine, onedl-mmcv (no compiled ops),
#                                    onedl-mmsegmentation: pure-Python wheels, nothing compiled
#   DFSS_STACK=1.2                   mmengine 0.10.7, mmcv 2.1.0 compiled with ops,
#                                    mmsegmentation 1.2.2 (OpenMMLab's last release line)
#
# Idempotent: when nothing changed since the last successful run it only checks
# imports and returns in seconds.
#
# Environment overrides:
#   DFSS_STACK            maintained | 1.2 (default: maintained)
#   DFSS_VENV             virtualenv folder (default: <repo>/.venv, <repo>/.venv-1.2 for 1.2)
#   PYTHON                interpreter that creates the virtualenv (default: python3)
#   DFSS_TORCH_SPEC       torch requirement (default: torch==2.13.0, the CPU build here)
#   DFSS_TORCH_INDEX_URL  extra index for torch, e.g. PyTorch's CPU/CUDA wheel index
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/stack_env.sh"
PY_BOOT="${PYTHON:-python3}"
TORCH_SPEC="${DFSS_TORCH_SPEC:-torch==2.13.0}"
MMCV_VERSION="2.1.0"

log() { echo "[setup_env] $*" >&2; }

if [ ! -x "$VENV/bin/python" ]; then
  log "creating virtualenv $VENV ($STACK line)"
  "$PY_BOOT" -m venv "$VENV"
fi
PY="$VENV/bin/python"
PIP=("$PY" -m pip --disable-pip-version-check)

# Never put the other line into a virtualenv that holds one (shared import names).
have=$("$PY" "$ROOT/mmseg_dfss/core/stack.py")
if [ -n "$have" ] && [ "$have" != "$STACK" ]; then
  log "$VENV holds the OpenMMLab line(s) '$have', not the requested $STACK line; the two" \
      "share import names and must not meet in one environment. Use another DFSS_VENV" \
      "(each line has its own default: .venv, .venv-1.2) or remove $VENV."
  exit 2
fi

STAMP="$VENV/.dfss-setup.stamp"
KEY="$( (echo "$STACK $TORCH_SPEC"; cat "$ROOT/setup.py" "$ROOT/scripts/setup_env.sh" \
        "$ROOT/scripts/stack_env.sh" "$ROOT/mmseg_dfss/core/stack.py") | sha256sum | cut -d' ' -f1)"

imports_ok() {
  if [ "$STACK" = 1.2 ]; then ops='from mmcv import _ext'; else ops='pass'; fi
  "$PY" -c "import torch, mmengine, mmseg, mmseg_dfss; $ops" >/dev/null 2>&1
}

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$KEY" ] && imports_ok; then
  log "environment up to date ($VENV, $STACK line)"
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

if [ "$STACK" = 1.2 ]; then
  # setuptools<81 still ships pkg_resources (mmengine 0.10.7 resolves mmseg:: bases with
  # it, mmcv's setup.py imports it); >=77 satisfies recent torch.
  "${PIP[@]}" install -q 'setuptools>=77,<81' ninja wheel
  if ! "$PY" -c "from mmcv import _ext" >/dev/null 2>&1; then
    log "no compiled mmcv importable: building mmcv==$MMCV_VERSION with ops" \
        "(about 15 minutes on 2 cores the first time; pip's wheel cache makes it fast afterwards)"
    MMCV_WITH_OPS=1 MAX_JOBS="${MAX_JOBS:-$(nproc)}" \
      "${PIP[@]}" install --no-build-isolation "mmcv==$MMCV_VERSION"
  fi
  pip_isolation=(--no-build-isolation)
else
  pip_isolation=()
fi

log "installing mmseg-dfss (editable) with the $STACK line and its dependencies"
"${PIP[@]}" install -q "${pip_isolation[@]}" -e "$ROOT[$EXTRA,tests,plots,convert,deploy]"

if ! imports_ok; then
  log "set-up finished but imports still fail:"
  "$PY" -c "import torch, mmengine, mmseg, mmseg_dfss"
  exit 1
fi
echo "$KEY" > "$STAMP"
log "environment ready in $(( $(date +%s) - start ))s ($VENV, $STACK line)"
