// conv_rows_avx512.cpp -- AVX-512 micro-kernel of the wide-grid direct convolution (8 x 48).
//
// C[8 x 48] = sum_k A_panel[k][8]^T * src[off[k] .. off[k] + 48): the GEMM micro-kernel with its
// B rows read straight from a zero-padded image (row k of im2col is the padded image shifted by
// off[k] = c*plane + r*dil_h*Wp + s*dil_w, see conv2d_wide.cpp), so nothing is packed.
// Napkin maths: per k, 1 offset load + 3 unaligned zmm loads + 8 embedded broadcasts against 24
// FMAs (12 cycles at 2 FMA ports): FMA-bound like gemm_ukernel, 64 flops/cycle/core peak.
#include "cpu/avx512/intrin.h"

#include "cpu/kernels.h"

namespace fastcnn::cpu::avx512 {

void conv_ukernel(int64_t kc, const float* a, const float* src, const int64_t* off, float* c,
                  int64_t ldc, int accumulate) {
  __m512 c00 = _mm512_setzero_ps(), c01 = c00, c02 = c00, c10 = c00, c11 = c00, c12 = c00;
  __m512 c20 = c00, c21 = c00, c22 = c00, c30 = c00, c31 = c00, c32 = c00;
  __m512 c40 = c00, c41 = c00, c42 = c00, c50 = c00, c51 = c00, c52 = c00;
  __m512 c60 = c00, c61 = c00, c62 = c00, c70 = c00, c71 = c00, c72 = c00;
  for (int64_t k = 0; k < kc; ++k) {
    const float* b = src + off[k];
    const __m512 b0 = _mm512_loadu_ps(b), b1 = _mm512_loadu_ps(b + 16), b2 = _mm512_loadu_ps(b + 32);
#define FASTCNN_ROW(i)                           \
  {                                              \
    const __m512 ai = _mm512_set1_ps(a[i]);      \
    c##i##0 = _mm512_fmadd_ps(ai, b0, c##i##0);  \
    c##i##1 = _mm512_fmadd_ps(ai, b1, c##i##1);  \
    c##i##2 = _mm512_fmadd_ps(ai, b2, c##i##2);  \
  }
    FASTCNN_ROW(0) FASTCNN_ROW(1) FASTCNN_ROW(2) FASTCNN_ROW(3)
    FASTCNN_ROW(4) FASTCNN_ROW(5) FASTCNN_ROW(6) FASTCNN_ROW(7)
#undef FASTCNN_ROW
    a += 8;
  }
#define FASTCNN_STORE(i)                                                          \
  {                                                                               \
    float* ci = c + (i) * ldc;                                                    \
    if (accumulate) {                                                             \
      c##i##0 = _mm512_add_ps(_mm512_loadu_ps(ci), c##i##0);                      \
      c##i##1 = _mm512_add_ps(_mm512_loadu_ps(ci + 16), c##i##1);                 \
      c##i##2 = _mm512_add_ps(_mm512_loadu_ps(ci + 32), c##i##2);                 \
    }                                                                             \
    _mm512_storeu_ps(ci, c##i##0);                                                \
    _mm512_storeu_ps(ci + 16, c##i##1);                                           \
    _mm512_storeu_ps(ci + 32, c##i##2);                                           \
  }
  FASTCNN_STORE(0) FASTCNN_STORE(1) FASTCNN_STORE(2) FASTCNN_STORE(3)
  FASTCNN_STORE(4) FASTCNN_STORE(5) FASTCNN_STORE(6) FASTCNN_STORE(7)
#undef FASTCNN_STORE
}

}  // namespace fastcnn::cpu::avx512
