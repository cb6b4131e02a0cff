#!/usr/bin/env bash
# Benchmarks on a GPU machine without network, on the maintained OpenMMLab line.
#
#   bash scripts/offline_gpu.sh pack   # here, with PyPI: wheels into offline/wheels
#   bash scripts/offline_gpu.sh run    # there, offline: install over its torch, benchmark
#
# The maintained line (onedl-mmengine, onedl-mmcv without compiled ops,
# onedl-mmsegmentation) is pure Python, so the stack travels as a few MiB of
# wheels next to the repository. What does not travel by default: torch (the
# box's own CUDA build) and the compiled packages MMCV/MMSeg import at run time,
# numpy, opencv (cv2), scipy, Pillow, which a GPU image usually has. `run` checks
# them and names any that is missing; pack it with DFSS_OFFLINE_WITH (below).
#
# pack, variables:
#   PYTHON                 a Python with pip and network (default python3)
#   DFSS_OFFLINE_PYTHON    the target's Python version for compiled wheels (3.12)
#   DFSS_OFFLINE_WITH      more compiled wheels for the target, e.g.
#                          "opencv-python-headless scipy pillow" (~54 + 34 + 7 MiB:
#                          not all fit the 64 MiB tree)
#   DFSS_OFFLINE_BUDGET_MIB  what the tree + wheels may weigh (default 64)
# run, variables:
#   PYTHON                 the box's Python that holds torch (default python3)
#   DFSS_DEVICE            cuda (default) or cpu
#   DFSS_ADS_ARGS, DFSS_DISTILL_ARGS  benchmark arguments (defaults below, per device)
#   DFSS_OFFLINE_VENV      the virtualenv to create (default ${TMPDIR:-/tmp}/mmseg-dfss-offline-venv,
#                          outside the tree, so that offline/ stays the wheels alone)
#   DFSS_BENCH_TIMEOUT     seconds per benchmark before it is stopped (default 240)
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OFFLINE=${DFSS_OFFLINE_DIR:-$REPO/offline}
WHEELS=$OFFLINE/wheels
PYTHON=${PYTHON:-python3}

# the maintained line's onedl-* requirements as mmseg_dfss/core/stack.py declares them
# (REQUIREMENTS, which setup.py's extras use); the project itself is built from this tree
read_stack() {
  (cd "$REPO" && "$PYTHON" -c "
scope = {}
exec(open('mmseg_dfss/core/stack.py').read(), scope)
specs = scope['REQUIREMENTS'][scope['MAINTAINED']]
print(' '.join(s for s in specs if s.startswith('onedl-')))")
}
# their pure-Python requirements (and this project's) that a torch image may lack;
# `run` installs only those the box does not have already
PURE_DEPS=(addict yapf platformdirs termcolor rich markdown-it-py mdurl pygments
           ftfy wcwidth prettytable tqdm packaging)
# small compiled requirements, fetched for the target's Python (0.8 MiB each)
SMALL_BINARY=(pyyaml regex)
# modules the benchmarks import that are not packed by default -> pip name
NEEDED_ON_BOX="numpy:numpy cv2:opencv-python-headless scipy:scipy PIL:pillow"

T_START=$(date +%s.%N)
log() { echo "[offline_gpu] $*"; }
die() { echo "[offline_gpu] error: $*" >&2; exit 1; }
# phase NAME CMD...: runs CMD and prints how long it took
phase() {
  local name=$1 t0 t1 rc=0
  shift
  t0=$(date +%s.%N)
  "$@" || rc=$?
  t1=$(date +%s.%N)
  log "phase $name: $(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.1f", b-a}') s (exit $rc)"
  return $rc
}
total() { log "total: $(awk -v a="$T_START" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}') s"; }

# ---------------------------------------------------------------------- pack
pack_stack() {
  # onedl-mmcv is an sdist: built in pip's isolated build env, which holds no torch,
  # so no op is compiled (MMCV_WITH_OPS=0 says so explicitly)
  MMCV_WITH_OPS=0 "$PYTHON" -m pip wheel -q --no-deps -w "$WHEELS" "${STACK[@]}"
}
pack_pure() {
  "$PYTHON" -m pip download -q --no-deps --only-binary=:all: --implementation py \
    --python-version "$TARGET_PY" --platform any -d "$WHEELS" "${PURE_DEPS[@]}"
}
pack_binary() {
  "$PYTHON" -m pip download -q --no-deps --only-binary=:all: --implementation cp \
    --python-version "$TARGET_PY" --platform manylinux_2_28_x86_64 \
    --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d "$WHEELS" "$@"
}
pack_project() {
  "$PYTHON" -m pip wheel -q --no-deps -w "$WHEELS" "$REPO"
}
check_pack() {
  # every wheel but the compiled ones asked for must be pure Python (no .so)
  "$PYTHON" - "$WHEELS" "${SMALL_BINARY[@]}" ${DFSS_OFFLINE_WITH:-} <<'EOF'
import re, sys, zipfile, pathlib
folder, binary = pathlib.Path(sys.argv[1]), {re.sub(r'[-_.]+', '_', n.lower())
                                             for n in sys.argv[2:]}
bad = []
for whl in sorted(folder.glob('*.whl')):
    name = re.sub(r'[-_.]+', '_', whl.name.split('-')[0].lower())
    with zipfile.ZipFile(whl) as z:
        compiled = [n for n in z.namelist() if n.endswith(('.so', '.pyd', '.dylib'))]
        wheel = next(z.read(n).decode() for n in z.namelist()
                     if n.endswith('.dist-info/WHEEL'))
    pure = 'Root-Is-Purelib: true' in wheel and not compiled
    if not pure and name not in binary:
        bad.append(f'{whl.name} ({len(compiled)} compiled files)')
    print(f'  {whl.stat().st_size / 2**20:7.2f} MiB  {"pure" if pure else "compiled"}  '
          f'{whl.name}')
if bad:
    sys.exit('[offline_gpu] error: expected pure-Python wheels, got: ' + ', '.join(bad))
EOF
}
cmd_pack() {
  TARGET_PY=${DFSS_OFFLINE_PYTHON:-3.12}
  read -r -a STACK <<<"$(read_stack)" && [ ${#STACK[@]} -eq 3 ] ||
    die "could not read the maintained line's requirements from mmseg_dfss/core/stack.py"
  log "packing for Python $TARGET_PY into $WHEELS (pip of $("$PYTHON" -c 'import sys; print(sys.executable)'))"
  rm -rf "$WHEELS"
  mkdir -p "$WHEELS"
  phase "stack wheels (${STACK[*]})" pack_stack
  phase "pure-Python requirements" pack_pure
  # shellcheck disable=SC2086
  phase "compiled requirements for cp${TARGET_PY/./} (${SMALL_BINARY[*]} ${DFSS_OFFLINE_WITH:-})" \
    pack_binary "${SMALL_BINARY[@]}" ${DFSS_OFFLINE_WITH:-}
  phase "this project (mmseg-dfss) as a wheel" pack_project
  check_pack
  local wheels tree budget=${DFSS_OFFLINE_BUDGET_MIB:-64}
  wheels=$(du -sb "$WHEELS" | cut -f1)
  if git -C "$REPO" rev-parse --git-dir >/dev/null 2>&1; then  # what a checkout copies
    tree=$(cd "$REPO" && git ls-files -z | xargs -0 du -cb | tail -1 | cut -f1)
  else
    tree=$(du -sb --exclude=./offline --exclude=./.venv "$REPO" | cut -f1)
  fi
  log "wheels: $(ls "$WHEELS"/*.whl | wc -l) files, $(awk -v b="$wheels" 'BEGIN{printf "%.2f", b/2^20}') MiB;" \
    "repository (tracked files): $(awk -v b="$tree" 'BEGIN{printf "%.2f", b/2^20}') MiB;" \
    "together $(awk -v b="$((wheels + tree))" 'BEGIN{printf "%.2f", b/2^20}') MiB (budget $budget MiB)"
  [ $((wheels + tree)) -le $((budget * 1048576)) ] ||
    die "the repository and its wheels exceed $budget MiB: pack fewer DFSS_OFFLINE_WITH packages"
  log "the target must already have: torch (its CUDA build), numpy, opencv (cv2), scipy, Pillow" \
    "${DFSS_OFFLINE_WITH:+(except: $DFSS_OFFLINE_WITH)}"
  log "copy the repository with offline/ to the GPU machine, then: bash scripts/offline_gpu.sh run"
  total
}

# ----------------------------------------------------------------------- run
make_venv() {
  if [ -x "$VENV/bin/python" ]; then
    log "reusing $VENV"
    return 0
  fi
  "$PYTHON" -m venv --system-site-packages "$VENV"
  # a venv made from a venv's Python (e.g. an image's /opt/torch/.venv) sees the base
  # interpreter's packages, not that venv's: point it at them (after its own)
  "$PYTHON" - "$VENV" <<'EOF'
import pathlib, site, subprocess, sys
if sys.prefix != sys.base_prefix:
    child = subprocess.check_output(
        [f'{sys.argv[1]}/bin/python', '-c', 'import sysconfig; print(sysconfig.get_path("purelib"))'],
        text=True).strip()
    pathlib.Path(child, '_dfss_parent_env.pth').write_text('\n'.join(site.getsitepackages()) + '\n')
    print(f'[offline_gpu] {sys.executable} is a virtualenv: its packages stay visible')
EOF
}
install_offline() {
  local vpy=$VENV/bin/python
  # the stack and this project, without their declared requirements: onedl-mmcv asks
  # for opencv-python where the box may have opencv-python-headless; what it needs at
  # run time is checked below by importing it
  local wanted=()
  for f in "$WHEELS"/onedl_mm*.whl "$WHEELS"/mmseg_dfss-*.whl; do
    [ -e "$f" ] || die "$f missing: run 'bash scripts/offline_gpu.sh pack' where PyPI is reachable"
    wanted+=("$f")
  done
  # requirements packed here that the box lacks (a name it already has is left alone)
  mapfile -t missing < <("$vpy" - "$WHEELS" <<'EOF'
import importlib.metadata as md, pathlib, re, sys
stack = re.compile(r'^(onedl_mm|mmseg_dfss-)')
for whl in sorted(pathlib.Path(sys.argv[1]).glob('*.whl')):
    if stack.match(whl.name):
        continue
    try:
        md.distribution(whl.name.split('-')[0])
    except md.PackageNotFoundError:
        print(whl)
EOF
  )
  # --force-reinstall: a venv reused after a new pack gets the new wheels (same versions)
  "$vpy" -m pip install -q --no-index --no-deps --find-links "$WHEELS" --force-reinstall \
    "${wanted[@]}" ${missing[@]+"${missing[@]}"}
  log "installed ${#wanted[@]} stack/project wheels and ${#missing[@]} requirements the box lacked:" \
    "$(for f in ${missing[@]+"${missing[@]}"}; do basename "$f" | cut -d- -f1; done | tr '\n' ' ')"
}
check_imports() {
  "$VENV/bin/python" - "$NEEDED_ON_BOX" "$DEVICE" <<'EOF'
import importlib, sys
needed, device = sys.argv[1].split(), sys.argv[2]
try:
    import torch  # noqa: F401
except ImportError:
    sys.exit(f'[offline_gpu] error: {sys.executable} has no torch: set PYTHON to the '
             "box's Python that holds its CUDA torch")
missing = []
for pair in needed + ['yaml:pyyaml', 'regex:regex']:
    mod, pip_name = pair.split(':')
    try:
        importlib.import_module(mod)
    except ImportError as e:
        missing.append(f'{mod} ({pip_name}: {e})')
if missing:
    sys.exit('[offline_gpu] error: this Python lacks ' + '; '.join(missing) + '. Pack the '
             'missing pip names where PyPI is reachable: DFSS_OFFLINE_WITH="NAME ..." bash '
             'scripts/offline_gpu.sh pack, for this Python '
             f'(DFSS_OFFLINE_PYTHON={sys.version_info[0]}.{sys.version_info[1]})')
import mmcv, mmengine, mmseg, torch
import mmseg_dfss  # noqa: F401  (checks the stack is one supported line)
print(f'[offline_gpu] Python {sys.version.split()[0]}, torch {torch.__version__} '
      f'(CUDA {torch.version.cuda}, available: {torch.cuda.is_available()}), '
      f'mmengine {mmengine.__version__}, mmcv {mmcv.__version__}, mmseg {mmseg.__version__}')
if device.startswith('cuda') and not torch.cuda.is_available():
    sys.exit('[offline_gpu] error: DFSS_DEVICE=cuda but torch sees no GPU '
             '(set DFSS_DEVICE=cpu to try the benchmarks on the CPU)')
if torch.cuda.is_available():
    print(f'[offline_gpu] GPU: {torch.cuda.get_device_name(0)}')
EOF
}
bench() {
  local script=$1 log
  shift
  log=$OFFLINE/logs/$(basename "$script" .py).log
  mkdir -p "$OFFLINE/logs"
  (cd "$REPO" && set -o pipefail && PYTHONUNBUFFERED=1 timeout "${DFSS_BENCH_TIMEOUT:-240}" \
    "$VENV/bin/python" "$script" --device "$DEVICE" "$@" 2>&1 | tee "$log")
}
summary() {
  # the figures of both benchmarks together, after their logs
  log "results ($OFFLINE/logs):"
  grep -hE '^\[(speed|memory)\]|^(config|distill|bound|ratio)' \
    "$OFFLINE"/logs/ads_throughput.log "$OFFLINE"/logs/distill_step.log || true
}
cmd_run() {
  DEVICE=${DFSS_DEVICE:-cuda}
  VENV=${DFSS_OFFLINE_VENV:-${TMPDIR:-/tmp}/mmseg-dfss-offline-venv}
  if [[ $DEVICE == cuda* ]]; then
    ADS_ARGS=${DFSS_ADS_ARGS:---num-images 256 --batch-size 16 --rounds 2}
    DISTILL_ARGS=${DFSS_DISTILL_ARGS:---batch-size 24 --repeats 20}  # the paper's batch per GPU
  else  # a smoke-size run, to try the procedure on a CPU
    ADS_ARGS=${DFSS_ADS_ARGS:---num-images 4 --batch-size 2 --rounds 1 --memory-pools 20 40}
    DISTILL_ARGS=${DFSS_DISTILL_ARGS:---batch-size 2 --repeats 1 --warmup 1}
  fi
  [ -d "$WHEELS" ] || die "$WHEELS missing: run 'bash scripts/offline_gpu.sh pack' where PyPI is reachable"
  # offline: only the packed wheels, whatever pip configuration the box has
  while IFS= read -r var; do unset "$var"; done < <(env | grep -o '^PIP_[A-Z_]*' || true)
  export PIP_CONFIG_FILE=/dev/null PIP_NO_INDEX=1 PIP_DISABLE_PIP_VERSION_CHECK=1
  "$PYTHON" -c 'import torch' 2>/dev/null ||
    die "$PYTHON has no torch: set PYTHON to the box's Python that holds its CUDA torch"
  log "device $DEVICE, Python $("$PYTHON" -c 'import sys; print(sys.executable)'), venv $VENV"
  phase "virtualenv over the installed torch" make_venv
  phase "offline install" install_offline
  phase "import check" check_imports
  # shellcheck disable=SC2086  # the arguments are words
  phase "benchmarks/ads_throughput.py $ADS_ARGS" bench benchmarks/ads_throughput.py $ADS_ARGS
  # shellcheck disable=SC2086
  phase "benchmarks/distill_step.py $DISTILL_ARGS" bench benchmarks/distill_step.py $DISTILL_ARGS
  summary
  total
}

case "${1:-}" in
  pack) cmd_pack ;;
  run) cmd_run ;;
  *) echo "usage: bash scripts/offline_gpu.sh pack|run  (see the variables at the top)" >&2; exit 2 ;;
esac
