// gemm_avx2.cpp -- AVX2+FMA SGEMM micro-kernel (4 x 24) and the tile epilogue.
//
// C[4 x 24] += A_panel[kc][4]^T * B_panel[kc][24]: per k, 3 ymm loads of B, 4 broadcasts of A,
// 12 FMAs into 12 ymm accumulators (15 of 16 registers). 12 FMA x 8 lanes x 2 = 192 flops per
// k step, 6 cycles at 2 FMA ports against 7 loads: FMA-bound, 32 flops/cycle/core peak.
#include <immintrin.h>

#include "cpu/kernels.h"

namespace fastcnn::cpu::avx2 {
namespace {
#include "cpu/avx2/ukernel_4x24.h"
}  // namespace

const int kMR = 4, kNR = 24;

void gemm_ukernel(int64_t kc, const float* a, const float* b, float* c, int64_t ldc,
                  int accumulate) {
  ukernel_4x24(kc, a, [b](int64_t k) { return b + k * 24; }, c, ldc, accumulate);
}

namespace {
inline __m256i tail_mask(int64_t left) {
  const __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(left)), lanes);
}
}  // namespace

void store_tile(float* dst, int64_t ldd, const float* src, int64_t lds, int64_t m, int64_t n,
                const float* bias_row, const float* bias_col, int relu, int accumulate) {
  const __m256 zero = _mm256_setzero_ps();
  for (int64_t i = 0; i < m; ++i) {
    const __m256 br = _mm256_set1_ps(bias_row ? bias_row[i] : 0.0f);
    const float* s = src + i * lds;
    float* d = dst + i * ldd;
    for (int64_t j = 0; j < n; j += 8) {
      const int64_t left = n - j;
      const bool full = left >= 8;
      const __m256i mask = full ? _mm256_set1_epi32(-1) : tail_mask(left);
      __m256 v = full ? _mm256_loadu_ps(s + j) : _mm256_maskload_ps(s + j, mask);
      if (bias_row) v = _mm256_add_ps(v, br);
      if (bias_col)
        v = _mm256_add_ps(v, full ? _mm256_loadu_ps(bias_col + j) : _mm256_maskload_ps(bias_col + j, mask));
      if (relu) v = _mm256_max_ps(zero, v);  // returns v when v is NaN
      if (accumulate)
        v = _mm256_add_ps(full ? _mm256_loadu_ps(d + j) : _mm256_maskload_ps(d + j, mask), v);
      if (full) _mm256_storeu_ps(d + j, v);
      else _mm256_maskstore_ps(d + j, mask, v);
    }
  }
}

}  // namespace fastcnn::cpu::avx2
