#!/usr/bin/env bash
# run.sh -- build and run the im2col packer checker (im2col_check.cpp): every ISA's packer
# bit-for-bit against generic, every vector load inside its image row; AVX-512 through SIMDe
# (apt-get install libsimde-dev), so it runs on AVX2-only machines. Built with ASan + UBSan.
#   bash tools/im2col_check/run.sh [cases]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$here/../.."
out="${TMPDIR:-/tmp}/im2col_check.$$"
trap 'rm -f "$out"' EXIT
if [[ ! -e /usr/include/simde/x86/avx512.h ]]; then
  echo "im2col_check: SIMDe not found (apt-get install libsimde-dev)" >&2
  exit 2
fi
c="${CXX:-g++} -std=c++17 -O1 -g -fsanitize=address,undefined -fno-sanitize-recover=undefined"
c="$c -Wno-psabi -I$here/shim -I$root/csrc"
$c -mavx2 -mfma -o "$out" "$here/im2col_check.cpp" \
  "$root/csrc/cpu/generic/conv2d_im2col.cpp" "$root/csrc/cpu/generic/transpose.cpp" \
  "$root/csrc/cpu/avx2/conv2d_im2col_avx2.cpp" "$root/csrc/cpu/avx2/transpose_avx2.cpp" \
  "$root/csrc/cpu/avx512/conv2d_im2col_avx512.cpp" "$root/csrc/cpu/avx512/transpose_avx512.cpp"
"$out" "$@"
