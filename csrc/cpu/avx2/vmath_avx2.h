// vmath_avx2.h -- float32 vector maths for the AVX2 activation kernels (8 lanes per ymm, FMA):
// exp with range reduction, tanh, the normal CDF, and the "x * sigmoid(v)" form shared by silu
// and gelu(tanh). Included only by csrc/cpu/avx2/*.cpp (compiled with -mavx2 -mfma); the AVX-512
// twin is csrc/cpu/avx512/vmath_avx512.h (same algorithms, same constants, lane for lane the
// same operations, so the two ISAs give the same bits).
//
// Algorithms (no -ffast-math: every rounding is the one written):
//  * exp_split(x) = (m, s) with e^x = m * s: n = round(x log2 e), r = x - n ln2 (Cody-Waite, two
//    constants, |r| <= 0.347), e^r by Cephes' degree-5 polynomial (1 + r + r^2 P(r)), then
//    2^n = 2^n1 * 2^n2 with n1 = n >> 1, n2 = n - n1, so both are normal for n in [-150, 128] and
//    m = e^r 2^n1 is normal: a product x * m * s (silu, gelu) rounds once into the subnormals
//    instead of multiplying an already-rounded subnormal e^x. x is clamped to [-112, 89] (NaN
//    kept; n in [-162, 128], n1 and n2 in [-81, 64]); x < -112 gives m = 0 (|x| e^x < 2^-150 for
//    any float x there: silu / gelu products then give the signed zero, and -inf * 0 = NaN as in
//    PyTorch), x > 88.73 overflows m * s to +inf.
//  * tanh(x) = sign(x) tanh(t), t = |x|: t < 0.625: t + t^3 P(t^2) (Cephes' odd polynomial);
//    else (1 - e) / (1 + e) with e = exp(-2t) in (0, 0.29]: no overflow, tanh(+-inf) = +-1, no
//    cancellation; x's sign bit is OR-ed in last (tanh(-0) = -0, NaN stays NaN).
//  * Phi(x), the normal CDF (gelu exact): |x| < 0.75: 0.5 + x A(x^2) (A: degree 4, a float32
//    least-squares fit of erf(x / sqrt 2) / (2x)); |x| >= 0.75: Phi(-t) = exp(-t^2 / 2) R(t),
//    t = |x| (clamped to 16), R = P4(t) / Q5(t) a rational fit of the Mills ratio / sqrt(2 pi)
//    (relative error 1.8e-8 on [0.75, 15]), and exp(-t^2 / 2) from the exact square
//    t^2 = h + l (FMA): exp(-h / 2) (1 - l / 2), so the argument's rounding (which would cost
//    ~t^2 / 2 ulps) is not lost. Phi(t) = 1 - Phi(-t) for x > 0: no 1 + erf cancellation.
//  * x sigmoid(v) with v of x's sign: e = exp(-|v|), x >= 0: x / (1 + e), x < 0: x m s / (1 + e).
//    gelu(tanh) forms v = x (k0 + k1 x^2) in double-float arithmetic (FMA products, two-sum,
//    k0 and k1 split in two floats), since e^v has relative error |v| x (error of v).
//  * The small-argument forms (template argument kSmall = true: exp_split_small, and
//    exp_half_square / sig_v on it) are for x in [-80, 0] only (the callers' fast path, every
//    lane finite with |x| < 8): there 2^n is normal, so m = p 2^n with s = 1 is the same value
//    as the split m s, and every product x m s rounds the same (scaling by a power of two is
//    exact away from the subnormals): the same bits as the general form, with no clamp, no split
//    of n and no -112 mask (8 of exp_split's ~24 operations), and no multiply by s (a * 1.0f is
//    folded). The callers check the lanes and take the general form otherwise.
// Special values: see activation_avx2.cpp (PyTorch's).
#pragma once
#include <immintrin.h>

namespace fastcnn::cpu::avx2::vm {

inline __m256 c(float v) { return _mm256_set1_ps(v); }
inline __m256 sign_bit() { return _mm256_set1_ps(-0.0f); }
inline __m256 vabs(__m256 x) { return _mm256_andnot_ps(sign_bit(), x); }
inline __m256 neg_abs(__m256 x) { return _mm256_or_ps(sign_bit(), x); }
// NaN-preserving clamp: max/min return their second operand when one is NaN
inline __m256 clamp(__m256 x, float lo, float hi) {
  return _mm256_min_ps(c(hi), _mm256_max_ps(c(lo), x));
}
// lanes [0, r) all-ones (0 <= r <= 8)
inline __m256i tail_mask(int64_t r) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(r)),
                            _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

struct Exp {
  __m256 m, s;  // e^x = m * s; m normal (or 0 below -112, NaN for NaN), s = 2^n2 normal
};

inline Exp exp_split(__m256 x) {
  const __m256 xc = clamp(x, -112.0f, 89.0f);
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(xc, c(1.44269504088896341f)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, c(0.693359375f), xc);  // n * 0.693359375 is exact
  r = _mm256_fnmadd_ps(n, c(-2.12194440e-4f), r);
  __m256 p = c(1.9875691500e-4f);
  p = _mm256_fmadd_ps(p, r, c(1.3981999507e-3f));
  p = _mm256_fmadd_ps(p, r, c(8.3334519073e-3f));
  p = _mm256_fmadd_ps(p, r, c(4.1665795894e-2f));
  p = _mm256_fmadd_ps(p, r, c(1.6666665459e-1f));
  p = _mm256_fmadd_ps(p, r, c(5.0000001201e-1f));
  p = _mm256_add_ps(_mm256_fmadd_ps(p, _mm256_mul_ps(r, r), r), c(1.0f));
  const __m256i ni = _mm256_cvtps_epi32(n);
  const __m256i n1 = _mm256_srai_epi32(ni, 1), n2 = _mm256_sub_epi32(ni, n1);
  const __m256i bias = _mm256_set1_epi32(127);
  const __m256 s1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n1, bias), 23));
  const __m256 s2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n2, bias), 23));
  // keep: not (x < -112), true for NaN
  const __m256 keep = _mm256_cmp_ps(x, c(-112.0f), _CMP_NLT_UQ);
  return Exp{_mm256_and_ps(_mm256_mul_ps(p, s1), keep), s2};
}

// exp_split for x in [-80, 0] (finite): e^x = m with s = 1, m = p 2^n (n in [-116, 0]: normal)
inline Exp exp_split_small(__m256 x) {
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, c(1.44269504088896341f)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, c(0.693359375f), x);  // n * 0.693359375 is exact
  r = _mm256_fnmadd_ps(n, c(-2.12194440e-4f), r);
  __m256 p = c(1.9875691500e-4f);
  p = _mm256_fmadd_ps(p, r, c(1.3981999507e-3f));
  p = _mm256_fmadd_ps(p, r, c(8.3334519073e-3f));
  p = _mm256_fmadd_ps(p, r, c(4.1665795894e-2f));
  p = _mm256_fmadd_ps(p, r, c(1.6666665459e-1f));
  p = _mm256_fmadd_ps(p, r, c(5.0000001201e-1f));
  p = _mm256_add_ps(_mm256_fmadd_ps(p, _mm256_mul_ps(r, r), r), c(1.0f));
  const __m256i e = _mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127));
  return Exp{_mm256_mul_ps(p, _mm256_castsi256_ps(_mm256_slli_epi32(e, 23))), c(1.0f)};
}

template <bool kSmall>
inline Exp exp_split_t(__m256 x) {
  if constexpr (kSmall) {
    return exp_split_small(x);
  } else {
    return exp_split(x);
  }
}

inline __m256 exp(__m256 x) {
  const Exp e = exp_split(x);
  return _mm256_mul_ps(e.m, e.s);
}

inline __m256 sigmoid(__m256 x) {
  const __m256 e = exp(neg_abs(x));
  const __m256 d = _mm256_add_ps(c(1.0f), e);
  return _mm256_div_ps(_mm256_blendv_ps(c(1.0f), e, x), d);  // x < 0 (sign bit): e / (1 + e)
}

inline __m256 tanh(__m256 x) {
  const __m256 t = vabs(x);
  const __m256 z = _mm256_mul_ps(x, x);
  __m256 p = c(-5.70498872745e-3f);
  p = _mm256_fmadd_ps(p, z, c(2.06390887954e-2f));
  p = _mm256_fmadd_ps(p, z, c(-5.37397155531e-2f));
  p = _mm256_fmadd_ps(p, z, c(1.33314422036e-1f));
  p = _mm256_fmadd_ps(p, z, c(-3.33332819422e-1f));
  const __m256 small = _mm256_fmadd_ps(_mm256_mul_ps(p, z), t, t);  // tanh(|x|) >= +0
  const __m256 e = exp(_mm256_mul_ps(c(-2.0f), t));
  const __m256 big = _mm256_div_ps(_mm256_sub_ps(c(1.0f), e), _mm256_add_ps(c(1.0f), e));
  const __m256 y = _mm256_blendv_ps(big, small, _mm256_cmp_ps(t, c(0.625f), _CMP_LT_OQ));
  return _mm256_or_ps(y, _mm256_and_ps(x, sign_bit()));  // odd: x's sign (tanh(-0) = -0)
}

// ---- the normal CDF pieces (gelu exact) --------------------------------------------------------
// 0.5 + x A(x^2) = Phi(x) for |x| < 0.75
inline __m256 phi_cdf_small(__m256 x) {
  const __m256 z = _mm256_mul_ps(x, x);
  __m256 a = c(1.03547136e-4f);
  a = _mm256_fmadd_ps(a, z, c(-1.18190236e-3f));
  a = _mm256_fmadd_ps(a, z, c(9.97254252e-3f));
  a = _mm256_fmadd_ps(a, z, c(-6.64903149e-2f));
  a = _mm256_fmadd_ps(a, z, c(3.98942292e-1f));
  return _mm256_fmadd_ps(x, a, c(0.5f));
}

// R(t) = Phi(-t) exp(t^2 / 2) for t in [0.75, 16]
inline __m256 mills(__m256 t) {
  __m256 p = c(5.85260475e-3f);
  p = _mm256_fmadd_ps(p, t, c(5.04313111e-2f));
  p = _mm256_fmadd_ps(p, t, c(2.10169032e-1f));
  p = _mm256_fmadd_ps(p, t, c(4.71310854e-1f));
  p = _mm256_fmadd_ps(p, t, c(5.00009060e-1f));
  __m256 q = c(1.46702668e-2f);
  q = _mm256_fmadd_ps(q, t, c(1.26414880e-1f));
  q = _mm256_fmadd_ps(q, t, c(5.41422665e-1f));
  q = _mm256_fmadd_ps(q, t, c(1.30880964e+0f));
  q = _mm256_fmadd_ps(q, t, c(1.74062288e+0f));
  q = _mm256_fmadd_ps(q, t, c(1.0f));
  return _mm256_div_ps(p, q);
}

// exp(-t^2 / 2) = m * s for t = min(|x|, 16), with t^2 taken exactly (h + l); kSmall: t < 8
template <bool kSmall = false>
inline Exp exp_half_square(__m256 t) {
  const __m256 h = _mm256_mul_ps(t, t);
  const __m256 l = _mm256_fmsub_ps(t, t, h);
  Exp e = exp_split_t<kSmall>(_mm256_mul_ps(c(-0.5f), h));
  e.m = _mm256_fnmadd_ps(e.m, _mm256_mul_ps(c(0.5f), l), e.m);  // * exp(-l / 2) = 1 - l / 2
  return e;
}

// ---- x * sigmoid(v), v = vh + vl of x's sign (silu: v = x; gelu tanh: v = 2u) --------------------
struct SigV {
  Exp e;     // exp(-|v|) = m * s
  __m256 d;  // 1 + exp(-|v|)
};

// kSmall: |vh| <= 80
template <bool kSmall = false>
inline SigV sig_v(__m256 x, __m256 vh, __m256 vl) {
  SigV r;
  r.e = exp_split_t<kSmall>(neg_abs(vh));
  // exp(-|vh + vl|) = exp(-|vh|) exp(-sign(x) vl) ~ m (1 - sign(x) vl)
  const __m256 vls = _mm256_xor_ps(vl, _mm256_and_ps(x, sign_bit()));
  r.e.m = _mm256_fnmadd_ps(r.e.m, vls, r.e.m);
  r.d = _mm256_add_ps(c(1.0f), _mm256_mul_ps(r.e.m, r.e.s));
  return r;
}

// y = x sigmoid(v): x >= 0: x / d, x < 0: x e / d, with x m rounded before the scaling by s
inline __m256 x_sigmoid(__m256 x, const SigV& g) {
  const __m256 neg = _mm256_mul_ps(_mm256_mul_ps(x, g.e.m), g.e.s);
  return _mm256_div_ps(_mm256_blendv_ps(x, neg, x), g.d);
}

// d/dx [x sigmoid(v)] = s + x v' s (1 - s), s = sigmoid(v): x >= 0: (d + x v' e) / d^2,
// x < 0: e (d + x v') / d^2
inline __m256 x_sigmoid_grad(__m256 x, __m256 dv, const SigV& g) {
  const __m256 xdv = _mm256_mul_ps(x, dv);
  const __m256 e = _mm256_mul_ps(g.e.m, g.e.s);
  const __m256 pos = _mm256_fmadd_ps(xdv, e, g.d);
  const __m256 neg = _mm256_mul_ps(_mm256_mul_ps(g.e.m, _mm256_add_ps(g.d, xdv)), g.e.s);
  return _mm256_div_ps(_mm256_blendv_ps(pos, neg, x), _mm256_mul_ps(g.d, g.d));
}

// v = x (k0 + k1 x^2) = vh + vl in double-float arithmetic (k0 = 2 sqrt(2 / pi), k1 = 0.044715 k0)
inline void gelu_tanh_v(__m256 x, __m256& vh, __m256& vl) {
  const __m256 k0h = c(1.5957691669464111f), k0l = c(-4.534068054340423e-08f);
  const __m256 k1h = c(0.07135481387376785f), k1l = c(2.3988324659995897e-09f);
  const __m256 sh = _mm256_mul_ps(x, x), sl = _mm256_fmsub_ps(x, x, sh);
  const __m256 ph = _mm256_mul_ps(k1h, sh);
  const __m256 pl = _mm256_add_ps(_mm256_fmsub_ps(k1h, sh, ph),
                                  _mm256_fmadd_ps(k1h, sl, _mm256_mul_ps(k1l, sh)));
  const __m256 wh = _mm256_add_ps(k0h, ph);  // two-sum k0h + ph = wh + err
  const __m256 bb = _mm256_sub_ps(wh, k0h);
  const __m256 err = _mm256_add_ps(_mm256_sub_ps(k0h, _mm256_sub_ps(wh, bb)), _mm256_sub_ps(ph, bb));
  const __m256 wl = _mm256_add_ps(_mm256_add_ps(err, pl), k0l);
  vh = _mm256_mul_ps(x, wh);
  vl = _mm256_fmadd_ps(x, wl, _mm256_fmsub_ps(x, wh, vh));
}

}  // namespace fastcnn::cpu::avx2::vm
