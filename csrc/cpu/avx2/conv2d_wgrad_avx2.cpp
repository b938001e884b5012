// conv2d_wgrad_avx2.cpp -- conv2d's AVX2+FMA micro-kernel of the wide-grid weight gradient
// (12 x 32; see conv2d_wgrad_avx512.cpp for the contract). 12 x 32 accumulators don't fit in 16
// ymm registers, so the tile runs as four 6-tap x 16-channel passes over the pixels, each with 12
// accumulators: per pixel 6 broadcasts + 2 ymm loads against 12 FMAs.
#include <immintrin.h>

#include "cpu/kernels.h"

namespace fastcnn::cpu::avx2 {

void conv2d_wgrad_ukernel(int64_t kc, const float* src, const int64_t* off, const float* b,
                          int64_t ldb, float* c, int64_t ldc, int accumulate) {
  for (int i0 = 0; i0 < 12; i0 += 6) {
    for (int j0 = 0; j0 < 32; j0 += 16) {
      __m256 acc[6][2];
      for (auto& a : acc) a[0] = a[1] = _mm256_setzero_ps();
      const float* s[6];
      for (int i = 0; i < 6; ++i) s[i] = src + off[i0 + i];
      for (int64_t k = 0; k < kc; ++k) {
        const __m256 b0 = _mm256_loadu_ps(b + k * ldb + j0);
        const __m256 b1 = _mm256_loadu_ps(b + k * ldb + j0 + 8);
        for (int i = 0; i < 6; ++i) {
          const __m256 a = _mm256_broadcast_ss(s[i] + k);
          acc[i][0] = _mm256_fmadd_ps(a, b0, acc[i][0]);
          acc[i][1] = _mm256_fmadd_ps(a, b1, acc[i][1]);
        }
      }
      for (int i = 0; i < 6; ++i) {
        float* ci = c + (i0 + i) * ldc + j0;
        for (int h = 0; h < 2; ++h) {
          __m256 v = acc[i][h];
          if (accumulate) v = _mm256_add_ps(_mm256_loadu_ps(ci + 8 * h), v);
          _mm256_storeu_ps(ci + 8 * h, v);
        }
      }
    }
  }
}

}  // namespace fastcnn::cpu::avx2
