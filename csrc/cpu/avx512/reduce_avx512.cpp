// reduce_avx512.cpp -- sum and in-place add of float vectors, AVX-512 (16 floats per zmm).
//   sum(x, n) -> float: the fixed-order sum of x[0:n] (the order is the one spelt out in
//                generic/reduce.cpp, so every ISA returns the same bits for the same x)
//   add(acc, x, n):     acc[i] += x[i] for i < n (acc == x allowed)
// sum: 64 lanes = 4 zmm accumulators a0..a3 (a_k holds lanes 16k..16k+15), 64 floats per
// iteration; the tail (n % 64) is added with k-masked adds (off lanes untouched); then the
// halving tree s = 32 (a0+a2, a1+a3), 16 (a0+a1), 8 (256-bit halves), 4 (128-bit halves),
// 2 (movehl), 1 (lane 0 + lane 1).
// add: 64 floats per iteration, then 16, then one masked load/store tail; nothing past n-1.
// Napkin: 4 independent add chains x 16 lanes; 2 loads/cycle ~ 128 B/cycle in L1, far above
// DRAM: memory bound for anything outside L2.
#include "cpu/avx512/intrin.h"

#include "cpu/kernels.h"

namespace fastcnn::cpu::avx512 {

float sum(const float* x, int64_t n) {
  __m512 a[4];
  for (int k = 0; k < 4; ++k) a[k] = _mm512_setzero_ps();
  int64_t i = 0;
  for (; i + 64 <= n; i += 64)
    for (int k = 0; k < 4; ++k) a[k] = _mm512_add_ps(a[k], _mm512_loadu_ps(x + i + 16 * k));
  if (i < n) {
    const int64_t r = n - i;  // 1..63
    for (int k = 0; k < 4 && 16 * k < r; ++k) {
      const int64_t c = r - 16 * k < 16 ? r - 16 * k : 16;
      const __mmask16 m = static_cast<__mmask16>((1u << c) - 1u);
      a[k] = _mm512_mask_add_ps(a[k], m, a[k], _mm512_maskz_loadu_ps(m, x + i + 16 * k));
    }
  }
  a[0] = _mm512_add_ps(a[0], a[2]);  // s = 32
  a[1] = _mm512_add_ps(a[1], a[3]);
  a[0] = _mm512_add_ps(a[0], a[1]);  // s = 16
  const __m256 hi8 = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(a[0]), 1));
  const __m256 s8 = _mm256_add_ps(_mm512_castps512_ps256(a[0]), hi8);  // s = 8
  const __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1));
  const __m128 s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
  const __m128 s1 = _mm_add_ss(s2, _mm_shuffle_ps(s2, s2, 1));
  return _mm_cvtss_f32(s1);
}

void add(float* acc, const float* x, int64_t n) {
  int64_t i = 0;
  for (; i + 64 <= n; i += 64)
    for (int k = 0; k < 64; k += 16)
      _mm512_storeu_ps(acc + i + k,
                       _mm512_add_ps(_mm512_loadu_ps(acc + i + k), _mm512_loadu_ps(x + i + k)));
  for (; i + 16 <= n; i += 16)
    _mm512_storeu_ps(acc + i, _mm512_add_ps(_mm512_loadu_ps(acc + i), _mm512_loadu_ps(x + i)));
  if (i < n) {
    const __mmask16 m = static_cast<__mmask16>((1u << (n - i)) - 1u);
    const __m512 a = _mm512_maskz_loadu_ps(m, acc + i), b = _mm512_maskz_loadu_ps(m, x + i);
    _mm512_mask_storeu_ps(acc + i, m, _mm512_add_ps(a, b));
  }
}

}  // namespace fastcnn::cpu::avx512
