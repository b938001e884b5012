// conv2d_wgrad_avx512.cpp -- conv2d's AVX-512 micro-kernel of the wide-grid weight gradient
// (12 x 32).
//
//   C[i][jj] = (accumulate ? C[i][jj] : 0) + sum_{k < kc} src[off[i] + k] * b[k*ldb + jj]
// for 12 taps i and 32 output channels jj (see conv2d_wide.cpp): per output pixel k, the 12 taps'
// input values (scalars of the zero-padded image at per-tap offsets, broadcast) times the pixel's
// 32 output-channel gradients (dy transposed to pixel-major, two aligned zmm): an outer product.
// Napkin maths: per pixel 12 broadcasts + 2 vector loads against 24 FMAs (12 cycles at 2 FMA
// ports): FMA-bound, and no load ever splits a cache line (broadcasts read one float).
#include "cpu/avx512/intrin.h"

#include "cpu/kernels.h"

namespace fastcnn::cpu::avx512 {

void conv2d_wgrad_ukernel(int64_t kc, const float* src, const int64_t* off, const float* b,
                          int64_t ldb, float* c, int64_t ldc, int accumulate) {
  __m512 c00 = _mm512_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00;
  __m512 c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00;
  __m512 c60 = c00, c61 = c00, c70 = c00, c71 = c00, c80 = c00, c81 = c00;
  __m512 c90 = c00, c91 = c00, cA0 = c00, cA1 = c00, cB0 = c00, cB1 = c00;
  const float *s0 = src + off[0], *s1 = src + off[1], *s2 = src + off[2], *s3 = src + off[3];
  const float *s4 = src + off[4], *s5 = src + off[5], *s6 = src + off[6], *s7 = src + off[7];
  const float *s8 = src + off[8], *s9 = src + off[9], *sA = src + off[10], *sB = src + off[11];
  for (int64_t k = 0; k < kc; ++k) {
    const __m512 b0 = _mm512_loadu_ps(b + k * ldb), b1 = _mm512_loadu_ps(b + k * ldb + 16);
#define FASTCNN_TAP(i)                           \
  {                                              \
    const __m512 a = _mm512_set1_ps(s##i[k]);    \
    c##i##0 = _mm512_fmadd_ps(a, b0, c##i##0);   \
    c##i##1 = _mm512_fmadd_ps(a, b1, c##i##1);   \
  }
    FASTCNN_TAP(0) FASTCNN_TAP(1) FASTCNN_TAP(2) FASTCNN_TAP(3) FASTCNN_TAP(4) FASTCNN_TAP(5)
    FASTCNN_TAP(6) FASTCNN_TAP(7) FASTCNN_TAP(8) FASTCNN_TAP(9) FASTCNN_TAP(A) FASTCNN_TAP(B)
#undef FASTCNN_TAP
  }
#define FASTCNN_STORE(i, row)                                                  \
  {                                                                            \
    float* ci = c + (row) * ldc;                                               \
    if (accumulate) {                                                          \
      c##i##0 = _mm512_add_ps(_mm512_loadu_ps(ci), c##i##0);                   \
      c##i##1 = _mm512_add_ps(_mm512_loadu_ps(ci + 16), c##i##1);              \
    }                                                                          \
    _mm512_storeu_ps(ci, c##i##0);                                             \
    _mm512_storeu_ps(ci + 16, c##i##1);                                        \
  }
  FASTCNN_STORE(0, 0) FASTCNN_STORE(1, 1) FASTCNN_STORE(2, 2) FASTCNN_STORE(3, 3)
  FASTCNN_STORE(4, 4) FASTCNN_STORE(5, 5) FASTCNN_STORE(6, 6) FASTCNN_STORE(7, 7)
  FASTCNN_STORE(8, 8) FASTCNN_STORE(9, 9) FASTCNN_STORE(A, 10) FASTCNN_STORE(B, 11)
#undef FASTCNN_STORE
}

}  // namespace fastcnn::cpu::avx512
