// activation_avx512.cpp -- the activation family, AVX-512 (16 floats per zmm), on the vector
// maths of vmath_avx512.h: the same algorithms, constants and operation order as
// activation_avx512.cpp (whose header states the formulas, the special values and the measured
// error bounds), with k-mask selects for blendv and k-masked loads / stores for the last n % 16
// elements (masked-off lanes are neither read nor written). Shapes: n contiguous floats, any
// alignment; in place is fine. Main loop 32 floats (two zmm chains), then 16, then the tail.
// Error bounds: designed to equal AVX2's bit for bit (same IEEE operations lane by lane); the
// ulp sweep of tests/test_ops_activation.py runs it where the CPU has AVX-512 (not this
// development machine: compiled and reviewed only).
// Napkin: twice AVX2's lanes per instruction: ~2x its compute rate, so memory-bound for every op
// of the family on large arrays.
#include "cpu/avx512/intrin.h"
#include "cpu/avx512/vmath_avx512.h"
#include "cpu/kernels.h"

namespace fastcnn::cpu::avx512 {
namespace {

using vm::c;

template <typename F>
inline void map1(const float* x, float* y, int64_t n, F f) {
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    const __m512 a = f(_mm512_loadu_ps(x + i)), b = f(_mm512_loadu_ps(x + i + 16));
    _mm512_storeu_ps(y + i, a);
    _mm512_storeu_ps(y + i + 16, b);
  }
  for (; i + 16 <= n; i += 16) _mm512_storeu_ps(y + i, f(_mm512_loadu_ps(x + i)));
  if (i < n) {
    const __mmask16 m = vm::tail_mask(n - i);
    _mm512_mask_storeu_ps(y + i, m, f(_mm512_maskz_loadu_ps(m, x + i)));
  }
}

template <typename F>
inline void map2(const float* dy, const float* t, float* dx, int64_t n, F f) {
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    const __m512 a = f(_mm512_loadu_ps(dy + i), _mm512_loadu_ps(t + i));
    const __m512 b = f(_mm512_loadu_ps(dy + i + 16), _mm512_loadu_ps(t + i + 16));
    _mm512_storeu_ps(dx + i, a);
    _mm512_storeu_ps(dx + i + 16, b);
  }
  for (; i + 16 <= n; i += 16)
    _mm512_storeu_ps(dx + i, f(_mm512_loadu_ps(dy + i), _mm512_loadu_ps(t + i)));
  if (i < n) {
    const __mmask16 m = vm::tail_mask(n - i);
    _mm512_mask_storeu_ps(
        dx + i, m, f(_mm512_maskz_loadu_ps(m, dy + i), _mm512_maskz_loadu_ps(m, t + i)));
  }
}

// The gelu family's loops: each vector by `fast` when every lane is finite with |x| <
// kFastAbs (the same bits as `full` there: vmath_avx512.h's kSmall forms), else by `full`; two
// zmm per iteration (32 registers: no spills). The masked tail's dead lanes read as 0 (fast).
constexpr float kFastAbs = 8.0f;

inline bool all_small(__m512 v) {
  return _mm512_cmp_ps_mask(vm::vabs(v), c(kFastAbs), _CMP_LT_OQ) == 0xFFFF;
}

template <typename Fast, typename Full>
inline __m512 split1(__m512 v, Fast fast, Full full) {
  return all_small(v) ? fast(v) : full(v);
}

template <typename Fast, typename Full>
inline void map1_split(const float* x, float* y, int64_t n, Fast fast, Full full) {
  map1(x, y, n, [&](__m512 v) { return split1(v, fast, full); });
}

// dx = dy * grad(t), split on t
template <typename Fast, typename Full>
inline void map2_split(const float* dy, const float* t, float* dx, int64_t n, Fast fast,
                       Full full) {
  map2(dy, t, dx, n, [&](__m512 d, __m512 v) { return _mm512_mul_ps(d, split1(v, fast, full)); });
}

// kSmall: |x| < kFastAbs (t^2 / 2 < 32); the clamp to 16 is then a no-op and is left out
template <bool kSmall = false>
inline __m512 gelu1(__m512 x) {
  const __m512 t = vm::vabs(x);
  const __m512 small = vm::phi_cdf_small(x);
  const __m512 y_small = _mm512_mul_ps(x, small);
  const __m512 tc = kSmall ? t : _mm512_min_ps(c(16.0f), t);
  const vm::Exp e = vm::exp_half_square<kSmall>(tc);
  const __m512 r = vm::mills(tc);
  const __m512 q = _mm512_mul_ps(_mm512_mul_ps(e.m, e.s), r);  // Phi(-|x|)
  const __m512 y_pos = _mm512_mul_ps(x, _mm512_sub_ps(c(1.0f), q));
  const __m512 y_neg = _mm512_mul_ps(_mm512_mul_ps(_mm512_mul_ps(x, r), e.m), e.s);
  const __m512 y_big = _mm512_mask_blend_ps(vm::negative(x), y_pos, y_neg);
  return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(t, c(0.75f), _CMP_LT_OQ), y_big, y_small);
}

template <bool kSmall = false>
inline __m512 gelu_grad1(__m512 x) {
  const __m512 kc = c(0.3989422917366028f);  // 1 / sqrt(2 pi)
  const __m512 t = vm::vabs(x);
  const __m512 tc = kSmall ? t : _mm512_min_ps(c(16.0f), t);
  const vm::Exp e = vm::exp_half_square<kSmall>(tc);
  const __m512 k = _mm512_mul_ps(x, kc);
  // |x| < 0.75: Phi + x c exp(-x^2 / 2)
  const __m512 g_small = _mm512_fmadd_ps(k, _mm512_mul_ps(e.m, e.s), vm::phi_cdf_small(x));
  // |x| >= 0.75: x < 0: (R + x c) m s; x > 0: 1 + (x c - R) m s
  const __m512 r = vm::mills(tc);
  const __m512 g_neg = _mm512_mul_ps(_mm512_mul_ps(_mm512_add_ps(r, k), e.m), e.s);
  const __m512 g_pos =
      _mm512_fmadd_ps(_mm512_mul_ps(_mm512_sub_ps(k, r), e.m), e.s, c(1.0f));
  const __m512 g_big = _mm512_mask_blend_ps(vm::negative(x), g_pos, g_neg);
  return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(t, c(0.75f), _CMP_LT_OQ), g_big, g_small);
}

// kSmall: |x| < kFastAbs, so |v| < 8 (1.596 + 0.0714 * 64) < 50 and the clamp is a no-op
template <bool kSmall = false>
inline __m512 gelu_tanh1(__m512 x) {
  __m512 vh, vl;
  // beyond +-30: sigmoid(v) is 0 / 1
  vm::gelu_tanh_v(kSmall ? x : vm::clamp(x, -30.0f, 30.0f), vh, vl);
  return vm::x_sigmoid(x, vm::sig_v<kSmall>(x, vh, vl));
}

template <bool kSmall = false>
inline __m512 gelu_tanh_grad1(__m512 x) {
  const __m512 xc = kSmall ? x : vm::clamp(x, -30.0f, 30.0f);
  __m512 vh, vl;
  vm::gelu_tanh_v(xc, vh, vl);
  // v' = k0 + 3 k1 x^2
  const __m512 dv = _mm512_fmadd_ps(c(0.2140644488f), _mm512_mul_ps(xc, xc),
                                    c(1.5957691669464111f));
  // x v' from the clamped x (no overflow for |x| > 30, where the gradient is 0 or 1), plus
  // x - x: NaN at +-inf, as PyTorch's formula gives there
  const __m512 xs = _mm512_add_ps(xc, _mm512_sub_ps(x, x));
  return vm::x_sigmoid_grad(xs, dv, vm::sig_v<kSmall>(x, vh, vl));
}

}  // namespace

void sigmoid_fwd(const float* x, float* y, int64_t n) { map1(x, y, n, vm::sigmoid); }

void sigmoid_bwd(const float* dy, const float* y, float* dx, int64_t n) {
  map2(dy, y, dx, n, [](__m512 d, __m512 v) {
    return _mm512_mul_ps(_mm512_mul_ps(d, _mm512_sub_ps(c(1.0f), v)), v);
  });
}

void tanh_fwd(const float* x, float* y, int64_t n) { map1(x, y, n, vm::tanh); }

void tanh_bwd(const float* dy, const float* y, float* dx, int64_t n) {
  map2(dy, y, dx, n,
       [](__m512 d, __m512 v) { return _mm512_mul_ps(d, _mm512_fnmadd_ps(v, v, c(1.0f))); });
}

void leaky_relu_fwd(const float* x, float* y, int64_t n, float slope) {
  const __m512 s = c(slope), zero = _mm512_setzero_ps();
  map1(x, y, n, [s, zero](__m512 v) {
    return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(v, zero, _CMP_GT_OQ), _mm512_mul_ps(v, s), v);
  });
}

void leaky_relu_bwd(const float* dy, const float* x, float* dx, int64_t n, float slope) {
  const __m512 s = c(slope), zero = _mm512_setzero_ps();
  map2(dy, x, dx, n, [s, zero](__m512 d, __m512 v) {
    return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(v, zero, _CMP_GT_OQ), _mm512_mul_ps(d, s), d);
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
  map1(x, y, n, [](__m512 v) { return vm::x_sigmoid(v, vm::sig_v(v, v, _mm512_setzero_ps())); });
}

void silu_bwd(const float* dy, const float* x, float* dx, int64_t n) {
  map2(dy, x, dx, n, [](__m512 d, __m512 v) {
    const __m512 g = vm::x_sigmoid_grad(v, c(1.0f), vm::sig_v(v, v, _mm512_setzero_ps()));
    return _mm512_mul_ps(d, g);
  });
}

}  // namespace fastcnn::cpu::avx512
