// conv_dw_avx2.cpp -- AVX2+FMA micro-kernel of the wide-grid weight gradient (4 rows x 6 taps,
// 16 lanes; see conv_dw_avx512.cpp for the contract). The 4 x 6 x 16 partial sums don't fit in
// 16 ymm registers, so the tile runs as four 2-row x 3-tap passes over the pixels, each with
// 12 accumulators (2 x 3 pairs x 2 halves of 8 lanes): per 16 pixels 4 dy + 6 x loads, 12 FMAs.
#include <immintrin.h>

#include "cpu/kernels.h"

namespace fastcnn::cpu::avx2 {

void conv_dw_ukernel(int64_t nimg, int64_t jv, const float* dy, int64_t dy_ld, int64_t dy_is,
                     const float* x, int64_t x_is, const int64_t* off, float* part) {
  for (int i0 = 0; i0 < 4; i0 += 2) {
    for (int t0 = 0; t0 < 6; t0 += 3) {
      __m256 acc[2][3][2];
      for (auto& a : acc)
        for (auto& b : a) b[0] = b[1] = _mm256_setzero_ps();
      for (int64_t n = 0; n < nimg; ++n) {
        const float* d0 = dy + n * dy_is + i0 * dy_ld;
        const float* d1 = d0 + dy_ld;
        const float* xb = x + n * x_is;
        const float *x0 = xb + off[t0], *x1 = xb + off[t0 + 1], *x2 = xb + off[t0 + 2];
        for (int64_t j = 0; j < jv * 16; j += 16) {
          for (int h = 0; h < 2; ++h) {
            const int64_t jj = j + 8 * h;
            const __m256 a0 = _mm256_loadu_ps(d0 + jj), a1 = _mm256_loadu_ps(d1 + jj);
            const __m256 b0 = _mm256_loadu_ps(x0 + jj), b1 = _mm256_loadu_ps(x1 + jj);
            const __m256 b2 = _mm256_loadu_ps(x2 + jj);
            acc[0][0][h] = _mm256_fmadd_ps(a0, b0, acc[0][0][h]);
            acc[0][1][h] = _mm256_fmadd_ps(a0, b1, acc[0][1][h]);
            acc[0][2][h] = _mm256_fmadd_ps(a0, b2, acc[0][2][h]);
            acc[1][0][h] = _mm256_fmadd_ps(a1, b0, acc[1][0][h]);
            acc[1][1][h] = _mm256_fmadd_ps(a1, b1, acc[1][1][h]);
            acc[1][2][h] = _mm256_fmadd_ps(a1, b2, acc[1][2][h]);
          }
        }
      }
      for (int i = 0; i < 2; ++i)
        for (int t = 0; t < 3; ++t)
          for (int h = 0; h < 2; ++h) {
            float* p = part + ((i0 + i) * 6 + t0 + t) * 16 + 8 * h;
            _mm256_storeu_ps(p, _mm256_add_ps(_mm256_loadu_ps(p), acc[i][t][h]));
          }
    }
  }
}

}  // namespace fastcnn::cpu::avx2
