// probe.cpp (generic) -- multiply-add peak probe for the portable path: 32 independent chains
// that the compiler keeps in SSE registers (8 x 4 lanes); 2 flops per chain per step.
#include "cpu/kernels.h"

namespace fastcnn::cpu::generic {

const int64_t kFmaProbeFlopsPerIter = 32 * 2;

float fma_probe(int64_t iters) {
  float acc[32];
  for (int i = 0; i < 32; ++i) acc[i] = 0.001f * static_cast<float>(i);
  for (int64_t it = 0; it < iters; ++it) {
    for (int i = 0; i < 32; ++i) acc[i] = acc[i] * 0.999999f + 1e-7f;
  }
  float s = 0.0f;
  for (float v : acc) s += v;
  return s;
}

}  // namespace fastcnn::cpu::generic
