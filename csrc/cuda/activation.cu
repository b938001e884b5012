// activation.cu -- the activation family on CUDA: sigmoid, tanh, leaky_relu, gelu (erf and tanh
// forms), silu, forward and backward, elementwise over any shape (n elements).
// Maths: the CPU SIMD kernels' algorithms lane for lane (csrc/cpu/avx2/vmath_avx2.h states them):
// exp split as m * s with Cody-Waite reduction and Cephes' polynomial (no expf / erff /
// tanhf, so no dependence on the device libm or -use_fast_math), Cephes' odd tanh polynomial
// below 0.625 and (1 - e) / (1 + e) above, the normal CDF as 0.5 + x A(x^2) below 0.75 and
// exp(-t^2/2) R(t) (exact square by FMA) above, silu and gelu(tanh) as x sigmoid(v) with v in
// double-float arithmetic. Products whose rounding is compensated (t^2, k1 x^2, x w) use
// __fmul_rn so nvcc's FMA contraction cannot change them; elsewhere contraction may fuse a
// multiply-add (one rounding less), so results can differ from the CPU's in the last bit.
// Error bounds: those of the CPU SIMD kernels (activation_avx2.cpp), plus at most 1 ulp where a
// contraction moves a rounding; tests/test_cuda_activation.py checks them against the float64
// reference (on the CPU emulator: the same code compiled as C++ with -ffp-contract=off).
// Special values: PyTorch's (NaN -> NaN, sigmoid(-inf) = 0, tanh(+-inf) = +-1, gelu / silu
// (-inf) = NaN, their backward NaN at +-inf, -0.0 kept, no overflow for large |x|).
// Approach: grid-stride loops over float4 when every pointer is 16-byte aligned (scalar
// otherwise and for the tail); in place is fine (each element read before written).
// Napkin: 8 B moved per element forward (12 backward) against 40-110 flops (gelu backward the
// most): 64 M elements = 512 MB at ~4 TB/s ~ 0.13 ms, while 64 M x 110 flops = 7 GFLOP at
// ~50 TFLOP/s ~ 0.14 ms: memory-bound for all but gelu's backward, which is at the balance
// point on an H100/H200 (compute-bound on smaller GPUs).
#include <math.h>

#include "cuda/common.cuh"

namespace fastcnn::cuda {
namespace {

// NaN-preserving clamp (fminf / fmaxf would drop a NaN)
FASTCNN_D float clampf(float x, float lo, float hi) {
  const float v = x < lo ? lo : x;
  return v > hi ? hi : v;
}

struct ExpS {
  float m, s;  // e^x = m * s
};

FASTCNN_D ExpS exp_split(float x) {
  const float xc = clampf(x, -112.0f, 89.0f);
  const float n = rintf(__fmul_rn(xc, 1.44269504088896341f));
  float r = fmaf(-n, 0.693359375f, xc);
  r = fmaf(-n, -2.12194440e-4f, r);
  float p = 1.9875691500e-4f;
  p = fmaf(p, r, 1.3981999507e-3f);
  p = fmaf(p, r, 8.3334519073e-3f);
  p = fmaf(p, r, 4.1665795894e-2f);
  p = fmaf(p, r, 1.6666665459e-1f);
  p = fmaf(p, r, 5.0000001201e-1f);
  p = __fadd_rn(fmaf(p, __fmul_rn(r, r), r), 1.0f);
  const int ni = n == n ? static_cast<int>(n) : 0;  // NaN: p is NaN already
  const int n1 = ni >> 1, n2 = ni - n1;
  ExpS e;
  e.m = x < -112.0f ? 0.0f : __fmul_rn(p, __int_as_float((n1 + 127) << 23));
  e.s = __int_as_float((n2 + 127) << 23);
  return e;
}

FASTCNN_D float exp_f(float x) {
  const ExpS e = exp_split(x);
  return __fmul_rn(e.m, e.s);
}

FASTCNN_D float sigmoid_f(float x) {
  const float e = exp_f(-fabsf(x));
  return __fdiv_rn(signbit(x) ? e : 1.0f, __fadd_rn(1.0f, e));
}

FASTCNN_D float tanh_f(float x) {
  const float t = fabsf(x);
  float y;
  if (t < 0.625f) {
    const float z = __fmul_rn(t, t);
    float p = -5.70498872745e-3f;
    p = fmaf(p, z, 2.06390887954e-2f);
    p = fmaf(p, z, -5.37397155531e-2f);
    p = fmaf(p, z, 1.33314422036e-1f);
    p = fmaf(p, z, -3.33332819422e-1f);
    y = fmaf(__fmul_rn(p, z), t, t);
  } else {
    const float e = exp_f(__fmul_rn(-2.0f, t));
    y = __fdiv_rn(__fsub_rn(1.0f, e), __fadd_rn(1.0f, e));
  }
  return copysignf(y, x);  // NaN stays NaN
}

FASTCNN_D float phi_cdf_small(float x) {
  const float z = __fmul_rn(x, x);
  float a = 1.03547136e-4f;
  a = fmaf(a, z, -1.18190236e-3f);
  a = fmaf(a, z, 9.97254252e-3f);
  a = fmaf(a, z, -6.64903149e-2f);
  a = fmaf(a, z, 3.98942292e-1f);
  return fmaf(x, a, 0.5f);
}

FASTCNN_D float mills(float t) {
  float p = 5.85260475e-3f;
  p = fmaf(p, t, 5.04313111e-2f);
  p = fmaf(p, t, 2.10169032e-1f);
  p = fmaf(p, t, 4.71310854e-1f);
  p = fmaf(p, t, 5.00009060e-1f);
  float q = 1.46702668e-2f;
  q = fmaf(q, t, 1.26414880e-1f);
  q = fmaf(q, t, 5.41422665e-1f);
  q = fmaf(q, t, 1.30880964e+0f);
  q = fmaf(q, t, 1.74062288e+0f);
  q = fmaf(q, t, 1.0f);
  return __fdiv_rn(p, q);
}

FASTCNN_D ExpS exp_half_square(float t) {
  const float h = __fmul_rn(t, t);
  const float l = fmaf(t, t, -h);
  ExpS e = exp_split(__fmul_rn(-0.5f, h));
  e.m = fmaf(-e.m, __fmul_rn(0.5f, l), e.m);
  return e;
}

FASTCNN_D float gelu_f(float x) {
  const float t = fabsf(x);
  if (t < 0.75f) return __fmul_rn(x, phi_cdf_small(x));
  const float tc = t > 16.0f ? 16.0f : t;
  const ExpS e = exp_half_square(tc);
  const float r = mills(tc);
  if (signbit(x)) return __fmul_rn(__fmul_rn(__fmul_rn(x, r), e.m), e.s);
  return __fmul_rn(x, __fsub_rn(1.0f, __fmul_rn(__fmul_rn(e.m, e.s), r)));  // NaN lands here
}

FASTCNN_D float gelu_grad_f(float x) {
  const float t = fabsf(x);
  const float tc = t > 16.0f ? 16.0f : t;
  const ExpS e = exp_half_square(tc);
  const float k = __fmul_rn(x, 0.3989422917366028f);
  if (t < 0.75f) return fmaf(k, __fmul_rn(e.m, e.s), phi_cdf_small(x));
  const float r = mills(tc);
  if (signbit(x)) return __fmul_rn(__fmul_rn(__fadd_rn(r, k), e.m), e.s);
  return fmaf(__fmul_rn(__fsub_rn(k, r), e.m), e.s, 1.0f);
}

struct SigV {
  ExpS e;
  float d;
};

FASTCNN_D SigV sig_v(float x, float vh, float vl) {
  SigV g;
  g.e = exp_split(-fabsf(vh));
  const float vls = signbit(x) ? -vl : vl;
  g.e.m = fmaf(-g.e.m, vls, g.e.m);
  g.d = __fadd_rn(1.0f, __fmul_rn(g.e.m, g.e.s));
  return g;
}

FASTCNN_D float x_sigmoid(float x, const SigV& g) {
  const float num = signbit(x) ? __fmul_rn(__fmul_rn(x, g.e.m), g.e.s) : x;
  return __fdiv_rn(num, g.d);
}

FASTCNN_D float x_sigmoid_grad(float x, float dv, const SigV& g) {
  const float xdv = __fmul_rn(x, dv);
  const float num = signbit(x) ? __fmul_rn(__fmul_rn(g.e.m, __fadd_rn(g.d, xdv)), g.e.s)
                               : fmaf(xdv, __fmul_rn(g.e.m, g.e.s), g.d);
  return __fdiv_rn(num, __fmul_rn(g.d, g.d));
}

FASTCNN_D void gelu_tanh_v(float x, float& vh, float& vl) {
  const float k0h = 1.5957691669464111f, k0l = -4.534068054340423e-08f;
  const float k1h = 0.07135481387376785f, k1l = 2.3988324659995897e-09f;
  const float sh = __fmul_rn(x, x), sl = fmaf(x, x, -sh);
  const float ph = __fmul_rn(k1h, sh);
  const float pl = __fadd_rn(fmaf(k1h, sh, -ph), fmaf(k1h, sl, __fmul_rn(k1l, sh)));
  const float wh = __fadd_rn(k0h, ph);
  const float bb = __fsub_rn(wh, k0h);
  const float err = __fadd_rn(__fsub_rn(k0h, __fsub_rn(wh, bb)), __fsub_rn(ph, bb));
  const float wl = __fadd_rn(__fadd_rn(err, pl), k0l);
  vh = __fmul_rn(x, wh);
  vl = fmaf(x, wl, fmaf(x, wh, -vh));
}

FASTCNN_D float gelu_tanh_f(float x) {
  float vh, vl;
  gelu_tanh_v(clampf(x, -30.0f, 30.0f), vh, vl);
  return x_sigmoid(x, sig_v(x, vh, vl));
}

FASTCNN_D float gelu_tanh_grad_f(float x) {
  const float xc = clampf(x, -30.0f, 30.0f);
  float vh, vl;
  gelu_tanh_v(xc, vh, vl);
  const float dv = fmaf(0.2140644488f, __fmul_rn(xc, xc), 1.5957691669464111f);
  const float xs = __fadd_rn(xc, __fsub_rn(x, x));  // NaN at +-inf (PyTorch)
  return x_sigmoid_grad(xs, dv, sig_v(x, vh, vl));
}

// ---- the ops as functors: forward f(x), backward f(dy, t) ------------------------------------
struct Fwd {
  ActOp op;
  float slope;
  FASTCNN_D float operator()(float x) const {
    switch (op) {
      case ActOp::sigmoid: return sigmoid_f(x);
      case ActOp::tanh: return tanh_f(x);
      case ActOp::leaky_relu: return x > 0.0f ? x : __fmul_rn(x, slope);
      case ActOp::gelu: return gelu_f(x);
      case ActOp::gelu_tanh: return gelu_tanh_f(x);
      default: return x_sigmoid(x, sig_v(x, x, 0.0f));  // silu
    }
  }
};

struct Bwd {
  ActOp op;
  float slope;
  FASTCNN_D float operator()(float d, float t) const {
    switch (op) {
      case ActOp::sigmoid: return __fmul_rn(__fmul_rn(d, __fsub_rn(1.0f, t)), t);
      case ActOp::tanh: return __fmul_rn(d, fmaf(-t, t, 1.0f));
      case ActOp::leaky_relu: return t > 0.0f ? d : __fmul_rn(d, slope);
      case ActOp::gelu: return __fmul_rn(d, gelu_grad_f(t));
      case ActOp::gelu_tanh: return __fmul_rn(d, gelu_tanh_grad_f(t));
      default: return __fmul_rn(d, x_sigmoid_grad(t, 1.0f, sig_v(t, t, 0.0f)));  // silu
    }
  }
};

__global__ void __launch_bounds__(kThreads)
    act_fwd_kernel(const float* x, float* y, int64_t n, int vec, Fwd f) {
  const int64_t start = global_thread(), step = grid_threads();
  int64_t done = 0;
  if (vec) {
    const int64_t n4 = n / 4;
    const float4* x4 = reinterpret_cast<const float4*>(x);
    float4* y4 = reinterpret_cast<float4*>(y);
    for (int64_t i = start; i < n4; i += step) {
      float4 v = x4[i];
      v.x = f(v.x), v.y = f(v.y), v.z = f(v.z), v.w = f(v.w);
      y4[i] = v;
    }
    done = n4 * 4;
  }
  for (int64_t i = done + start; i < n; i += step) y[i] = f(x[i]);
}

__global__ void __launch_bounds__(kThreads)
    act_bwd_kernel(const float* dy, const float* t, float* dx, int64_t n, int vec, Bwd f) {
  const int64_t start = global_thread(), step = grid_threads();
  int64_t done = 0;
  if (vec) {
    const int64_t n4 = n / 4;
    const float4* d4 = reinterpret_cast<const float4*>(dy);
    const float4* t4 = reinterpret_cast<const float4*>(t);
    float4* o4 = reinterpret_cast<float4*>(dx);
    for (int64_t i = start; i < n4; i += step) {
      const float4 d = d4[i], v = t4[i];
      o4[i] = make_float4(f(d.x, v.x), f(d.y, v.y), f(d.z, v.z), f(d.w, v.w));
    }
    done = n4 * 4;
  }
  for (int64_t i = done + start; i < n; i += step) dx[i] = f(dy[i], t[i]);
}

bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15u) == 0; }

const char* act_name(ActOp op, bool backward) {
  static const char* fwd[] = {"sigmoid", "tanh", "leaky_relu", "gelu", "gelu", "silu"};
  static const char* bwd[] = {"sigmoid_backward", "tanh_backward", "leaky_relu_backward",
                              "gelu_backward", "gelu_backward", "silu_backward"};
  return (backward ? bwd : fwd)[static_cast<int>(op)];
}

}  // namespace

void activation_forward(ActOp op, const float* x, float* y, int64_t n, float negative_slope,
                        Stream stream) {
  if (n <= 0) return;
  const int vec = aligned16(x) && aligned16(y);
  launch(act_name(op, false), act_fwd_kernel, grid_1d(vec ? ceil_div(n, 4) : n), dim3(kThreads),
         stream, x, y, n, vec, Fwd{op, negative_slope});
}

void activation_backward(ActOp op, const float* dy, const float* t, float* dx, int64_t n,
                         float negative_slope, Stream stream) {
  if (n <= 0) return;
  const int vec = aligned16(dy) && aligned16(t) && aligned16(dx);
  launch(act_name(op, true), act_bwd_kernel, grid_1d(vec ? ceil_div(n, 4) : n), dim3(kThreads),
         stream, dy, t, dx, n, vec, Bwd{op, negative_slope});
}

}  // namespace fastcnn::cuda
