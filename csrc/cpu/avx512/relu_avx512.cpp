// relu_avx512.cpp -- ReLU forward and backward, AVX-512 (16 floats per zmm).
//   relu_fwd: y[i]  = max(0, x[i]) = _mm512_max_ps(0, x) = (0 > x) ? 0 : x  -> NaN and -0.0 kept
//   relu_bwd: dx[i] = y[i] <= 0 ? 0 : dy[i] = maskz_mov(cmp_nle_uq(y, 0), dy) -> NaN y passes dy (PyTorch)
// x, y, dy, dx: n contiguous floats, any alignment; in place (x == y, dy == dx) is fine: every
// vector is loaded before the same vector is stored. Main loop 64 floats (4 zmm) per iteration,
// then 16 at a time, then one masked load/store for the last n % 16 (k-masks: masked-off lanes
// are neither read nor written, so nothing past element n-1 is touched).
// Napkin: 1 load + 1 max + 1 store per 16 floats; the core could do ~200 GB/s, DRAM gives one
// core ~10-20 GB/s: memory bound, 64 MB in + 64 MB out ~ 7-13 ms.
#include "cpu/avx512/intrin.h"

#include "cpu/kernels.h"

namespace fastcnn::cpu::avx512 {

void relu_fwd(const float* x, float* y, int64_t n) {
  const __m512 zero = _mm512_setzero_ps();
  int64_t i = 0;
  for (; i + 64 <= n; i += 64) {
    const __m512 a = _mm512_loadu_ps(x + i), b = _mm512_loadu_ps(x + i + 16);
    const __m512 c = _mm512_loadu_ps(x + i + 32), d = _mm512_loadu_ps(x + i + 48);
    _mm512_storeu_ps(y + i, _mm512_max_ps(zero, a));
    _mm512_storeu_ps(y + i + 16, _mm512_max_ps(zero, b));
    _mm512_storeu_ps(y + i + 32, _mm512_max_ps(zero, c));
    _mm512_storeu_ps(y + i + 48, _mm512_max_ps(zero, d));
  }
  for (; i + 16 <= n; i += 16) _mm512_storeu_ps(y + i, _mm512_max_ps(zero, _mm512_loadu_ps(x + i)));
  if (i < n) {
    const __mmask16 m = static_cast<__mmask16>((1u << (n - i)) - 1u);
    _mm512_mask_storeu_ps(y + i, m, _mm512_max_ps(zero, _mm512_maskz_loadu_ps(m, x + i)));
  }
}

void relu_bwd(const float* dy, const float* y, float* dx, int64_t n) {
  const __m512 zero = _mm512_setzero_ps();
  int64_t i = 0;
  for (; i + 64 <= n; i += 64) {
    for (int k = 0; k < 64; k += 16) {
      const __mmask16 pos = _mm512_cmp_ps_mask(_mm512_loadu_ps(y + i + k), zero, _CMP_NLE_UQ);
      _mm512_storeu_ps(dx + i + k, _mm512_maskz_loadu_ps(pos, dy + i + k));
    }
  }
  for (; i + 16 <= n; i += 16) {
    const __mmask16 pos = _mm512_cmp_ps_mask(_mm512_loadu_ps(y + i), zero, _CMP_NLE_UQ);
    _mm512_storeu_ps(dx + i, _mm512_maskz_loadu_ps(pos, dy + i));
  }
  if (i < n) {
    const __mmask16 m = static_cast<__mmask16>((1u << (n - i)) - 1u);
    const __m512 v = _mm512_maskz_loadu_ps(m, y + i);
    const __mmask16 pos = _mm512_mask_cmp_ps_mask(m, v, zero, _CMP_NLE_UQ);
    _mm512_mask_storeu_ps(dx + i, m, _mm512_maskz_loadu_ps(pos, dy + i));
  }
}

}  // namespace fastcnn::cpu::avx512
