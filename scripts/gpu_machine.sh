#!/bin/bash
# Grade on a GPU machine that has PyTorch (python3) but no network and none of the grading
# tools: the recipe used on a lent NVIDIA H200 (2026-11-27, docs/benchmarks/class.md).
#
# Beforehand, on a machine with pip access, in the course root:
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#     --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
#     --platform manylinux2014_x86_64 -d .whl -r scripts/offline-grading-wheels.txt
#   (the packages a grading run imports that a PyTorch image lacks: nbgrader, nbclient,
#   ipykernel, SQLAlchemy, mlxtend, ...; measured with an import audit hook)
#   mkdir -p .bwrap && cp "$(command -v bwrap)" .bwrap/   (if the GPU machine has no bubblewrap;
#   add its libraries, `ldd $(command -v bwrap)`, when that machine lacks them)
# There:
#   bash scripts/gpu_machine.sh setup | check | sweep ARGS | class ARGS
# `sweep` and `class` pass ARGS to scripts/bench_class.py and write under ${OUT:-/tmp/bench}.
# For example: `class --students 32`, then `sweep --assignments 03_transfer_learning
# --sweep 16,16/8,16/4,16/0 --sweep-students 16` (W/G: W workers, G of them on the GPU).
# Compare a class's grades with another run's: scripts/bench_class.py ... --compare CSV
# (docs/benchmarks/class-grades-h100.csv: the H100 run of 2026-11-27, 32 x 3).
set -u
export PYTHONUNBUFFERED=1 MPLBACKEND=Agg
OUT=${OUT:-/tmp/bench}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
T0=$(date +%s)
say() { echo "[$(( $(date +%s) - T0 ))s] $*"; }

setup() {
  [ -f /tmp/.graders-gpu-setup ] && return 0
  say "installing the grading tools from .whl/ (no network)"
  $PY -m pip install -q --no-index --no-deps --no-cache-dir .whl/*.whl || return 1
  $PY -m pip install -q --no-index --no-deps --no-build-isolation -e . || return 1
  if ! command -v bwrap >/dev/null && [ -x .bwrap/bwrap ]; then
    cp .bwrap/bwrap /usr/local/bin/bwrap
    if ldd /usr/local/bin/bwrap | grep -q "not found"; then
      mkdir -p /usr/local/lib/graders-bwrap && cp .bwrap/lib*.so* /usr/local/lib/graders-bwrap/
      echo /usr/local/lib/graders-bwrap > /etc/ld.so.conf.d/graders-bwrap.conf && ldconfig
    fi
  fi
  say "warming the MNIST cache (kernels read it, read-only)"
  $PY -c "from dlworkshop.data import load_mnist; print(load_mnist().describe())" || return 1
  touch /tmp/.graders-gpu-setup
}

setup || { say "setup failed"; exit 1; }
step=${1:-check}
shift || true
case "$step" in
  setup) ;;
  check)
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
    $PY -c "import torch; print(torch.__version__, torch.cuda.is_available())"
    $PY -c "from graders import sandbox; print(sandbox.sandbox_status())"
    $PY -c "from graders import cpushare as c; print('cpu groups:', c.hierarchy() or c.unavailable_reason())"
    $PY scripts/bench_cpushare.py --busy 32 --repeats 3 || true
    $PY -m pytest -q -n 4 -p no:cacheprovider tests/test_device.py tests/test_sandbox.py
    ;;
  sweep) $PY scripts/bench_class.py --sweep-only --serial 0 --out "$OUT/class.md" "$@" ;;
  class) $PY scripts/bench_class.py --serial 0 --out "$OUT/class.md" --scores "$OUT/grades.csv" "$@" ;;
  *) echo "usage: $0 setup|check|sweep ARGS|class ARGS" >&2; exit 2 ;;
esac
say "$step done"
