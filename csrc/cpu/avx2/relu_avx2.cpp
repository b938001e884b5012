// relu_avx2.cpp -- ReLU forward and backward, AVX2 (8 floats per ymm).
//   relu_fwd: y[i]  = max(0, x[i]) = _mm256_max_ps(0, x) = (0 > x) ? 0 : x  -> NaN and -0.0 kept
//   relu_bwd: dx[i] = y[i] <= 0 ? 0 : dy[i] = and(cmp_nle_uq(y, 0), dy)   -> NaN y passes dy (PyTorch)
// x, y, dy, dx: n contiguous floats, any alignment; in place (x == y, dy == dx) is fine: every
// vector is loaded before the same vector is stored. Main loop 32 floats (4 ymm) per iteration,
// then 8 at a time, then one maskload/maskstore for the last n % 8 (nothing read or written past
// element n-1; masked-off lanes never fault).
// Napkin: 1 load + 1 max + 1 store per 8 floats; the core does ~1 of these a cycle (~100 GB/s),
// DRAM ~10-20 GB/s per core: memory bound, 64 MB in + 64 MB out ~ 7-13 ms.
#include <immintrin.h>

#include "cpu/kernels.h"

namespace fastcnn::cpu::avx2 {
namespace {

// Lanes [0, r) all-ones, the rest zero (0 <= r <= 8).
inline __m256i relu_tail_mask(int64_t r) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(r)),
                            _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

}  // namespace

void relu_fwd(const float* x, float* y, int64_t n) {
  const __m256 zero = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    const __m256 a = _mm256_loadu_ps(x + i), b = _mm256_loadu_ps(x + i + 8);
    const __m256 c = _mm256_loadu_ps(x + i + 16), d = _mm256_loadu_ps(x + i + 24);
    _mm256_storeu_ps(y + i, _mm256_max_ps(zero, a));
    _mm256_storeu_ps(y + i + 8, _mm256_max_ps(zero, b));
    _mm256_storeu_ps(y + i + 16, _mm256_max_ps(zero, c));
    _mm256_storeu_ps(y + i + 24, _mm256_max_ps(zero, d));
  }
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_max_ps(zero, _mm256_loadu_ps(x + i)));
  if (i < n) {
    const __m256i m = relu_tail_mask(n - i);
    _mm256_maskstore_ps(y + i, m, _mm256_max_ps(zero, _mm256_maskload_ps(x + i, m)));
  }
}

void relu_bwd(const float* dy, const float* y, float* dx, int64_t n) {
  const __m256 zero = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    for (int k = 0; k < 32; k += 8) {
      const __m256 g = _mm256_loadu_ps(dy + i + k), v = _mm256_loadu_ps(y + i + k);
      _mm256_storeu_ps(dx + i + k, _mm256_and_ps(_mm256_cmp_ps(v, zero, _CMP_NLE_UQ), g));
    }
  }
  for (; i + 8 <= n; i += 8) {
    const __m256 g = _mm256_loadu_ps(dy + i), v = _mm256_loadu_ps(y + i);
    _mm256_storeu_ps(dx + i, _mm256_and_ps(_mm256_cmp_ps(v, zero, _CMP_NLE_UQ), g));
  }
  if (i < n) {
    const __m256i m = relu_tail_mask(n - i);
    const __m256 g = _mm256_maskload_ps(dy + i, m), v = _mm256_maskload_ps(y + i, m);
    _mm256_maskstore_ps(dx + i, m, _mm256_and_ps(_mm256_cmp_ps(v, zero, _CMP_NLE_UQ), g));
  }
}

}  // namespace fastcnn::cpu::avx2
