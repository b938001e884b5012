#!/usr/bin/env bash
# run.sh -- the tests on the AVX-512 kernels of a CPU that has only AVX2: builds the CPU module
# with -DFASTCNN_AVX512_SIMDE=ON (csrc/cpu/avx512/*.cpp against SIMDe's implementations of the
# intrinsics, avx512_simde.h; the CPU probe reports avx512), then runs pytest on it. The results
# are the real instructions' (SIMDe and avx512_simde.h follow Intel's definitions), the speed is
# not: correctness only. Needs libsimde-dev (apt-get install libsimde-dev), cmake, ninja, g++.
#
#   tools/avx512_emu/run.sh [pytest args...]    env: PYTHON (default python3), TESTS (test files,
#                                               default: the kernel and op tests, as
#                                               .ci/sanitize), AVX512_BUILD (a build folder
#                                               to keep and reuse)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
py="${PYTHON:-python3}"
if [ ! -e /usr/include/simde/x86/avx512.h ]; then
  echo "avx512_emu: SIMDe not found (apt-get install libsimde-dev)" >&2
  exit 2
fi
if [ -n "${AVX512_BUILD:-}" ]; then
  out="$AVX512_BUILD"
  mkdir -p "$out"
  rm -rf "$out/site"
else
  out="$(mktemp -d)"
  trap 'rm -rf "$out"' EXIT
fi
cmake -S "$root" -B "$out/build" -G Ninja -DFASTCNN_CUDA=OFF -DFASTCNN_AVX512_SIMDE=ON \
  -DCMAKE_BUILD_TYPE=Release \
  -DPython_EXECUTABLE="$("$py" -c 'import sys; print(sys.executable)')" \
  -Dpybind11_DIR="$("$py" -c 'import pybind11; print(pybind11.get_cmake_dir())')" >/dev/null
cmake --build "$out/build" --target _cpu -j 2 >/dev/null
suffix="$("$py" -c "import sysconfig; print(sysconfig.get_config_var('EXT_SUFFIX'))")"
site="$out/site"
mkdir -p "$site"
cp -r "$root/python/fastcnn" "$site/fastcnn"
rm -f "$site"/fastcnn/_cpu*.so "$site"/fastcnn/_cuda*.so
cp "$out/build/_cpu$suffix" "$site/fastcnn/"
cd "$root"
PYTHONPATH="$site" "$py" - <<'PY'
import fastcnn
isa = fastcnn.info()["cpu_isa"]
assert isa == "avx512", f"the SIMDe build should report avx512, got {isa}"
print("avx512_emu: fastcnn reports cpu_isa =", isa, "(AVX-512 through SIMDe)")
PY
read -r -a tests <<< "${TESTS:-tests/test_ops_conv.py tests/test_ops_eltwise.py tests/test_ops_linear.py \
tests/test_ops_pool.py tests/test_input_handling.py tests/test_guard.py tests/test_ops_normalization.py \
tests/test_ops_pooling.py tests/test_ops_activation.py tests/test_determinism.py}"
# Deselected: the bitwise AVX2 == AVX-512 check of gelu(tanh) meets a -NaN input whose lanes
# reach an FMA as two NaNs of opposite sign; the hardware returns the NaN of the first
# *instruction* operand, and which intrinsic argument that is is the compiler's choice of
# vfmadd132/213/231, made differently for SIMDe's 256-bit halves (NaN payloads otherwise agree:
# the rest of that test passes).
PYTHONPATH="$site" "$py" -m pytest "${tests[@]}" -p no:cacheprovider -q \
  --deselect "tests/test_ops_activation.py::test_avx512_equals_avx2[gelu_tanh]" "$@"
