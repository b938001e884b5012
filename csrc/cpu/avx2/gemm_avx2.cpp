// gemm_avx2.cpp -- AVX2+FMA SGEMM micro-kernel (4 x 24) and the tile epilogue.
//
// C[4 x 24] += A_panel[kc][4]^T * B_panel[kc][24]: per k, 3 ymm loads of B, 4 broadcasts of A,
// 12 FMAs into 12 ymm accumulators (15 of 16 registers). 12 FMA x 8 lanes x 2 = 192 flops per
// k step, 6 cycles at 2 FMA ports against 7 loads: FMA-bound, 32 flops/cycle/core peak.
// gemm_ukernel_sa is the same kernel reading A in place, a(i, k) = a[i*ars + k*acs] (the rows
// of a row-major matrix, or the columns of a transposed one): the 4 broadcasts come from 4
// strided pointers instead of a packed panel, so the driver need not pack A at all. A costs
// 16 bytes per k step against B's 96, so A read from L1/L2 in place keeps the kernel FMA-bound.
// gemm_ukernel_sa_tall is its edge for a last panel of <= 8 columns: 12 rows x 8 columns.
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
// The first NV (1 or 2) of the 3 column vectors of gemm_ukernel_sa: a tile's last panel with
// <= 8 or <= 16 columns wanted (out = 128 is 5 panels and 8 columns) costs 4 or 8 FMAs per k
// instead of 12. Same per-element order of operations as the full kernel. Named accumulators,
// not an array: GCC kept an `acc[4][NV]` array on the stack (a store per FMA, 25 GF/s).
template <int NV>
void ukernel_sa_narrow(int64_t kc, const float* a, int64_t ars, int64_t acs, const float* b,
                       float* c, int64_t ldc, int accumulate) {
  __m256 c00 = _mm256_setzero_ps(), c10 = c00, c20 = c00, c30 = c00;
  __m256 c01 = c00, c11 = c00, c21 = c00, c31 = c00;
  const float *a0 = a, *a1 = a + ars, *a2 = a + 2 * ars, *a3 = a + 3 * ars;
  for (int64_t k = 0; k < kc; ++k) {
    const __m256 b0 = _mm256_loadu_ps(b);
    const __m256 b1 = NV > 1 ? _mm256_loadu_ps(b + 8) : b0;
#define FASTCNN_ROW(i)                                       \
  {                                                          \
    const __m256 ai = _mm256_broadcast_ss(a##i + k * acs);   \
    c##i##0 = _mm256_fmadd_ps(ai, b0, c##i##0);              \
    if constexpr (NV > 1) c##i##1 = _mm256_fmadd_ps(ai, b1, c##i##1); \
  }
    FASTCNN_ROW(0) FASTCNN_ROW(1) FASTCNN_ROW(2) FASTCNN_ROW(3)
#undef FASTCNN_ROW
    b += 24;
  }
#define FASTCNN_STORE(i)                                                        \
  {                                                                             \
    float* ci = c + (i) * ldc;                                                  \
    if (accumulate) c##i##0 = _mm256_add_ps(_mm256_loadu_ps(ci), c##i##0);      \
    _mm256_storeu_ps(ci, c##i##0);                                              \
    if constexpr (NV > 1) {                                                     \
      if (accumulate) c##i##1 = _mm256_add_ps(_mm256_loadu_ps(ci + 8), c##i##1); \
      _mm256_storeu_ps(ci + 8, c##i##1);                                        \
    }                                                                           \
  }
  FASTCNN_STORE(0) FASTCNN_STORE(1) FASTCNN_STORE(2) FASTCNN_STORE(3)
#undef FASTCNN_STORE
}
}  // namespace

void gemm_ukernel_sa(int64_t kc, const float* a, int64_t ars, int64_t acs, const float* b,
                     float* c, int64_t ldc, int accumulate, int64_t ncols) {
  if (ncols <= 8) return ukernel_sa_narrow<1>(kc, a, ars, acs, b, c, ldc, accumulate);
  if (ncols <= 16) return ukernel_sa_narrow<2>(kc, a, ars, acs, b, c, ldc, accumulate);
  __m256 c00 = _mm256_setzero_ps(), c01 = c00, c02 = c00, c10 = c00, c11 = c00, c12 = c00;
  __m256 c20 = c00, c21 = c00, c22 = c00, c30 = c00, c31 = c00, c32 = c00;
  const float *a0 = a, *a1 = a + ars, *a2 = a + 2 * ars, *a3 = a + 3 * ars;
  for (int64_t k = 0; k < kc; ++k) {
    const __m256 b0 = _mm256_loadu_ps(b), b1 = _mm256_loadu_ps(b + 8), b2 = _mm256_loadu_ps(b + 16);
#define FASTCNN_ROW(i)                                \
  {                                                   \
    const __m256 ai = _mm256_broadcast_ss(a##i + k * acs); \
    c##i##0 = _mm256_fmadd_ps(ai, b0, c##i##0);       \
    c##i##1 = _mm256_fmadd_ps(ai, b1, c##i##1);       \
    c##i##2 = _mm256_fmadd_ps(ai, b2, c##i##2);       \
  }
    FASTCNN_ROW(0) FASTCNN_ROW(1) FASTCNN_ROW(2) FASTCNN_ROW(3)
#undef FASTCNN_ROW
    b += 24;
  }
#define FASTCNN_STORE(i)                                             \
  {                                                                  \
    float* ci = c + (i) * ldc;                                       \
    if (accumulate) {                                                \
      c##i##0 = _mm256_add_ps(_mm256_loadu_ps(ci), c##i##0);         \
      c##i##1 = _mm256_add_ps(_mm256_loadu_ps(ci + 8), c##i##1);     \
      c##i##2 = _mm256_add_ps(_mm256_loadu_ps(ci + 16), c##i##2);    \
    }                                                                \
    _mm256_storeu_ps(ci, c##i##0);                                   \
    _mm256_storeu_ps(ci + 8, c##i##1);                               \
    _mm256_storeu_ps(ci + 16, c##i##2);                              \
  }
  FASTCNN_STORE(0) FASTCNN_STORE(1) FASTCNN_STORE(2) FASTCNN_STORE(3)
#undef FASTCNN_STORE
}

// gemm_ukernel_sa_tall: three row panels (12 rows) x the first 8 columns, for a tile's thin last
// panel (<= 8 of 24 columns wanted: out = 128 is 5 panels and 8 columns). The 4-row narrow
// kernel has 4 accumulators, bound by the FMA latency (4 cycles, 2 ports: 8 in flight needed);
// this one has 12 and 12 FMAs per k against 12 broadcasts and 1 B load: FMA-bound, 6 cycles a
// k step as the full kernel. Every element's order of operations is the narrow kernel's (one
// FMA per k from 0, then + C when accumulating), so the result is bit-identical to it.
void gemm_ukernel_sa_tall(int64_t kc, const float* a, int64_t ars, int64_t acs, const float* b,
                          float* c, int64_t ldc, int accumulate, int64_t) {
  __m256 c0 = _mm256_setzero_ps(), c1 = c0, c2 = c0, c3 = c0, c4 = c0, c5 = c0;
  __m256 c6 = c0, c7 = c0, c8 = c0, c9 = c0, c10 = c0, c11 = c0;
  const float *a0 = a, *a4 = a + 4 * ars, *a8 = a + 8 * ars;  // rows i at a(4*(i/4)) + (i%4)*ars
  const int64_t r1 = ars, r2 = 2 * ars, r3 = 3 * ars;
  for (int64_t k = 0; k < kc; ++k) {
    const __m256 b0 = _mm256_loadu_ps(b);
    const int64_t o = k * acs;
#define FASTCNN_ROW(acc, base, off) \
  acc = _mm256_fmadd_ps(_mm256_broadcast_ss(base + o + (off)), b0, acc);
    FASTCNN_ROW(c0, a0, 0) FASTCNN_ROW(c1, a0, r1) FASTCNN_ROW(c2, a0, r2) FASTCNN_ROW(c3, a0, r3)
    FASTCNN_ROW(c4, a4, 0) FASTCNN_ROW(c5, a4, r1) FASTCNN_ROW(c6, a4, r2) FASTCNN_ROW(c7, a4, r3)
    FASTCNN_ROW(c8, a8, 0) FASTCNN_ROW(c9, a8, r1) FASTCNN_ROW(c10, a8, r2)
    FASTCNN_ROW(c11, a8, r3)
#undef FASTCNN_ROW
    b += 24;
  }
#define FASTCNN_STORE(i)                                                  \
  {                                                                       \
    float* ci = c + (i) * ldc;                                            \
    if (accumulate) c##i = _mm256_add_ps(_mm256_loadu_ps(ci), c##i);      \
    _mm256_storeu_ps(ci, c##i);                                           \
  }
  FASTCNN_STORE(0) FASTCNN_STORE(1) FASTCNN_STORE(2) FASTCNN_STORE(3) FASTCNN_STORE(4)
  FASTCNN_STORE(5) FASTCNN_STORE(6) FASTCNN_STORE(7) FASTCNN_STORE(8) FASTCNN_STORE(9)
  FASTCNN_STORE(10) FASTCNN_STORE(11)
#undef FASTCNN_STORE
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
