// activation.cpp (generic) -- the activation family, portable C++: each element is evaluated in
// double with std::exp / std::tanh / std::erfc (formulas that neither overflow nor cancel) and
// rounded once to float, so this is the portable reference the SIMD files are measured against.
//   sigmoid    y = 1 / (1 + exp(-x))                 bwd  dx = dy * (1 - y) * y      (y: output)
//   tanh       y = tanh(x)                           bwd  dx = dy * (1 - y * y)      (y: output)
//   leaky_relu y = x > 0 ? x : x * slope             bwd  dx = x > 0 ? dy : dy * slope (in float)
//   gelu       y = x * Phi(x), Phi(x) = erfc(-x / sqrt 2) / 2
//              bwd dx = dy * (Phi(x) + x * phi(x)),  phi(x) = exp(-x^2 / 2) / sqrt(2 pi)
//   gelu_tanh  y = x * s, s = sigmoid(v), v = 2u = x (k0 + k1 x^2), k0 = 2 sqrt(2/pi),
//              k1 = 0.044715 k0 (= 0.5 x (1 + tanh u) without the 1 + tanh cancellation)
//              bwd dx = dy * (s + x s (1 - s) (k0 + 3 k1 x^2))
//   silu       y = x * sigmoid(x)                    bwd  dx = dy * s * (1 + x * (1 - s))
// Special values come out of the formulas as PyTorch's: NaN -> NaN; sigmoid(-inf) = 0,
// sigmoid(inf) = 1, tanh(+-inf) = +-1, gelu / silu(-inf) = NaN (-inf * 0), gelu / silu(inf) =
// inf, their backward NaN at +-inf; -0.0 -> -0.0 (sigmoid 0.5). Double evaluation never
// overflows to NaN for finite x (exp(large) = inf gives 0 or 1 cleanly).
// Measured error (tests/test_ops_activation.py -m fuzz: every 97th float32 bit pattern of
// [-128, 128] plus the special values): 0.50 ulp of the float64 reference for every forward and
// backward (dy = 1): double evaluation, then one rounding (asserted: 0.5 forward, 1 backward).
// x, y, dy, dx: n contiguous floats, any alignment; in place is fine (element i read first).
// Napkin: ~20-60 ns per element for the libm calls: a fallback, not the fast path.
#include <cmath>

#include "cpu/kernels.h"

namespace fastcnn::cpu::generic {
namespace {

constexpr double kK0 = 1.5957691216057308;        // 2 sqrt(2 / pi)
constexpr double kK1 = 1.5957691216057308 * 0.044715;
constexpr double kInvSqrt2 = 0.70710678118654752440;
constexpr double kInvSqrt2Pi = 0.39894228040143267794;

// sigmoid(v) and 1 - sigmoid(v), each without cancellation
inline void sig2(double v, double& s, double& oms) {
  s = 1.0 / (1.0 + std::exp(-v));
  oms = 1.0 / (1.0 + std::exp(v));
}

template <typename F>
inline void map1(const float* x, float* y, int64_t n, F f) {
  for (int64_t i = 0; i < n; ++i) y[i] = static_cast<float>(f(static_cast<double>(x[i])));
}

template <typename F>
inline void map2(const float* dy, const float* t, float* dx, int64_t n, F f) {
  for (int64_t i = 0; i < n; ++i)
    dx[i] = static_cast<float>(static_cast<double>(dy[i]) * f(static_cast<double>(t[i])));
}

}  // namespace

void sigmoid_fwd(const float* x, float* y, int64_t n) {
  map1(x, y, n, [](double v) { return 1.0 / (1.0 + std::exp(-v)); });
}

void sigmoid_bwd(const float* dy, const float* y, float* dx, int64_t n) {
  map2(dy, y, dx, n, [](double v) { return (1.0 - v) * v; });
}

void tanh_fwd(const float* x, float* y, int64_t n) {
  map1(x, y, n, [](double v) { return std::tanh(v); });
}

void tanh_bwd(const float* dy, const float* y, float* dx, int64_t n) {
  map2(dy, y, dx, n, [](double v) { return 1.0 - v * v; });
}

void leaky_relu_fwd(const float* x, float* y, int64_t n, float slope) {
  for (int64_t i = 0; i < n; ++i) {
    const float v = x[i];
    y[i] = v > 0.0f ? v : v * slope;
  }
}

void leaky_relu_bwd(const float* dy, const float* x, float* dx, int64_t n, float slope) {
  for (int64_t i = 0; i < n; ++i) dx[i] = x[i] > 0.0f ? dy[i] : dy[i] * slope;
}

void gelu_fwd(const float* x, float* y, int64_t n) {
  map1(x, y, n, [](double v) { return v * (0.5 * std::erfc(-v * kInvSqrt2)); });
}

void gelu_bwd(const float* dy, const float* x, float* dx, int64_t n) {
  map2(dy, x, dx, n, [](double v) {
    return 0.5 * std::erfc(-v * kInvSqrt2) + v * (kInvSqrt2Pi * std::exp(-0.5 * v * v));
  });
}

void gelu_tanh_fwd(const float* x, float* y, int64_t n) {
  map1(x, y, n, [](double v) { return v / (1.0 + std::exp(-v * (kK0 + kK1 * v * v))); });
}

void gelu_tanh_bwd(const float* dy, const float* x, float* dx, int64_t n) {
  map2(dy, x, dx, n, [](double v) {
    double s, oms;
    sig2(v * (kK0 + kK1 * v * v), s, oms);
    return s + v * s * oms * (kK0 + 3.0 * kK1 * v * v);
  });
}

void silu_fwd(const float* x, float* y, int64_t n) {
  map1(x, y, n, [](double v) { return v / (1.0 + std::exp(-v)); });
}

void silu_bwd(const float* dy, const float* x, float* dx, int64_t n) {
  map2(dy, x, dx, n, [](double v) {
    double s, oms;
    sig2(v, s, oms);
    return s * (1.0 + v * oms);
  });
}

}  // namespace fastcnn::cpu::generic
