# Sourced by setup_env.sh, test.sh and demo.sh: which OpenMMLab line (DFSS_STACK) and
# which virtualenv (DFSS_VENV) to use. Each line has its own default virtualenv.
STACK="${DFSS_STACK:-maintained}"
case "$STACK" in
  maintained) VENV="${DFSS_VENV:-$ROOT/.venv}"; EXTRA=maintained ;;
  1.2) VENV="${DFSS_VENV:-$ROOT/.venv-1.2}"; EXTRA=legacy ;;
  *) echo "DFSS_STACK=$STACK: use 'maintained' (default) or '1.2'" >&2; exit 2 ;;
esac
