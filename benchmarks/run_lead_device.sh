#!/usr/bin/env bash
# One call on a lent GPU machine for the IR, compiler, autotune and compat checks:
# install irshim, run the GPU-marked tests outside kernels/, then the benchmarks.
# Results go to $OUT/results.tar (the device returns at most 8 files), the log to stdout.
#   bash benchmarks/run_lead_device.sh tests shadow compile autotune cpu gpu-dispatch
set -uo pipefail
export PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/out}; R="$OUT/r"; mkdir -p "$R"
python3 -m pip install -q --no-deps --no-build-isolation --no-index -e . > /tmp/install.log 2>&1 || { cat /tmp/install.log; exit 1; }
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
for step in "$@"; do
  start=$(date +%s)
  case $step in
    tests) python3 -m pytest tests/ir tests/compat -m cuda -q -p no:cacheprovider 2>&1 | tail -8
           python3 -m pytest tests/ir/ops/test_compare.py -q -p no:cacheprovider 2>&1 | tail -3 ;;
    kernels) python3 -m pytest tests/kernels/test_triton_norms.py tests/kernels/test_triton_activations.py \
               -q -p no:cacheprovider 2>&1 | tail -6 ;;
    # SHADOW_TOKENS="256 2048": one run per token count, files suffixed _t<tokens>; SHADOW_ARGS: more options
    shadow) for t in ${SHADOW_TOKENS:-256}; do
              python3 benchmarks/shadow_overhead.py --tokens "$t" --suffix "_t$t" --out "$R" --profile ${SHADOW_ARGS:-} \
                > "$R/shadow_overhead_t$t.log" 2>&1
              grep -B2 -A12 "slowdown" "$R/shadow_overhead_t$t.log" | head -16
            done ;;
    compile) python3 benchmarks/compile_decoder.py --out "$R" 2>&1 | tail -20 ;;
    autotune) python3 benchmarks/autotune_check.py --tokens "${TUNE_TOKENS:-1,16,128,1024,4096,16384}" --out "$R" 2>&1 | tail -80 ;;
    # The host CPU of the GPU machine is quiet (the development machine is shared):
    # the dispatch and shim overheads are CPU figures, measured with CUDA hidden.
    cpu) CUDA_VISIBLE_DEVICES= python3 benchmarks/dispatch_overhead.py --out "$R" 2>&1 | tail -12
         CUDA_VISIBLE_DEVICES= python3 benchmarks/compat_overhead.py --out "$R" 2>&1 | tail -20
         CUDA_VISIBLE_DEVICES= python3 benchmarks/compat_overhead.py --grad-mode inference_mode --out "$R" 2>&1 | tail -20 ;;
    # The dispatcher on CUDA tensors: the Triton providers' supports_args checks included.
    gpu-dispatch) python3 benchmarks/dispatch_overhead.py --device cuda --out "$R" 2>&1 | tail -14 ;;
  esac
  echo "== step $step took $(( $(date +%s) - start )) s"
  tar -C "$R" -cf "$OUT/results.tar" .
done
