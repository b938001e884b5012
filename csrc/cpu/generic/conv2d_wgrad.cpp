// conv2d_wgrad.cpp (generic) -- conv2d's portable micro-kernel of the wide-grid weight gradient:
//   C[i][jj] = (accumulate ? C[i][jj] : 0) + sum_{k < kc} src[off[i] + k] * b[k*ldb + jj]
// for i < 12 taps, jj < 32 channels (see conv2d_wgrad_avx512.cpp and conv2d_wide.cpp). One tap at
// a time, 32 accumulators in a fixed-size array the compiler keeps in SSE registers.
#include "cpu/kernels.h"

namespace fastcnn::cpu::generic {

void conv2d_wgrad_ukernel(int64_t kc, const float* src, const int64_t* off, const float* b,
                          int64_t ldb, float* c, int64_t ldc, int accumulate) {
  for (int i = 0; i < 12; ++i) {
    float acc[32] = {};
    const float* s = src + off[i];
    for (int64_t k = 0; k < kc; ++k) {
      const float a = s[k];
      for (int j = 0; j < 32; ++j) acc[j] += a * b[k * ldb + j];
    }
    float* ci = c + i * ldc;
    for (int j = 0; j < 32; ++j) ci[j] = accumulate ? ci[j] + acc[j] : acc[j];
  }
}

}  // namespace fastcnn::cpu::generic
