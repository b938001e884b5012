// conv_dw_avx512.cpp -- AVX-512 micro-kernel of the wide-grid weight gradient (4 rows x 6 taps).
//
//   part[i][t][l] += sum_n sum_v dy[n][i][16v + l] * x[n][off[t] + 16v + l]
// for i < 4 output channels, t < 6 taps, lanes l < 16 (see conv2d_wide.cpp: dy on the padded
// grid with zeros in the discarded columns, x the zero-padded images): dot products along the
// output pixels, kept as 16 lane-wise partial sums that the driver reduces in a fixed tree.
// Napkin maths: per 16 pixels, 4 aligned dy loads + 6 unaligned x loads against 24 FMAs
// (12 cycles at 2 FMA ports): FMA-bound; 24 accumulators + 4 dy + 1 x = 29 zmm registers.
#include "cpu/avx512/intrin.h"

#include "cpu/kernels.h"

namespace fastcnn::cpu::avx512 {

void conv_dw_ukernel(int64_t nimg, int64_t jv, const float* dy, int64_t dy_ld, int64_t dy_is,
                     const float* x, int64_t x_is, const int64_t* off, float* part) {
  __m512 c00 = _mm512_setzero_ps(), c01 = c00, c02 = c00, c03 = c00, c04 = c00, c05 = c00;
  __m512 c10 = c00, c11 = c00, c12 = c00, c13 = c00, c14 = c00, c15 = c00;
  __m512 c20 = c00, c21 = c00, c22 = c00, c23 = c00, c24 = c00, c25 = c00;
  __m512 c30 = c00, c31 = c00, c32 = c00, c33 = c00, c34 = c00, c35 = c00;
  for (int64_t n = 0; n < nimg; ++n) {
    const float* d = dy + n * dy_is;
    const float* xb = x + n * x_is;
    const float *x0 = xb + off[0], *x1 = xb + off[1], *x2 = xb + off[2];
    const float *x3 = xb + off[3], *x4 = xb + off[4], *x5 = xb + off[5];
    for (int64_t j = 0; j < jv * 16; j += 16) {
      const __m512 d0 = _mm512_loadu_ps(d + j), d1 = _mm512_loadu_ps(d + dy_ld + j);
      const __m512 d2 = _mm512_loadu_ps(d + 2 * dy_ld + j), d3 = _mm512_loadu_ps(d + 3 * dy_ld + j);
#define FASTCNN_TAP(t)                              \
  {                                                 \
    const __m512 b = _mm512_loadu_ps(x##t + j);     \
    c0##t = _mm512_fmadd_ps(d0, b, c0##t);          \
    c1##t = _mm512_fmadd_ps(d1, b, c1##t);          \
    c2##t = _mm512_fmadd_ps(d2, b, c2##t);          \
    c3##t = _mm512_fmadd_ps(d3, b, c3##t);          \
  }
      FASTCNN_TAP(0) FASTCNN_TAP(1) FASTCNN_TAP(2) FASTCNN_TAP(3) FASTCNN_TAP(4) FASTCNN_TAP(5)
#undef FASTCNN_TAP
    }
  }
#define FASTCNN_ADD(i, t)                                                    \
  {                                                                          \
    float* p = part + ((i) * 6 + (t)) * 16;                                  \
    _mm512_storeu_ps(p, _mm512_add_ps(_mm512_loadu_ps(p), c##i##t));         \
  }
#define FASTCNN_ROW(i) \
  FASTCNN_ADD(i, 0) FASTCNN_ADD(i, 1) FASTCNN_ADD(i, 2) FASTCNN_ADD(i, 3) FASTCNN_ADD(i, 4) FASTCNN_ADD(i, 5)
  FASTCNN_ROW(0) FASTCNN_ROW(1) FASTCNN_ROW(2) FASTCNN_ROW(3)
#undef FASTCNN_ROW
#undef FASTCNN_ADD
}

}  // namespace fastcnn::cpu::avx512
