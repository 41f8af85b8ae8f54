#!/usr/bin/env bash
# One call on a lent GPU machine for the IR, compiler, autotune and compat checks:
# install irshim, run the GPU-marked tests outside kernels/, then the benchmarks.
#   bash benchmarks/run_lead_device.sh tests shadow compile autotune
set -uo pipefail
export PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
python3 -m pip install -q --no-deps --no-build-isolation --no-index -e . > /tmp/install.log 2>&1 || { cat /tmp/install.log; exit 1; }
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
for step in "$@"; do
  start=$(date +%s)
  case $step in
    tests) python3 -m pytest tests/ir tests/compat -m cuda -q -p no:cacheprovider 2>&1 | tail -8 ;;
    shadow) python3 benchmarks/shadow_overhead.py --out "$OUT" 2>&1 | tail -20 ;;
    compile) python3 benchmarks/compile_decoder.py --out "$OUT" 2>&1 | tail -20 ;;
    autotune) python3 benchmarks/autotune_check.py --out "$OUT" 2>&1 | tail -30 ;;
  esac
  echo "== step $step took $(( $(date +%s) - start )) s"
done
