#!/usr/bin/env bash
# One entry of mmdetr's supported matrix, from scratch: a fresh venv with
# the given torch (and any other pinned packages), `make install`, then a
# test tier. Prints the wall time of each phase and the test counts.
#
#   tools/install/check_env_matrix.sh TORCH [TIER] [PIP_SPEC ...]
#
#   TORCH     torch version to pip install first, or "default" for none
#             (make install then installs the Makefile's TORCH_VERSION)
#   TIER      fast (pytest -m "not slow", the default), full (make test),
#             none (install only)
#   PIP_SPEC  more requirements installed with torch, e.g. "numpy<2"
#
# Environment: VENV (default /tmp/mmdetr-matrix/venv-TORCH), FRESH_CACHE=1
# for an empty pip cache and mmcv wheel cache (what a new machine has; mmcv
# is then compiled again), PYTHON (the interpreter the venv is made from,
# default python3).
#
# Examples (docs/install.md lists the results):
#   tools/install/check_env_matrix.sh 2.14.1 full
#   tools/install/check_env_matrix.sh default full
#   tools/install/check_env_matrix.sh 2.1.2 fast "numpy<2"
set -euo pipefail

if [ $# -lt 1 ]; then
  sed -n '2,24p' "$0" | sed 's/^# \{0,1\}//'
  exit 2
fi
torch_version=$1; tier=${2:-fast}; shift; [ $# -gt 0 ] && shift
case $tier in fast|full|none) ;; *)
  echo "check_env_matrix.sh: TIER must be fast, full or none, got '$tier'" >&2
  exit 2;;
esac
repo=$(cd "$(dirname "$0")/../.." && pwd)
base=${PYTHON:-python3}
venv=${VENV:-/tmp/mmdetr-matrix/venv-$torch_version}
log_dir=$(dirname "$venv")
mkdir -p "$log_dir"
if [ "${FRESH_CACHE:-0}" = 1 ]; then
  export PIP_CACHE_DIR=$log_dir/pip-cache-$torch_version
  export MMDETR_CACHE_DIR=$log_dir/mmdetr-cache-$torch_version
  rm -rf "$PIP_CACHE_DIR" "$MMDETR_CACHE_DIR"
fi

t0=$(date +%s)
phase() { echo "==> [matrix torch $torch_version] $1 ($(( $(date +%s) - t0 )) s)"; }

phase "fresh venv $venv from $($base --version 2>&1)"
rm -rf "$venv"
"$base" -m venv "$venv"
# shellcheck disable=SC1091
. "$venv/bin/activate"
export PIP_ROOT_USER_ACTION=ignore
if [ "$torch_version" != default ]; then
  phase "pip install torch==$torch_version $*"
  python -m pip install -q "torch==$torch_version" "$@"
elif [ $# -gt 0 ]; then
  python -m pip install -q "$@"
fi
t_install=$(date +%s)
phase "make install"
make -C "$repo" --no-print-directory install PYTHON="$venv/bin/python"
install_s=$(( $(date +%s) - t_install ))

t_tests=$(date +%s)
summary=""
status=0
if [ "$tier" != none ]; then
  phase "tests ($tier)"
  cd "$repo"
  if [ "$tier" = fast ]; then
    python -m pytest tests -m "not slow" -q -p no:cacheprovider \
      2>&1 | tee "$log_dir/tests-$torch_version.log" || status=$?
  else
    make --no-print-directory test PYTHON="$venv/bin/python" \
      PYTEST_ARGS="-q -p no:cacheprovider" \
      2>&1 | tee "$log_dir/tests-$torch_version.log" || status=$?
  fi
  # pytest's last line of each run, with or without -q's bare form
  summary=$(grep -E '(passed|failed|error).* in [0-9.]+s' \
    "$log_dir/tests-$torch_version.log" | tr -d '=' | paste -sd ';' - || true)
fi
tests_s=$(( $(date +%s) - t_tests ))
versions=$(python -c "import torch, numpy, mmcv, mmengine, mmdet; print(f'torch {torch.__version__}, numpy {numpy.__version__}, mmcv {mmcv.__version__}, mmengine {mmengine.__version__}, mmdet {mmdet.__version__}')")
echo
echo "matrix entry: torch=$torch_version tier=$tier $*"
echo "  versions:  $versions"
echo "  install:   ${install_s} s (make install, after the torch install)"
[ "$tier" != none ] && echo "  tests:     ${tests_s} s:${summary}"
echo "  total:     $(( $(date +%s) - t0 )) s"
exit $status
