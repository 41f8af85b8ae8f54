#!/usr/bin/env bash
# One call on a lent GPU machine: install irshim (+ carried Liger wheel), run the
# kernel tests on the GPU, then the requested benchmark steps. Logs under $OUT.
#   bash benchmarks/run_device.sh tests sweep norms activations
set -uo pipefail
export PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site
fi
python3 -m pip install -q --no-deps --no-build-isolation --no-index -e . > /tmp/install.log 2>&1 || { cat /tmp/install.log; exit 1; }
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem,temperature.gpu --format=csv
python3 -c "import torch, triton, irshim.ir as ir; print(torch.__version__, triton.__version__, ir.load_providers(), ir.ops.rms_norm.get_priority())"
for step in "$@"; do
  start=$(date +%s)
  case $step in
    tests) python3 -m pytest tests/kernels -q -p no:cacheprovider -x --durations=5 2>&1 | tee "$OUT/pytest_kernels.txt" | tail -25 ;;
    sweep) python3 benchmarks/bench_norms.py --sweep 2>&1 | tee "$OUT/sweep.txt" | grep -v "^sweep:" ;
           python3 benchmarks/bench_activations.py --sweep 2>&1 | tee -a "$OUT/sweep.txt" | grep -v "^sweep:" ;;
    norms) python3 benchmarks/bench_norms.py --out "$OUT" ${NORM_ARGS:-} 2>&1 | tee "$OUT/bench_norms.log" | tail -70 ;;
    activations) python3 benchmarks/bench_activations.py --out "$OUT" ${ACT_ARGS:-} 2>&1 | tee "$OUT/bench_activations.log" | tail -140 ;;
  esac
  echo "== step $step took $(( $(date +%s) - start )) s"
done
