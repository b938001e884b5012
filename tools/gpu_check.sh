#!/usr/bin/env bash
# The GPU check: the one command a session with a GPU runs (on the device machine, no network):
#
#   OUT=/some/dir bash tools/gpu_check.sh       (the device tool sets OUT; default ./gpu-check)
#
# Stages, each under its own time limit, the whole within BUDGET_S (default 570 s, so it fits
# in a 10-minute call):
#   build      pip install --no-build-isolation --no-deps . (FASTCNN_CUDA=ON; CUDA architecture
#              of this GPU only, from nvidia-smi, unless FASTCNN_CUDA_ARCHS is set)
#   info       nvidia-smi, nvcc, versions, `fastcnn info`; fails when fastcnn can't use the GPU
#   pytest     tests/test_cuda.py tests/test_cuda_model.py tests/test_bench_cuda.py
#   memcheck   compute-sanitizer memcheck over a short CUDA test selection (SAN_K), with
#              CuPy's memory pools off (cupy.cuda.set_allocator(None)): every array is its own
#              cudaMalloc, so an access past its end is caught, not hidden in a pooled block
#   racecheck  compute-sanitizer racecheck (shared-memory hazards) over the same selection
#   bench      fastcnn bench --device cuda --suite all --out $OUT/gpu-bench (stopped with
#              SIGINT at its limit: it then writes what it measured)
# The sanitizer stages leave BENCH_MIN_S (default 180 s) of the budget to the benchmark.
#
# Files in $OUT (the device tool returns at most 8): gpu_check.log (every stage's output),
# summary.txt (one line per stage: ok / FAILED / TIMED OUT, seconds) and gpu-bench/
# (results.json, results.md, table.txt, speedup.png). Exit status: 0 when every stage passed.
# Env: PYTHON (default python3), BUDGET_S, BENCH_MIN_S, SAN_K, BENCH_ARGS (extra bench options).
set -uo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
OUT="${OUT:-$root/gpu-check}"
mkdir -p "$OUT"
py="${PYTHON:-python3}"
log="$OUT/gpu_check.log"
summary="$OUT/summary.txt"
: > "$log"
: > "$summary"
start=$(date +%s)
budget="${BUDGET_S:-570}"
bench_min="${BENCH_MIN_S:-180}"
failed=0
export PYTHONUNBUFFERED=1 HYPOTHESIS_PROFILE=ci CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)"
for d in /usr/local/cuda/bin /usr/local/cuda/compute-sanitizer; do
  [ -d "$d" ] && export PATH="$PATH:$d"
done

# stage NAME LIMIT_S RESERVE_S CMD...: run CMD with at most LIMIT_S seconds, and no more than
# what is left of the budget minus RESERVE_S; log its output, note its status in the summary.
stage() {
  local name=$1 limit=$2 reserve=$3
  shift 3
  local left=$(( budget - ($(date +%s) - start) - reserve ))
  (( limit > left )) && limit=$left
  if (( limit < 5 )); then
    printf '%-10s %-18s\n' "$name" "SKIPPED (no time)" | tee -a "$summary"
    failed=1
    return 1
  fi
  printf '\n===== %s (limit %ss): %s\n' "$name" "$limit" "$*" >> "$log"
  local t0 rc status
  t0=$(date +%s)
  timeout -s INT -k 20 "$limit" "$@" >> "$log" 2>&1
  rc=$?
  status=ok
  if (( rc == 124 || rc == 137 )); then
    status="TIMED OUT"
  elif (( rc != 0 )); then
    status="FAILED (exit $rc)"
  fi
  (( rc != 0 )) && failed=1
  printf '%-10s %-18s %4ss\n' "$name" "$status" "$(( $(date +%s) - t0 ))" | tee -a "$summary"
  return $rc
}

# ---- build -----------------------------------------------------------------------------------
if [ -z "${FASTCNN_CUDA_ARCHS:-}" ]; then
  cc="$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -n1 | tr -d ' .')"
  [[ "$cc" =~ ^[0-9]+$ ]] && export FASTCNN_CUDA_ARCHS="$cc"
fi
export FASTCNN_CUDA=ON
stage build 240 0 "$py" -m pip install --no-build-isolation --no-deps --no-index -v . || {
  echo "build failed: see $log" >&2
  exit 1
}

# ---- info ------------------------------------------------------------------------------------
info() {
  nvidia-smi || true
  nvcc --version || true
  command -v compute-sanitizer || true
  "$py" -c 'import sys, numpy, cupy; print("python", sys.version.split()[0], "numpy",
numpy.__version__, "cupy", cupy.__version__)'
  "$py" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda,
"available", torch.cuda.is_available(), "cudnn", torch.backends.cudnn.version())' || true
  "$py" -m fastcnn.cli info
  "$py" -c 'import fastcnn, sys; i = fastcnn.info(); sys.exit(0 if i["cuda_available"] else
"fastcnn cannot use the GPU: " + str(i))'
}
export -f info
export py
stage info 60 0 bash -c info || {
  echo "fastcnn cannot use the GPU: see $log" >&2
  exit 1
}

# ---- tests -----------------------------------------------------------------------------------
stage pytest 150 "$bench_min" "$py" -m pytest -p no:cacheprovider -q -ra \
  tests/test_cuda.py tests/test_cuda_model.py tests/test_bench_cuda.py

# every kernel file: conv2d, maxpool2d, relu, linear (+ gemm), softmax, optim
san_k="${SAN_K:-test_conv2d_against_cpu or test_max_pool2d_against_cpu or test_max_pool2d_user_indices or test_relu_against_cpu or test_linear_against_cpu or test_softmax_against_cpu or test_cross_entropy_labels or test_sgd_update_matches_numpy or test_adam_update_matches_numpy}"
no_pool='import sys, cupy, pytest
cupy.cuda.set_allocator(None)
cupy.cuda.set_pinned_memory_allocator(None)
sys.exit(pytest.main(sys.argv[1:]))'
if command -v compute-sanitizer >/dev/null; then
  for tool in memcheck racecheck; do
    stage "$tool" 90 "$bench_min" compute-sanitizer --tool "$tool" --error-exitcode 86 \
      --print-limit 20 "$py" -c "$no_pool" tests/test_cuda.py -p no:cacheprovider -q -x \
      -k "$san_k"
  done
else
  printf '%-10s %-18s\n' sanitizer "MISSING (no compute-sanitizer)" | tee -a "$summary"
  failed=1
fi

# ---- benchmark -------------------------------------------------------------------------------
# shellcheck disable=SC2086  # BENCH_ARGS: extra options, split on purpose
stage bench 600 10 "$py" -m fastcnn.cli bench --device cuda --suite all \
  --out "$OUT/gpu-bench" ${BENCH_ARGS:-}

printf 'total %ss\n' "$(( $(date +%s) - start ))" | tee -a "$summary"
exit $failed
