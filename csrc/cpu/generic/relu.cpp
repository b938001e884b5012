// relu.cpp (generic) -- ReLU forward and backward, portable C++.
//   relu_fwd: y[i]  = x[i] < 0 ? 0 : x[i]   for i < n   (NaN and -0.0 pass through unchanged:
//             the same bits as the SIMD files' max_ps(0, x), and PyTorch's clamp_min(x, 0))
//   relu_bwd: dx[i] = y[i] <= 0 ? 0 : dy[i]  for i < n   (PyTorch threshold_backward: a NaN y passes dy)
// x, y, dy, dx: n contiguous floats, any alignment; x == y and dy == dx (in place) are fine since
// element i is read before it is written and nothing else is touched.
// Approach: one select per element, written so that GCC/Clang vectorise it with the baseline
// ISA (SSE2 maxps / cmpps+andps) behind their runtime alias check.
// Napkin: 8 bytes moved per element (12 for bwd) and ~0 flops: memory bound; 64 MB at 10+ GB/s.
#include "cpu/kernels.h"

namespace fastcnn::cpu::generic {

void relu_fwd(const float* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const float v = x[i];
    y[i] = v < 0.0f ? 0.0f : v;
  }
}

void relu_bwd(const float* dy, const float* y, float* dx, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dx[i] = y[i] <= 0.0f ? 0.0f : dy[i];
}

}  // namespace fastcnn::cpu::generic
