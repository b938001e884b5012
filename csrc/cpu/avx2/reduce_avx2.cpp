// reduce_avx2.cpp -- sum and in-place add of float vectors, AVX2 (8 floats per ymm).
//   sum(x, n) -> float: the fixed-order sum of x[0:n] (the order is the one spelt out in
//                generic/reduce.cpp, so every ISA returns the same bits for the same x)
//   add(acc, x, n):     acc[i] += x[i] for i < n (acc == x allowed)
// sum: 64 lanes = 8 ymm accumulators v0..v7 (v_k holds lanes 8k..8k+7), 64 floats per
// iteration; the tail (n % 64) is added with maskloads (off lanes load +0, which leaves a lane
// that started at +0 bit-identical); then the halving tree s = 32 (v0+v4 .. v3+v7), 16 (v0+v2,
// v1+v3), 8 (v0+v1), 4 (128-bit halves), 2 (movehl), 1 (lane 0 + lane 1).
// add: 32 floats per iteration, then 8, then one maskload/maskstore tail; nothing past n-1.
// Napkin: 8 independent add chains hide the 4-cycle add latency; 2 loads/cycle ~ 64 B/cycle,
// far above DRAM: memory bound for anything outside L2.
#include <immintrin.h>

#include "cpu/kernels.h"

namespace fastcnn::cpu::avx2 {
namespace {

inline __m256i reduce_tail_mask(int64_t r) {  // lanes [0, r) set, 0 <= r <= 8
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(r)),
                            _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

}  // namespace

float sum(const float* x, int64_t n) {
  __m256 v[8];
  for (int k = 0; k < 8; ++k) v[k] = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 64 <= n; i += 64)
    for (int k = 0; k < 8; ++k) v[k] = _mm256_add_ps(v[k], _mm256_loadu_ps(x + i + 8 * k));
  if (i < n) {
    const int64_t r = n - i;  // 1..63
    for (int k = 0; k < 8 && 8 * k < r; ++k) {
      const int64_t c = r - 8 * k < 8 ? r - 8 * k : 8;
      v[k] = _mm256_add_ps(v[k], _mm256_maskload_ps(x + i + 8 * k, reduce_tail_mask(c)));
    }
  }
  for (int k = 0; k < 4; ++k) v[k] = _mm256_add_ps(v[k], v[k + 4]);  // s = 32
  for (int k = 0; k < 2; ++k) v[k] = _mm256_add_ps(v[k], v[k + 2]);  // s = 16
  const __m256 s8 = _mm256_add_ps(v[0], v[1]);                       // s = 8
  const __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1));
  const __m128 s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
  const __m128 s1 = _mm_add_ss(s2, _mm_shuffle_ps(s2, s2, 1));
  return _mm_cvtss_f32(s1);
}

void add(float* acc, const float* x, int64_t n) {
  int64_t i = 0;
  for (; i + 32 <= n; i += 32)
    for (int k = 0; k < 32; k += 8)
      _mm256_storeu_ps(acc + i + k,
                       _mm256_add_ps(_mm256_loadu_ps(acc + i + k), _mm256_loadu_ps(x + i + k)));
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(acc + i, _mm256_add_ps(_mm256_loadu_ps(acc + i), _mm256_loadu_ps(x + i)));
  if (i < n) {
    const __m256i m = reduce_tail_mask(n - i);
    const __m256 a = _mm256_maskload_ps(acc + i, m), b = _mm256_maskload_ps(x + i, m);
    _mm256_maskstore_ps(acc + i, m, _mm256_add_ps(a, b));
  }
}

}  // namespace fastcnn::cpu::avx2
