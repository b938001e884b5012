#!/usr/bin/env bash
# bench.sh -- time the AVX2 im2col packers alone: a base revision's (default: the one before the
# strided packers, 4e87981) against the working tree's and the generic ones (bench_pack.cpp).
#   bash tools/im2col_check/bench.sh [base-rev]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$here/../.."
rev="${1:-4e87981}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/cpu"
git -C "$root" show "$rev:csrc/cpu/conv2d_im2col_impl.h" > "$work/cpu/conv2d_im2col_impl_old.h"
git -C "$root" show "$rev:csrc/cpu/avx2/conv2d_im2col_avx2.cpp" |
  sed 's/namespace fastcnn::cpu::avx2 {/namespace fastcnn::cpu::avx2_old {/;
       s|cpu/conv2d_im2col_impl.h|cpu/conv2d_im2col_impl_old.h|' > "$work/old_body.cpp"
{ # the old file calls its ISA's transpose unqualified: declare avx2_old's (bench_pack.cpp has it)
  echo '#include "cpu/kernels.h"'
  echo 'namespace fastcnn::cpu::avx2_old {'
  echo 'void transpose(const float*, int64_t, int64_t, int64_t, float*, int64_t);'
  echo '}'
  cat "$work/old_body.cpp"
} > "$work/old_avx2.cpp"
c="${CXX:-g++} -std=c++17 -O3 -Wno-psabi -I$work -I$root/csrc"
$c -c "$root/csrc/cpu/generic/conv2d_im2col.cpp" -o "$work/gen.o"
$c -c "$root/csrc/cpu/generic/transpose.cpp" -o "$work/gen_tr.o"
$c -mavx2 -mfma -o "$work/bench" "$here/bench_pack.cpp" "$work/old_avx2.cpp" \
  "$root/csrc/cpu/avx2/conv2d_im2col_avx2.cpp" "$root/csrc/cpu/avx2/transpose_avx2.cpp" \
  "$work/gen.o" "$work/gen_tr.o"
"$work/bench"
