// vmath_avx512.h -- float32 vector maths for the AVX-512 activation kernels (16 lanes per zmm):
// exp with range reduction, tanh, the normal CDF, and the "x * sigmoid(v)" form shared by silu
// and gelu(tanh). Included only by csrc/cpu/avx512/*.cpp (compiled with -mavx512f/dq/bw/vl); the
// AVX2 twin is csrc/cpu/avx2/vmath_avx2.h, whose comment states the algorithms: the same
// constants and, lane for lane, the same IEEE operations (k-mask selects for blendv), so the two
// ISAs are meant to give the same bits.
//
#pragma once
#include "cpu/avx512/intrin.h"

namespace fastcnn::cpu::avx512::vm {

inline __m512 c(float v) { return _mm512_set1_ps(v); }
inline __m512 sign_bit() { return _mm512_set1_ps(-0.0f); }
inline __m512 vabs(__m512 x) { return _mm512_andnot_ps(sign_bit(), x); }
inline __m512 neg_abs(__m512 x) { return _mm512_or_ps(sign_bit(), x); }
// NaN-preserving clamp: max/min return their second operand when one is NaN
inline __m512 clamp(__m512 x, float lo, float hi) {
  return _mm512_min_ps(c(hi), _mm512_max_ps(c(lo), x));
}
// lanes [0, r) set (0 <= r <= 16)
inline __mmask16 tail_mask(int64_t r) { return static_cast<__mmask16>((1u << r) - 1u); }
// the sign bits of x as a lane mask (blendv's selector)
inline __mmask16 negative(__m512 x) { return _mm512_movepi32_mask(_mm512_castps_si512(x)); }

struct Exp {
  __m512 m, s;  // e^x = m * s; m normal (or 0 below -112, NaN for NaN), s = 2^n2 normal
};

inline Exp exp_split(__m512 x) {
  const __m512 xc = clamp(x, -112.0f, 89.0f);
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(xc, c(1.44269504088896341f)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, c(0.693359375f), xc);  // n * 0.693359375 is exact
  r = _mm512_fnmadd_ps(n, c(-2.12194440e-4f), r);
  __m512 p = c(1.9875691500e-4f);
  p = _mm512_fmadd_ps(p, r, c(1.3981999507e-3f));
  p = _mm512_fmadd_ps(p, r, c(8.3334519073e-3f));
  p = _mm512_fmadd_ps(p, r, c(4.1665795894e-2f));
  p = _mm512_fmadd_ps(p, r, c(1.6666665459e-1f));
  p = _mm512_fmadd_ps(p, r, c(5.0000001201e-1f));
  p = _mm512_add_ps(_mm512_fmadd_ps(p, _mm512_mul_ps(r, r), r), c(1.0f));
  const __m512i ni = _mm512_cvtps_epi32(n);
  const __m512i n1 = _mm512_srai_epi32(ni, 1), n2 = _mm512_sub_epi32(ni, n1);
  const __m512i bias = _mm512_set1_epi32(127);
  const __m512 s1 = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_add_epi32(n1, bias), 23));
  const __m512 s2 = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_add_epi32(n2, bias), 23));
  // keep: not (x < -112), true for NaN
  const __mmask16 keep = _mm512_cmp_ps_mask(x, c(-112.0f), _CMP_NLT_UQ);
  return Exp{_mm512_maskz_mov_ps(keep, _mm512_mul_ps(p, s1)), s2};
}

// exp_split for x in [-80, 0] (finite): e^x = m with s = 1, m = p 2^n (n in [-116, 0]: normal);
// the same bits as exp_split's m s there (vmath_avx2.h's kSmall forms)
inline Exp exp_split_small(__m512 x) {
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, c(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, c(0.693359375f), x);  // n * 0.693359375 is exact
  r = _mm512_fnmadd_ps(n, c(-2.12194440e-4f), r);
  __m512 p = c(1.9875691500e-4f);
  p = _mm512_fmadd_ps(p, r, c(1.3981999507e-3f));
  p = _mm512_fmadd_ps(p, r, c(8.3334519073e-3f));
  p = _mm512_fmadd_ps(p, r, c(4.1665795894e-2f));
  p = _mm512_fmadd_ps(p, r, c(1.6666665459e-1f));
  p = _mm512_fmadd_ps(p, r, c(5.0000001201e-1f));
  p = _mm512_add_ps(_mm512_fmadd_ps(p, _mm512_mul_ps(r, r), r), c(1.0f));
  const __m512i e = _mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127));
  return Exp{_mm512_mul_ps(p, _mm512_castsi512_ps(_mm512_slli_epi32(e, 23))), c(1.0f)};
}

template <bool kSmall>
inline Exp exp_split_t(__m512 x) {
  if constexpr (kSmall) {
    return exp_split_small(x);
  } else {
    return exp_split(x);
  }
}

inline __m512 exp(__m512 x) {
  const Exp e = exp_split(x);
  return _mm512_mul_ps(e.m, e.s);
}

inline __m512 sigmoid(__m512 x) {
  const __m512 e = exp(neg_abs(x));
  const __m512 d = _mm512_add_ps(c(1.0f), e);
  return _mm512_div_ps(_mm512_mask_blend_ps(negative(x), c(1.0f), e), d);  // x < 0 (sign bit): e / (1 + e)
}

inline __m512 tanh(__m512 x) {
  const __m512 t = vabs(x);
  const __m512 z = _mm512_mul_ps(x, x);
  __m512 p = c(-5.70498872745e-3f);
  p = _mm512_fmadd_ps(p, z, c(2.06390887954e-2f));
  p = _mm512_fmadd_ps(p, z, c(-5.37397155531e-2f));
  p = _mm512_fmadd_ps(p, z, c(1.33314422036e-1f));
  p = _mm512_fmadd_ps(p, z, c(-3.33332819422e-1f));
  const __m512 small = _mm512_fmadd_ps(_mm512_mul_ps(p, z), t, t);  // tanh(|x|) >= +0
  const __m512 e = exp(_mm512_mul_ps(c(-2.0f), t));
  const __m512 big = _mm512_div_ps(_mm512_sub_ps(c(1.0f), e), _mm512_add_ps(c(1.0f), e));
  const __m512 y = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(t, c(0.625f), _CMP_LT_OQ), big, small);
  return _mm512_or_ps(y, _mm512_and_ps(x, sign_bit()));  // odd: x's sign (tanh(-0) = -0)
}

// ---- the normal CDF pieces (gelu exact) --------------------------------------------------------
// 0.5 + x A(x^2) = Phi(x) for |x| < 0.75
inline __m512 phi_cdf_small(__m512 x) {
  const __m512 z = _mm512_mul_ps(x, x);
  __m512 a = c(1.03547136e-4f);
  a = _mm512_fmadd_ps(a, z, c(-1.18190236e-3f));
  a = _mm512_fmadd_ps(a, z, c(9.97254252e-3f));
  a = _mm512_fmadd_ps(a, z, c(-6.64903149e-2f));
  a = _mm512_fmadd_ps(a, z, c(3.98942292e-1f));
  return _mm512_fmadd_ps(x, a, c(0.5f));
}

// R(t) = Phi(-t) exp(t^2 / 2) for t in [0.75, 16]
inline __m512 mills(__m512 t) {
  __m512 p = c(5.85260475e-3f);
  p = _mm512_fmadd_ps(p, t, c(5.04313111e-2f));
  p = _mm512_fmadd_ps(p, t, c(2.10169032e-1f));
  p = _mm512_fmadd_ps(p, t, c(4.71310854e-1f));
  p = _mm512_fmadd_ps(p, t, c(5.00009060e-1f));
  __m512 q = c(1.46702668e-2f);
  q = _mm512_fmadd_ps(q, t, c(1.26414880e-1f));
  q = _mm512_fmadd_ps(q, t, c(5.41422665e-1f));
  q = _mm512_fmadd_ps(q, t, c(1.30880964e+0f));
  q = _mm512_fmadd_ps(q, t, c(1.74062288e+0f));
  q = _mm512_fmadd_ps(q, t, c(1.0f));
  return _mm512_div_ps(p, q);
}

// exp(-t^2 / 2) = m * s for t = min(|x|, 16), with t^2 taken exactly (h + l); kSmall: t < 8
template <bool kSmall = false>
inline Exp exp_half_square(__m512 t) {
  const __m512 h = _mm512_mul_ps(t, t);
  const __m512 l = _mm512_fmsub_ps(t, t, h);
  Exp e = exp_split_t<kSmall>(_mm512_mul_ps(c(-0.5f), h));
  e.m = _mm512_fnmadd_ps(e.m, _mm512_mul_ps(c(0.5f), l), e.m);  // * exp(-l / 2) = 1 - l / 2
  return e;
}

// ---- x * sigmoid(v), v = vh + vl of x's sign (silu: v = x; gelu tanh: v = 2u) --------------------
struct SigV {
  Exp e;     // exp(-|v|) = m * s
  __m512 d;  // 1 + exp(-|v|)
};

// kSmall: |vh| <= 80
template <bool kSmall = false>
inline SigV sig_v(__m512 x, __m512 vh, __m512 vl) {
  SigV r;
  r.e = exp_split_t<kSmall>(neg_abs(vh));
  // exp(-|vh + vl|) = exp(-|vh|) exp(-sign(x) vl) ~ m (1 - sign(x) vl)
  const __m512 vls = _mm512_xor_ps(vl, _mm512_and_ps(x, sign_bit()));
  r.e.m = _mm512_fnmadd_ps(r.e.m, vls, r.e.m);
  r.d = _mm512_add_ps(c(1.0f), _mm512_mul_ps(r.e.m, r.e.s));
  return r;
}

// y = x sigmoid(v): x >= 0: x / d, x < 0: x e / d, with x m rounded before the scaling by s
inline __m512 x_sigmoid(__m512 x, const SigV& g) {
  const __m512 neg = _mm512_mul_ps(_mm512_mul_ps(x, g.e.m), g.e.s);
  return _mm512_div_ps(_mm512_mask_blend_ps(negative(x), x, neg), g.d);
}

// d/dx [x sigmoid(v)] = s + x v' s (1 - s), s = sigmoid(v): x >= 0: (d + x v' e) / d^2,
// x < 0: e (d + x v') / d^2
inline __m512 x_sigmoid_grad(__m512 x, __m512 dv, const SigV& g) {
  const __m512 xdv = _mm512_mul_ps(x, dv);
  const __m512 e = _mm512_mul_ps(g.e.m, g.e.s);
  const __m512 pos = _mm512_fmadd_ps(xdv, e, g.d);
  const __m512 neg = _mm512_mul_ps(_mm512_mul_ps(g.e.m, _mm512_add_ps(g.d, xdv)), g.e.s);
  return _mm512_div_ps(_mm512_mask_blend_ps(negative(x), pos, neg), _mm512_mul_ps(g.d, g.d));
}

// v = x (k0 + k1 x^2) = vh + vl in double-float arithmetic (k0 = 2 sqrt(2 / pi), k1 = 0.044715 k0)
inline void gelu_tanh_v(__m512 x, __m512& vh, __m512& vl) {
  const __m512 k0h = c(1.5957691669464111f), k0l = c(-4.534068054340423e-08f);
  const __m512 k1h = c(0.07135481387376785f), k1l = c(2.3988324659995897e-09f);
  const __m512 sh = _mm512_mul_ps(x, x), sl = _mm512_fmsub_ps(x, x, sh);
  const __m512 ph = _mm512_mul_ps(k1h, sh);
  const __m512 pl = _mm512_add_ps(_mm512_fmsub_ps(k1h, sh, ph),
                                  _mm512_fmadd_ps(k1h, sl, _mm512_mul_ps(k1l, sh)));
  const __m512 wh = _mm512_add_ps(k0h, ph);  // two-sum k0h + ph = wh + err
  const __m512 bb = _mm512_sub_ps(wh, k0h);
  const __m512 err = _mm512_add_ps(_mm512_sub_ps(k0h, _mm512_sub_ps(wh, bb)), _mm512_sub_ps(ph, bb));
  const __m512 wl = _mm512_add_ps(_mm512_add_ps(err, pl), k0l);
  vh = _mm512_mul_ps(x, wh);
  vl = _mm512_fmadd_ps(x, wl, _mm512_fmsub_ps(x, wh, vh));
}

}  // namespace fastcnn::cpu::avx512::vm
