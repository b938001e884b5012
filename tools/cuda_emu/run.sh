#!/usr/bin/env bash
# Runs the GPU tests (tests/test_cuda.py: the ops; tests/test_cuda_model.py: models on the GPU)
# against fastcnn's real CUDA sources compiled as C++ for a CPU emulation
# of the CUDA execution model (cuda_emu.h: one fiber per CUDA thread, barriers, shuffled
# scheduling between barriers) and a NumPy-backed stand-in for CuPy (fake_cupy/). No GPU, no
# nvcc needed. This checks the kernels' logic (indexing, tiling, barriers, grid-stride loops,
# 32/64-bit paths, every output written); speed and real-GPU behaviour need a GPU.
#
#   tools/cuda_emu/run.sh [pytest args...]      env: PYTHON (default python3), EXTRA_CXXFLAGS,
#                                               CAP1D / CAPX / CAPYZ (launch caps), NARROW,
#                                               TESTS (test files, space-separated; default
#                                               "tests/test_cuda.py tests/test_cuda_model.py"),
#                                               RUN (a script + args to run instead of pytest,
#                                               e.g. benchmarks/run_cuda_host_cost.py),
#                                               EMU_BUILD (a build folder to keep and reuse),
#                                               EMU_CPU_MODULE (an already built _cpu module of
#                                               these sources, e.g. the installed one: CI; then
#                                               only the small fastcnn_common library is built)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
py="${PYTHON:-python3}"
if [ -n "${EMU_BUILD:-}" ]; then  # a kept build folder: only what changed is rebuilt
  out="$EMU_BUILD"
  mkdir -p "$out"
  rm -rf "$out/site"
else
  out="$(mktemp -d)"
  trap 'rm -rf "$out"' EXIT
fi
extra="${EXTRA_CXXFLAGS:-}"

# 1. the CPU module and the device-neutral library (the argument checks both bindings link)
cmake -S "$root" -B "$out/build" -G Ninja -DFASTCNN_CUDA=OFF -DCMAKE_BUILD_TYPE=Release \
  -DPython_EXECUTABLE="$("$py" -c 'import sys; print(sys.executable)')" \
  -Dpybind11_DIR="$("$py" -c 'import pybind11; print(pybind11.get_cmake_dir())')" >/dev/null
if [ -n "${EMU_CPU_MODULE:-}" ]; then
  cmake --build "$out/build" --target fastcnn_common -j 2 >/dev/null
else
  cmake --build "$out/build" --target _cpu fastcnn_common -j 2 >/dev/null
fi

# 2. the CUDA sources as C++ against the emulator, small launch caps so every grid-stride loop
#    runs several rounds
inc=(-I"$root/csrc" $("$py" -m pybind11 --includes))
defs=("-DFASTCNN_CUDA_EMULATE=\"$here/cuda_emu.h\"" "-DFASTCNN_CUDA_MAX_BLOCKS_1D=${CAP1D:-3}"
      "-DFASTCNN_CUDA_MAX_GRID_X=${CAPX:-2}" "-DFASTCNN_CUDA_MAX_GRID_YZ=${CAPYZ:-2}"
      "-DFASTCNN_CUDA_NARROW_LIMIT=${NARROW:-2147483648}")
flags=(-std=c++17 -O1 -g -fPIC -ffp-contract=off -Wall -Wextra -Wno-unused-parameter
       -Wno-unknown-pragmas -Wno-clobbered $extra)
objs=()
# stale: the object is missing or older than its source or any header it may include
# (with EMU_BUILD, the flags are assumed unchanged between runs)
headers=("$here/cuda_emu.h" "$root"/csrc/cuda/*.cuh "$root"/csrc/cuda/*.h "$root"/csrc/common/*.h
         "$root"/csrc/bindings/*.h)
stale() {
  [ -e "$2" ] || return 0
  for h in "$1" "${headers[@]}"; do [ "$h" -nt "$2" ] && return 0; done
  return 1
}
for f in "$root"/csrc/cuda/*.cu; do
  o="$out/$(basename "$f").o"
  if stale "$f" "$o"; then g++ "${flags[@]}" -x c++ "${inc[@]}" "${defs[@]}" -c "$f" -o "$o" & fi
  objs+=("$o")
done
for f in "$root"/csrc/bindings/module_cuda.cpp "$root"/csrc/bindings/cuda_*.cpp; do
  [ -e "$f" ] || continue
  o="$out/$(basename "$f").o"
  if stale "$f" "$o"; then
    g++ "${flags[@]}" "${inc[@]}" -DFASTCNN_VERSION='"0.0.0"' \
      -DFASTCNN_CUDA_ARCHS='"emulated"' -c "$f" -o "$o" &
  fi
  objs+=("$o")
done
wait

# 3. a package directory: the sources, both modules, the fake cupy
suffix="$("$py" -c "import sysconfig; print(sysconfig.get_config_var('EXT_SUFFIX'))")"
site="$out/site"
mkdir -p "$site"
cp -r "$here/fake_cupy/cupy" "$site/"
cp -r "$root/python/fastcnn" "$site/fastcnn"
cp "${EMU_CPU_MODULE:-$out/build/_cpu$suffix}" "$site/fastcnn/_cpu$suffix"
g++ -shared $extra -o "$site/fastcnn/_cuda$suffix" "${objs[@]}" \
  "$out/build/libfastcnn_common.a"

# 4. the GPU tests (or, with RUN="script.py", that script), on the emulator
cd "$root"
if [ -n "${RUN:-}" ]; then
  read -r -a cmd <<< "$RUN"
  PYTHONPATH="$site" FASTCNN_CUDA_EMULATED=1 "$py" "${cmd[@]}" "$@"
  exit
fi
read -r -a tests <<< "${TESTS:-tests/test_cuda.py tests/test_cuda_model.py}"
PYTHONPATH="$site" FASTCNN_CUDA_EMULATED=1 "$py" -m pytest "${tests[@]}" -p no:cacheprovider -q "$@"
