// activation_avx2.cpp -- the activation family, AVX2 + FMA (8 floats per ymm), on the vector
// maths of vmath_avx2.h. Shapes: n contiguous floats, any alignment; in place (y == x, dx == dy
// or dx == the forward tensor) is fine: every vector is loaded before it is stored. Main loop
// 16 floats (two independent ymm chains), then 8, then one maskload / maskstore for the last
// n % 8 (masked-off lanes are read as 0, never stored: nothing past element n-1 is touched).
// The gelu forms go 8 floats an iteration (map1_split / map2_split), each vector by a fast path
// when all its lanes are finite with |x| < 8 (vmath's kSmall forms: no clamps, one 2^n scale,
// no split exponent; the same bits as the general path, which takes every other vector).
//   sigmoid    y = x < 0 ? e / (1 + e) : 1 / (1 + e),  e = exp(-|x|)      bwd (dy (1 - y)) y
//   tanh       vm::tanh                                                    bwd dy (1 - y y) (FMA)
//   leaky_relu y = x > 0 ? x : x * slope              bwd x > 0 ? dy : dy * slope   (exact)
//   gelu       y = x Phi(x) (vm: polynomial core, exp(-x^2/2) R(|x|) tails)
//              bwd dy (Phi + x phi): x < 0, |x| >= 0.75: (R - |x| c) m s (one scaling into the
//              subnormals), c = 1 / sqrt(2 pi)
//   gelu_tanh  y = x sigmoid(v), v = x (k0 + k1 x^2) double-float    bwd (vm::x_sigmoid_grad)
//   silu       y = x sigmoid(x)                                        bwd (vm::x_sigmoid_grad)
// Special values (PyTorch's, tests/test_ops_activation.py compares with torch): NaN -> NaN;
// sigmoid(-inf) = 0, sigmoid(inf) = 1, tanh(+-inf) = +-1, gelu / silu(inf) = inf,
// gelu / silu(-inf) = NaN (-inf * 0, as PyTorch), backward of gelu / silu NaN at +-inf; -0.0 ->
// -0.0 (sigmoid 0.5, gradients 0.5); no overflow for any finite x (silu(-100) = -3.72e-42, the
// correctly rounded subnormal; gelu(-14) = -1.1e-43).
// Maximum error against the float64 reference, measured by tests/test_ops_activation.py
// (-m fuzz: every 97th float32 bit pattern of [-128, 128], 2.3e7 inputs, subnormals included,
// plus the special values; the default run: every 997th), in ulps of the float32 result
// (subnormal results: in units of 2^-149). Measured (asserted bound in ACT_ULPS); forward also
// over every 13th bit pattern of all float32 (3.3e8 inputs), which found larger maxima than
// the every-97th sweep for three ops (gelu_tanh's old bound of 3.5 was exceeded):
//   forward   sigmoid 2.35 at -2.709 (2.5), tanh 1.50 (2), silu 3.19 at -3.221 (3.5), gelu 6.73
//             (7; at x ~ -10.8, the rational R's float evaluation plus exp), gelu_tanh 3.64 at
//             -1.8385 (4: sigmoid(v)'s exp and division on v's double-float sum); leaky_relu exact
//   backward  dy = 1, in ulps of the larger of |result| and the formula's largest term (a
//             derivative's zero has no relative accuracy): sigmoid 1.49 (2), tanh 0.50 (1.5),
//             silu 4.23 (4.5), gelu 3.74 (4), gelu_tanh 5.15 (5.5); times dy: + 0.5 ulp.
// Napkin: ~25 (sigmoid) to ~75 (gelu bwd) flops per 8 floats, 2 FMA ports at ~3 GHz: 1-3 ns per
// ymm, i.e. 10-30 GB/s per core of the 8 bytes per element moved (12 backward), about the
// bandwidth of one core's share of DRAM: memory-bound on large arrays for sigmoid, tanh, silu,
// leaky_relu, compute-bound for gelu (measured on a shared 2-core EPYC: the same GB/s in L1 as
// out of cache; its fast path is ~50 instructions + one vdivps a ymm, 10-33 % fewer cycles than
// the general path at two ymm an iteration, whose constants spilled from the 16 registers).
#include <immintrin.h>

#include "cpu/avx2/vmath_avx2.h"
#include "cpu/kernels.h"

namespace fastcnn::cpu::avx2 {
namespace {

using vm::c;

template <typename F>
inline void map1(const float* x, float* y, int64_t n, F f) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m256 a = f(_mm256_loadu_ps(x + i)), b = f(_mm256_loadu_ps(x + i + 8));
    _mm256_storeu_ps(y + i, a);
    _mm256_storeu_ps(y + i + 8, b);
  }
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, f(_mm256_loadu_ps(x + i)));
  if (i < n) {
    const __m256i m = vm::tail_mask(n - i);
    _mm256_maskstore_ps(y + i, m, f(_mm256_maskload_ps(x + i, m)));
  }
}

template <typename F>
inline void map2(const float* dy, const float* t, float* dx, int64_t n, F f) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m256 a = f(_mm256_loadu_ps(dy + i), _mm256_loadu_ps(t + i));
    const __m256 b = f(_mm256_loadu_ps(dy + i + 8), _mm256_loadu_ps(t + i + 8));
    _mm256_storeu_ps(dx + i, a);
    _mm256_storeu_ps(dx + i + 8, b);
  }
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(dx + i, f(_mm256_loadu_ps(dy + i), _mm256_loadu_ps(t + i)));
  if (i < n) {
    const __m256i m = vm::tail_mask(n - i);
    _mm256_maskstore_ps(dx + i, m, f(_mm256_maskload_ps(dy + i, m), _mm256_maskload_ps(t + i, m)));
  }
}

// The gelu family's loops: one ymm per iteration (two interleaved spill on AVX2's 16 registers:
// 30-50 % slower, measured), each vector by `fast` when every lane is finite with |x| < kFastAbs
// (the same bits as `full` there: vmath_avx2.h's kSmall forms), else by `full`. The masked tail
// reads its dead lanes as 0 (fast).
constexpr float kFastAbs = 8.0f;

inline bool all_small(__m256 v) {
  return _mm256_movemask_ps(_mm256_cmp_ps(vm::vabs(v), c(kFastAbs), _CMP_LT_OQ)) == 0xFF;
}

template <typename Fast, typename Full>
inline void map1_split(const float* x, float* y, int64_t n, Fast fast, Full full) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 v = _mm256_loadu_ps(x + i);
    _mm256_storeu_ps(y + i, all_small(v) ? fast(v) : full(v));
  }
  if (i < n) {
    const __m256i m = vm::tail_mask(n - i);
    const __m256 v = _mm256_maskload_ps(x + i, m);
    _mm256_maskstore_ps(y + i, m, all_small(v) ? fast(v) : full(v));
  }
}

// dx = dy * grad(t), split on t
template <typename Fast, typename Full>
inline void map2_split(const float* dy, const float* t, float* dx, int64_t n, Fast fast,
                       Full full) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 v = _mm256_loadu_ps(t + i);
    const __m256 g = all_small(v) ? fast(v) : full(v);
    _mm256_storeu_ps(dx + i, _mm256_mul_ps(_mm256_loadu_ps(dy + i), g));
  }
  if (i < n) {
    const __m256i m = vm::tail_mask(n - i);
    const __m256 v = _mm256_maskload_ps(t + i, m);
    const __m256 g = all_small(v) ? fast(v) : full(v);
    _mm256_maskstore_ps(dx + i, m, _mm256_mul_ps(_mm256_maskload_ps(dy + i, m), g));
  }
}

// kSmall: |x| < kFastAbs (t^2 / 2 < 32); the clamp to 16 is then a no-op and is left out
template <bool kSmall = false>
inline __m256 gelu1(__m256 x) {
  const __m256 t = vm::vabs(x);
  const __m256 small = vm::phi_cdf_small(x);
  const __m256 y_small = _mm256_mul_ps(x, small);
  const __m256 tc = kSmall ? t : _mm256_min_ps(c(16.0f), t);
  const vm::Exp e = vm::exp_half_square<kSmall>(tc);
  const __m256 r = vm::mills(tc);
  const __m256 q = _mm256_mul_ps(_mm256_mul_ps(e.m, e.s), r);  // Phi(-|x|)
  const __m256 y_pos = _mm256_mul_ps(x, _mm256_sub_ps(c(1.0f), q));
  const __m256 y_neg = _mm256_mul_ps(_mm256_mul_ps(_mm256_mul_ps(x, r), e.m), e.s);
  const __m256 y_big = _mm256_blendv_ps(y_pos, y_neg, x);
  return _mm256_blendv_ps(y_big, y_small, _mm256_cmp_ps(t, c(0.75f), _CMP_LT_OQ));
}

template <bool kSmall = false>
inline __m256 gelu_grad1(__m256 x) {
  const __m256 kc = c(0.3989422917366028f);  // 1 / sqrt(2 pi)
  const __m256 t = vm::vabs(x);
  const __m256 tc = kSmall ? t : _mm256_min_ps(c(16.0f), t);
  const vm::Exp e = vm::exp_half_square<kSmall>(tc);
  const __m256 k = _mm256_mul_ps(x, kc);
  // |x| < 0.75: Phi + x c exp(-x^2 / 2)
  const __m256 g_small = _mm256_fmadd_ps(k, _mm256_mul_ps(e.m, e.s), vm::phi_cdf_small(x));
  // |x| >= 0.75: x < 0: (R + x c) m s; x > 0: 1 + (x c - R) m s
  const __m256 r = vm::mills(tc);
  const __m256 g_neg = _mm256_mul_ps(_mm256_mul_ps(_mm256_add_ps(r, k), e.m), e.s);
  const __m256 g_pos =
      _mm256_fmadd_ps(_mm256_mul_ps(_mm256_sub_ps(k, r), e.m), e.s, c(1.0f));
  const __m256 g_big = _mm256_blendv_ps(g_pos, g_neg, x);
  return _mm256_blendv_ps(g_big, g_small, _mm256_cmp_ps(t, c(0.75f), _CMP_LT_OQ));
}

// kSmall: |x| < kFastAbs, so |v| < 8 (1.596 + 0.0714 * 64) < 50 and the clamp is a no-op
template <bool kSmall = false>
inline __m256 gelu_tanh1(__m256 x) {
  __m256 vh, vl;
  // beyond +-30: sigmoid(v) is 0 / 1
  vm::gelu_tanh_v(kSmall ? x : vm::clamp(x, -30.0f, 30.0f), vh, vl);
  return vm::x_sigmoid(x, vm::sig_v<kSmall>(x, vh, vl));
}

template <bool kSmall = false>
inline __m256 gelu_tanh_grad1(__m256 x) {
  const __m256 xc = kSmall ? x : vm::clamp(x, -30.0f, 30.0f);
  __m256 vh, vl;
  vm::gelu_tanh_v(xc, vh, vl);
  // v' = k0 + 3 k1 x^2
  const __m256 dv = _mm256_fmadd_ps(c(0.2140644488f), _mm256_mul_ps(xc, xc),
                                    c(1.5957691669464111f));
  // x v' from the clamped x (no overflow for |x| > 30, where the gradient is 0 or 1), plus
  // x - x: NaN at +-inf, as PyTorch's formula gives there
  const __m256 xs = _mm256_add_ps(xc, _mm256_sub_ps(x, x));
  return vm::x_sigmoid_grad(xs, dv, vm::sig_v<kSmall>(x, vh, vl));
}

}  // namespace

void sigmoid_fwd(const float* x, float* y, int64_t n) { map1(x, y, n, vm::sigmoid); }

void sigmoid_bwd(const float* dy, const float* y, float* dx, int64_t n) {
  map2(dy, y, dx, n, [](__m256 d, __m256 v) {
    return _mm256_mul_ps(_mm256_mul_ps(d, _mm256_sub_ps(c(1.0f), v)), v);
  });
}

void tanh_fwd(const float* x, float* y, int64_t n) { map1(x, y, n, vm::tanh); }

void tanh_bwd(const float* dy, const float* y, float* dx, int64_t n) {
  map2(dy, y, dx, n,
       [](__m256 d, __m256 v) { return _mm256_mul_ps(d, _mm256_fnmadd_ps(v, v, c(1.0f))); });
}

void leaky_relu_fwd(const float* x, float* y, int64_t n, float slope) {
  const __m256 s = c(slope), zero = _mm256_setzero_ps();
  map1(x, y, n, [s, zero](__m256 v) {
    return _mm256_blendv_ps(_mm256_mul_ps(v, s), v, _mm256_cmp_ps(v, zero, _CMP_GT_OQ));
  });
}

void leaky_relu_bwd(const float* dy, const float* x, float* dx, int64_t n, float slope) {
  const __m256 s = c(slope), zero = _mm256_setzero_ps();
  map2(dy, x, dx, n, [s, zero](__m256 d, __m256 v) {
    return _mm256_blendv_ps(_mm256_mul_ps(d, s), d, _mm256_cmp_ps(v, zero, _CMP_GT_OQ));
  });
}

void gelu_fwd(const float* x, float* y, int64_t n) {
  map1_split(x, y, n, gelu1<true>, gelu1<false>);
}

void gelu_bwd(const float* dy, const float* x, float* dx, int64_t n) {
  map2_split(dy, x, dx, n, gelu_grad1<true>, gelu_grad1<false>);
}

void gelu_tanh_fwd(const float* x, float* y, int64_t n) {
  map1_split(x, y, n, gelu_tanh1<true>, gelu_tanh1<false>);
}

void gelu_tanh_bwd(const float* dy, const float* x, float* dx, int64_t n) {
  map2_split(dy, x, dx, n, gelu_tanh_grad1<true>, gelu_tanh_grad1<false>);
}

void silu_fwd(const float* x, float* y, int64_t n) {
  map1(x, y, n, [](__m256 v) { return vm::x_sigmoid(v, vm::sig_v(v, v, _mm256_setzero_ps())); });
}

void silu_bwd(const float* dy, const float* x, float* dx, int64_t n) {
  map2(dy, x, dx, n, [](__m256 d, __m256 v) {
    const __m256 g = vm::x_sigmoid_grad(v, c(1.0f), vm::sig_v(v, v, _mm256_setzero_ps()));
    return _mm256_mul_ps(d, g);
  });
}

}  // namespace fastcnn::cpu::avx2
