// gemm_avx512.cpp -- AVX-512 SGEMM micro-kernel (8 x 48) and the tile epilogue.
//
// C[8 x 48] += A_panel[kc][8]^T * B_panel[kc][48]: per k, 3 zmm loads of B, 8 broadcasts of A
// (embedded broadcast FMA operands) and 24 FMAs into 24 zmm accumulators (+3 B registers).
// Napkin maths: 24 FMA x 16 lanes x 2 flops = 768 flops per k step; at 2 FMA ports that is
// 12 cycles, against 3 vector loads + 8 scalar broadcasts, so the kernel is FMA-bound:
// 64 flops/cycle/core peak. The 8-row tile divides the usual channel counts (32, 64, 128).
// gemm_ukernel_sa_tall: the in-place kernel's edge for a last panel of <= 16 columns, 24 x 16.
#include "cpu/avx512/intrin.h"

#include "cpu/kernels.h"

namespace fastcnn::cpu::avx512 {
namespace {
#include "cpu/avx512/ukernel_8x48.h"
}  // namespace

const int kMR = 8, kNR = 48;

void gemm_ukernel(int64_t kc, const float* a, const float* b, float* c, int64_t ldc,
                  int accumulate) {
  ukernel_8x48(kc, a, [b](int64_t k) {
    _mm_prefetch(reinterpret_cast<const char*>(b + (k + 8) * 48), _MM_HINT_T0);
    return b + k * 48;
  }, c, ldc, accumulate);
}

namespace {
// The first NV (1 or 2) of the 3 column vectors of gemm_ukernel_sa, for a tile's last panel
// with <= 16 or <= 32 columns wanted. Same per-element order of operations as the full kernel.
// Named accumulators, not an array: GCC kept the AVX2 twin's `acc[4][NV]` array on the stack
// (a store per FMA, a third of the speed); this one is written the same way for the same reason.
template <int NV>
void ukernel_sa_narrow(int64_t kc, const float* a, int64_t ars, int64_t acs, const float* b,
                       float* c, int64_t ldc, int accumulate) {
  __m512 c00 = _mm512_setzero_ps(), c10 = c00, c20 = c00, c30 = c00;
  __m512 c40 = c00, c50 = c00, c60 = c00, c70 = c00;
  __m512 c01 = c00, c11 = c00, c21 = c00, c31 = c00;
  __m512 c41 = c00, c51 = c00, c61 = c00, c71 = c00;
  const float* lo = a;            // rows 0..3 at lo + i*ars
  const float* hi = a + 4 * ars;  // rows 4..7 at hi + (i-4)*ars
  for (int64_t k = 0; k < kc; ++k) {
    const __m512 b0 = _mm512_loadu_ps(b);
    const __m512 b1 = NV > 1 ? _mm512_loadu_ps(b + 16) : b0;
    const int64_t o = k * acs;
#define FASTCNN_ROW(i, base, r)                                          \
  {                                                                      \
    const __m512 ai = _mm512_set1_ps(base[o + (r) * ars]);               \
    c##i##0 = _mm512_fmadd_ps(ai, b0, c##i##0);                          \
    if constexpr (NV > 1) c##i##1 = _mm512_fmadd_ps(ai, b1, c##i##1);    \
  }
    FASTCNN_ROW(0, lo, 0) FASTCNN_ROW(1, lo, 1) FASTCNN_ROW(2, lo, 2) FASTCNN_ROW(3, lo, 3)
    FASTCNN_ROW(4, hi, 0) FASTCNN_ROW(5, hi, 1) FASTCNN_ROW(6, hi, 2) FASTCNN_ROW(7, hi, 3)
#undef FASTCNN_ROW
    b += 48;
  }
#define FASTCNN_STORE(i)                                                          \
  {                                                                               \
    float* ci = c + (i) * ldc;                                                    \
    if (accumulate) c##i##0 = _mm512_add_ps(_mm512_loadu_ps(ci), c##i##0);        \
    _mm512_storeu_ps(ci, c##i##0);                                                \
    if constexpr (NV > 1) {                                                       \
      if (accumulate) c##i##1 = _mm512_add_ps(_mm512_loadu_ps(ci + 16), c##i##1); \
      _mm512_storeu_ps(ci + 16, c##i##1);                                         \
    }                                                                             \
  }
  FASTCNN_STORE(0) FASTCNN_STORE(1) FASTCNN_STORE(2) FASTCNN_STORE(3)
  FASTCNN_STORE(4) FASTCNN_STORE(5) FASTCNN_STORE(6) FASTCNN_STORE(7)
#undef FASTCNN_STORE
}
}  // namespace

// The same kernel reading A in place: a(i, k) = a[i*ars + k*acs] (8 strided broadcasts per k).
void gemm_ukernel_sa(int64_t kc, const float* a, int64_t ars, int64_t acs, const float* b,
                     float* c, int64_t ldc, int accumulate, int64_t ncols) {
  if (ncols <= 16) return ukernel_sa_narrow<1>(kc, a, ars, acs, b, c, ldc, accumulate);
  if (ncols <= 32) return ukernel_sa_narrow<2>(kc, a, ars, acs, b, c, ldc, accumulate);
  __m512 c00 = _mm512_setzero_ps(), c01 = c00, c02 = c00, c10 = c00, c11 = c00, c12 = c00;
  __m512 c20 = c00, c21 = c00, c22 = c00, c30 = c00, c31 = c00, c32 = c00;
  __m512 c40 = c00, c41 = c00, c42 = c00, c50 = c00, c51 = c00, c52 = c00;
  __m512 c60 = c00, c61 = c00, c62 = c00, c70 = c00, c71 = c00, c72 = c00;
  const float* lo = a;             // rows 0..3 at lo + i*ars
  const float* hi = a + 4 * ars;   // rows 4..7 at hi + (i-4)*ars
  for (int64_t k = 0; k < kc; ++k) {
    _mm_prefetch(reinterpret_cast<const char*>(b + 8 * 48), _MM_HINT_T0);
    const __m512 b0 = _mm512_loadu_ps(b), b1 = _mm512_loadu_ps(b + 16), b2 = _mm512_loadu_ps(b + 32);
    const int64_t o = k * acs;
#define FASTCNN_ROW(i, base, r)                               \
  {                                                           \
    const __m512 ai = _mm512_set1_ps(base[o + (r) * ars]);    \
    c##i##0 = _mm512_fmadd_ps(ai, b0, c##i##0);               \
    c##i##1 = _mm512_fmadd_ps(ai, b1, c##i##1);               \
    c##i##2 = _mm512_fmadd_ps(ai, b2, c##i##2);               \
  }
    FASTCNN_ROW(0, lo, 0) FASTCNN_ROW(1, lo, 1) FASTCNN_ROW(2, lo, 2) FASTCNN_ROW(3, lo, 3)
    FASTCNN_ROW(4, hi, 0) FASTCNN_ROW(5, hi, 1) FASTCNN_ROW(6, hi, 2) FASTCNN_ROW(7, hi, 3)
#undef FASTCNN_ROW
    b += 48;
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

// gemm_ukernel_sa_tall: three row panels (24 rows) x the first 16 columns, for a tile's thin
// last panel (<= 16 of 48 columns wanted: batch 64 is 1 panel and 16 columns). The 8-row narrow
// kernel has 8 accumulators, bound by the FMA latency (4 cycles, 2 ports: 8 in flight, none to
// spare); this one has 24 (+1 B register) and 24 FMAs per k against 24 broadcasts: FMA-bound,
// 12 cycles a k step as the full kernel. Every element's order of operations is the narrow
// kernel's (one FMA per k from 0, then + C when accumulating): bit-identical to it.
void gemm_ukernel_sa_tall(int64_t kc, const float* a, int64_t ars, int64_t acs, const float* b,
                          float* c, int64_t ldc, int accumulate, int64_t) {
  __m512 c0 = _mm512_setzero_ps(), c1 = c0, c2 = c0, c3 = c0, c4 = c0, c5 = c0, c6 = c0;
  __m512 c7 = c0, c8 = c0, c9 = c0, c10 = c0, c11 = c0, c12 = c0, c13 = c0, c14 = c0;
  __m512 c15 = c0, c16 = c0, c17 = c0, c18 = c0, c19 = c0, c20 = c0, c21 = c0, c22 = c0;
  __m512 c23 = c0;
  // row i at base(i / 4) + (i % 4) * ars
  const float *a0 = a, *a4 = a + 4 * ars, *a8 = a + 8 * ars, *a12 = a + 12 * ars;
  const float *a16 = a + 16 * ars, *a20 = a + 20 * ars;
  const int64_t r1 = ars, r2 = 2 * ars, r3 = 3 * ars;
  for (int64_t k = 0; k < kc; ++k) {
    const __m512 b0 = _mm512_loadu_ps(b);
    const int64_t o = k * acs;
#define FASTCNN_ROW(acc, base, off) acc = _mm512_fmadd_ps(_mm512_set1_ps(base[o + (off)]), b0, acc);
#define FASTCNN_ROWS4(i0, i1, i2, i3, base) \
  FASTCNN_ROW(c##i0, base, 0) FASTCNN_ROW(c##i1, base, r1) FASTCNN_ROW(c##i2, base, r2) \
  FASTCNN_ROW(c##i3, base, r3)
    FASTCNN_ROWS4(0, 1, 2, 3, a0) FASTCNN_ROWS4(4, 5, 6, 7, a4) FASTCNN_ROWS4(8, 9, 10, 11, a8)
    FASTCNN_ROWS4(12, 13, 14, 15, a12) FASTCNN_ROWS4(16, 17, 18, 19, a16)
    FASTCNN_ROWS4(20, 21, 22, 23, a20)
#undef FASTCNN_ROWS4
#undef FASTCNN_ROW
    b += 48;
  }
#define FASTCNN_STORE(i)                                                  \
  {                                                                       \
    float* ci = c + (i) * ldc;                                            \
    if (accumulate) c##i = _mm512_add_ps(_mm512_loadu_ps(ci), c##i);      \
    _mm512_storeu_ps(ci, c##i);                                           \
  }
  FASTCNN_STORE(0) FASTCNN_STORE(1) FASTCNN_STORE(2) FASTCNN_STORE(3) FASTCNN_STORE(4)
  FASTCNN_STORE(5) FASTCNN_STORE(6) FASTCNN_STORE(7) FASTCNN_STORE(8) FASTCNN_STORE(9)
  FASTCNN_STORE(10) FASTCNN_STORE(11) FASTCNN_STORE(12) FASTCNN_STORE(13) FASTCNN_STORE(14)
  FASTCNN_STORE(15) FASTCNN_STORE(16) FASTCNN_STORE(17) FASTCNN_STORE(18) FASTCNN_STORE(19)
  FASTCNN_STORE(20) FASTCNN_STORE(21) FASTCNN_STORE(22) FASTCNN_STORE(23)
#undef FASTCNN_STORE
}

void store_tile(float* dst, int64_t ldd, const float* src, int64_t lds, int64_t m, int64_t n,
                const float* bias_row, const float* bias_col, int relu, int accumulate) {
  const __m512 zero = _mm512_setzero_ps();
  for (int64_t i = 0; i < m; ++i) {
    const __m512 br = _mm512_set1_ps(bias_row ? bias_row[i] : 0.0f);
    const float* s = src + i * lds;
    float* d = dst + i * ldd;
    for (int64_t j = 0; j < n; j += 16) {
      const int64_t left = n - j;
      const __mmask16 mask = left >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << left) - 1u);
      __m512 v = _mm512_maskz_loadu_ps(mask, s + j);
      if (bias_row) v = _mm512_add_ps(v, br);
      if (bias_col) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(mask, bias_col + j));
      if (relu) v = _mm512_max_ps(zero, v);  // returns v when v is NaN
      if (accumulate) v = _mm512_add_ps(_mm512_maskz_loadu_ps(mask, d + j), v);
      _mm512_mask_storeu_ps(d + j, mask, v);
    }
  }
}

}  // namespace fastcnn::cpu::avx512
