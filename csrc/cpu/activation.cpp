// activation.cpp -- the activation family's drivers (sigmoid, tanh, leaky_relu, gelu, silu and
// their backward): the array is cut into fixed 64 Ki-element chunks run in parallel by the
// active ISA's kernel, so every element sees the same code path whatever the thread count
// (bit-identical results for 1 or N threads). Memory-bound on large arrays: 8 bytes moved per
// element forward, 12 backward (see the kernels' header comments for the flops).
#include <algorithm>

#include "cpu/kernels.h"
#include "cpu/ops.h"
#include "cpu/parallel.h"

namespace fastcnn::cpu {
namespace {
constexpr int64_t kChunk = 1 << 16;
int64_t chunks(int64_t n) { return (n + kChunk - 1) / kChunk; }

template <typename F>
void each_chunk(int64_t n, F f) {
  if (n <= 0) return;
  parallel_for(chunks(n), [&](int, int64_t b, int64_t e) {
    const int64_t lo = b * kChunk, hi = std::min(n, e * kChunk);
    f(lo, hi - lo);
  });
}

void fwd(ActFwdFn f, const float* x, float* y, int64_t n) {
  each_chunk(n, [&](int64_t lo, int64_t m) { f(x + lo, y + lo, m); });
}

void bwd(ActBwdFn f, const float* dy, const float* t, float* dx, int64_t n) {
  each_chunk(n, [&](int64_t lo, int64_t m) { f(dy + lo, t + lo, dx + lo, m); });
}
}  // namespace

void sigmoid_forward(const float* x, float* y, int64_t n) { fwd(kernels().sigmoid_fwd, x, y, n); }
void sigmoid_backward(const float* dy, const float* y, float* dx, int64_t n) {
  bwd(kernels().sigmoid_bwd, dy, y, dx, n);
}
void tanh_forward(const float* x, float* y, int64_t n) { fwd(kernels().tanh_fwd, x, y, n); }
void tanh_backward(const float* dy, const float* y, float* dx, int64_t n) {
  bwd(kernels().tanh_bwd, dy, y, dx, n);
}

void leaky_relu_forward(const float* x, float* y, int64_t n, float negative_slope) {
  const LeakyReluFwdFn f = kernels().leaky_relu_fwd;
  each_chunk(n, [&](int64_t lo, int64_t m) { f(x + lo, y + lo, m, negative_slope); });
}
void leaky_relu_backward(const float* dy, const float* x, float* dx, int64_t n,
                         float negative_slope) {
  const LeakyReluBwdFn f = kernels().leaky_relu_bwd;
  each_chunk(n, [&](int64_t lo, int64_t m) { f(dy + lo, x + lo, dx + lo, m, negative_slope); });
}

void gelu_forward(const float* x, float* y, int64_t n, bool tanh_approx) {
  fwd(tanh_approx ? kernels().gelu_tanh_fwd : kernels().gelu_fwd, x, y, n);
}
void gelu_backward(const float* dy, const float* x, float* dx, int64_t n, bool tanh_approx) {
  bwd(tanh_approx ? kernels().gelu_tanh_bwd : kernels().gelu_bwd, dy, x, dx, n);
}

void silu_forward(const float* x, float* y, int64_t n) { fwd(kernels().silu_fwd, x, y, n); }
void silu_backward(const float* dy, const float* x, float* dx, int64_t n) {
  bwd(kernels().silu_bwd, dy, x, dx, n);
}

}  // namespace fastcnn::cpu
