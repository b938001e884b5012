// relu.cpp -- ReLU forward/backward driver: the array is cut into fixed 64 Ki-element chunks
// run in parallel by the active ISA's kernel (memory-bound: 8 bytes moved per element forward,
// 12 backward).
#include "cpu/kernels.h"
#include "cpu/ops.h"
#include "cpu/parallel.h"

namespace fastcnn::cpu {
namespace {
constexpr int64_t kChunk = 1 << 16;
int64_t chunks(int64_t n) { return (n + kChunk - 1) / kChunk; }
}  // namespace

void relu_forward(const float* x, float* y, int64_t n) {
  const ReluFwdFn f = kernels().relu_fwd;
  parallel_for(chunks(n), [&](int, int64_t b, int64_t e) {
    const int64_t lo = b * kChunk, hi = std::min(n, e * kChunk);
    f(x + lo, y + lo, hi - lo);
  });
}

void relu_backward(const float* dy, const float* y, float* dx, int64_t n) {
  const ReluBwdFn f = kernels().relu_bwd;
  parallel_for(chunks(n), [&](int, int64_t b, int64_t e) {
    const int64_t lo = b * kChunk, hi = std::min(n, e * kChunk);
    f(dy + lo, y + lo, dx + lo, hi - lo);
  });
}

}  // namespace fastcnn::cpu
