// probe_avx2.cpp -- FMA peak probe: 12 independent ymm FMA chains, 12 x 8 lanes x 2 flops a step.
#include <immintrin.h>

#include "cpu/kernels.h"

namespace fastcnn::cpu::avx2 {

const int64_t kFmaProbeFlopsPerIter = 12 * 8 * 2;

float fma_probe(int64_t iters) {
  __m256 acc[12];
  for (int i = 0; i < 12; ++i) acc[i] = _mm256_set1_ps(0.001f * static_cast<float>(i));
  const __m256 m = _mm256_set1_ps(0.999999f), a = _mm256_set1_ps(1e-7f);
  for (int64_t it = 0; it < iters; ++it) {
#pragma GCC unroll 12
    for (int i = 0; i < 12; ++i) acc[i] = _mm256_fmadd_ps(acc[i], m, a);
  }
  __m256 s = acc[0];
  for (int i = 1; i < 12; ++i) s = _mm256_add_ps(s, acc[i]);
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, s);
  float total = 0.0f;
  for (float v : lanes) total += v;
  return total;
}

}  // namespace fastcnn::cpu::avx2
