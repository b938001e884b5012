// probe_avx512.cpp -- FMA peak probe: 24 independent zmm FMA chains (latency 4 x 2 ports = 8
// chains are enough to saturate; 24 hide any scheduling slack). 24 x 16 lanes x 2 flops per step.
#include "cpu/avx512/intrin.h"

#include "cpu/kernels.h"

namespace fastcnn::cpu::avx512 {

const int64_t kFmaProbeFlopsPerIter = 24 * 16 * 2;

float fma_probe(int64_t iters) {
  __m512 acc[24];
  for (int i = 0; i < 24; ++i) acc[i] = _mm512_set1_ps(0.001f * static_cast<float>(i));
  const __m512 m = _mm512_set1_ps(0.999999f), a = _mm512_set1_ps(1e-7f);
  for (int64_t it = 0; it < iters; ++it) {
#pragma GCC unroll 24
    for (int i = 0; i < 24; ++i) acc[i] = _mm512_fmadd_ps(acc[i], m, a);
  }
  __m512 s = acc[0];
  for (int i = 1; i < 24; ++i) s = _mm512_add_ps(s, acc[i]);
  return _mm512_reduce_add_ps(s);
}

}  // namespace fastcnn::cpu::avx512
