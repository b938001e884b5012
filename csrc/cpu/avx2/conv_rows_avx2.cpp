// conv_rows_avx2.cpp -- AVX2+FMA micro-kernel of the wide-grid direct convolution (4 x 24).
//
// C[4 x 24] = sum_k A_panel[k][4]^T * src[off[k] .. off[k] + 24) (see conv_rows_avx512.cpp and
// conv2d_wide.cpp): per k, 3 unaligned ymm loads at the row's offset, 4 broadcasts, 12 FMAs.
#include <immintrin.h>

#include "cpu/kernels.h"

namespace fastcnn::cpu::avx2 {

void conv_ukernel(int64_t kc, const float* a, const float* src, const int64_t* off, float* c,
                  int64_t ldc, int accumulate) {
  __m256 c00 = _mm256_setzero_ps(), c01 = c00, c02 = c00, c10 = c00, c11 = c00, c12 = c00;
  __m256 c20 = c00, c21 = c00, c22 = c00, c30 = c00, c31 = c00, c32 = c00;
  for (int64_t k = 0; k < kc; ++k) {
    const float* b = src + off[k];
    const __m256 b0 = _mm256_loadu_ps(b), b1 = _mm256_loadu_ps(b + 8), b2 = _mm256_loadu_ps(b + 16);
#define FASTCNN_ROW(i)                            \
  {                                               \
    const __m256 ai = _mm256_broadcast_ss(a + i); \
    c##i##0 = _mm256_fmadd_ps(ai, b0, c##i##0);   \
    c##i##1 = _mm256_fmadd_ps(ai, b1, c##i##1);   \
    c##i##2 = _mm256_fmadd_ps(ai, b2, c##i##2);   \
  }
    FASTCNN_ROW(0) FASTCNN_ROW(1) FASTCNN_ROW(2) FASTCNN_ROW(3)
#undef FASTCNN_ROW
    a += 4;
  }
#define FASTCNN_STORE(i)                                                          \
  {                                                                               \
    float* ci = c + (i) * ldc;                                                    \
    if (accumulate) {                                                             \
      c##i##0 = _mm256_add_ps(_mm256_loadu_ps(ci), c##i##0);                      \
      c##i##1 = _mm256_add_ps(_mm256_loadu_ps(ci + 8), c##i##1);                  \
      c##i##2 = _mm256_add_ps(_mm256_loadu_ps(ci + 16), c##i##2);                 \
    }                                                                             \
    _mm256_storeu_ps(ci, c##i##0);                                                \
    _mm256_storeu_ps(ci + 8, c##i##1);                                            \
    _mm256_storeu_ps(ci + 16, c##i##2);                                           \
  }
  FASTCNN_STORE(0) FASTCNN_STORE(1) FASTCNN_STORE(2) FASTCNN_STORE(3)
#undef FASTCNN_STORE
}

}  // namespace fastcnn::cpu::avx2
