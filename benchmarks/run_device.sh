#!/usr/bin/env bash
# One call on a lent GPU machine: install irshim (+ carried Liger wheel), run the
# requested kernel test and benchmark steps. Results go to $OUT/results.tar (the device
# returns at most 8 files), pytest logs to $OUT/r/, a summary to stdout.
#   bash benchmarks/run_device.sh tests sweep norms activations
#   bash benchmarks/run_device.sh quant-tests rope-tests quant-sweep rope-sweep demo
#   bash benchmarks/run_device.sh launch-tests   # every launch configuration against native
#   EXPLORE="act2 variants" bash benchmarks/run_device.sh explore   # explore_configs.py sections
# Wall times seen (H100/H200): tests 90 s, act-tests 40, quant-tests 80, rope-tests 100, quant 290,
# rope 80, norms 70 (gemma 50), activations core > 150 on an H100 (125 on an H200), other 80.
set -uo pipefail
export PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/out}; R="$OUT/r"; mkdir -p "$R"
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site
fi
python3 -m pip install -q --no-deps --no-build-isolation --no-index -e . > /tmp/install.log 2>&1 || { cat /tmp/install.log; exit 1; }
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem,temperature.gpu --format=csv
python3 -c "import torch, triton, irshim.ir as ir; print(torch.__version__, triton.__version__, ir.load_providers(), ir.ops.rms_norm.get_priority())"
pytest_log() {  # name, test paths...: full log kept, summary printed
  local name=$1; shift
  python3 -m pytest "$@" -q -p no:cacheprovider --durations=5 > "$R/pytest_$name.txt" 2>&1
  grep -E "passed|failed|error|FAILED|ERROR" "$R/pytest_$name.txt" | tail -25
}
for step in "$@"; do
  start=$(date +%s)
  case $step in
    tests) pytest_log kernels tests/kernels/test_triton_norms.py tests/kernels/test_triton_activations.py ;;
    act-tests) pytest_log activations tests/kernels/test_triton_activations.py tests/kernels/test_support.py ;;
    quant-tests) pytest_log quant tests/kernels/test_triton_quant.py tests/ir/ops/test_quant_semantics.py \
                   tests/ir/compile/test_quant_fusion.py tests/compat/test_quant_fp8.py ;;
    launch-tests) pytest_log launches tests/kernels/test_gpu_launch_configs.py -o log_cli=true --log-cli-level=INFO
                  grep -E "launch sets" "$R/pytest_launches.txt" ;;
    rope-tests) pytest_log rope tests/kernels/test_triton_rope.py tests/compat/test_rotary.py \
                  tests/ir/ops/test_rotary_semantics.py ;;
    sweep) python3 benchmarks/bench_norms.py --sweep > "$R/sweep.txt" 2>&1
           python3 benchmarks/bench_activations.py --sweep >> "$R/sweep.txt" 2>&1; grep -v "^sweep:" "$R/sweep.txt" ;;
    quant-sweep) python3 benchmarks/bench_quant.py --sweep > "$R/sweep_quant.txt" 2>&1; grep -v "^sweep:" "$R/sweep_quant.txt" | tail -60 ;;
    rope-sweep) python3 benchmarks/bench_rope.py --sweep > "$R/sweep_rope.txt" 2>&1; grep -v "^sweep:" "$R/sweep_rope.txt" | tail -40 ;;
    norms) python3 benchmarks/bench_norms.py --out "$R" ${NORM_ARGS:-} > "$R/bench_norms.log" 2>&1; tail -40 "$R/bench_norms.log" ;;
    activations) python3 benchmarks/bench_activations.py --out "$R" ${ACT_ARGS:-} > "$R/bench_activations.log" 2>&1; tail -60 "$R/bench_activations.log" ;;
    quant) python3 benchmarks/bench_quant.py --out "$R" ${QUANT_ARGS:-} > "$R/bench_quant.log" 2>&1; tail -50 "$R/bench_quant.log" ;;
    rope) python3 benchmarks/bench_rope.py --out "$R" ${ROPE_ARGS:-} > "$R/bench_rope.log" 2>&1; tail -40 "$R/bench_rope.log" ;;
    explore) python3 benchmarks/explore_configs.py "$R/explore" ${EXPLORE:-act2} 2>&1 | tee "$R/explore.txt" | grep -v "^W1" ;;
    demo) irshim demo --device cuda --steps 24 --run demo-gpu --report-dir "$R/demo-runs" --out "$R/demo" > "$R/demo.log" 2>&1
          tail -25 "$R/demo.log"; irshim status > "$R/demo/irshim-status.txt" 2>&1 ;;
  esac
  echo "== step $step took $(( $(date +%s) - start )) s"
  tar -C "$R" -cf "$OUT/results.tar" .
done
