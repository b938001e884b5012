// global_pool2d_avx512.cpp -- global average / max pooling over `planes` planes of HW floats,
// AVX-512.
//   global_avgpool2d_fwd: y[pl] = plane sum (fixed 32-lane order) / float(HW)
//   global_avgpool2d_bwd: dx[pl, :] = dy[pl] / float(HW)
//   global_maxpool2d_fwd: y[pl], idx[pl] (may be null): max_pool2d's rule over the plane
//   global_maxpool2d_bwd: dx[pl, :] = 0, dx[pl, idx[pl]] = 0 + dy[pl]; false if an idx is outside
// Semantics: exactly generic/global_pool2d.cpp; the body is global_pool2d_impl.h over these
// 16-lane traits (the sum: 2 accumulators = the 32 lanes, folded 16 -> 8 with one
// vextractf32x8 and then as AVX2; the max: 2 chains of compare-into-mask + 2 masked moves).
// Napkin (8x8 planes): a 64-float plane is 4 loads; ~20 uops for the sum, ~35 for the max with
// its merge: memory bound out of L1.
#include "cpu/avx512/intrin.h"

#include <climits>
#include <cstdint>
#include <cstring>

#include "cpu/kernels.h"

namespace fastcnn::cpu::avx512 {
namespace {

inline __mmask16 lanes_below(int64_t r) {  // lanes [0, r), any r
  return r >= 16 ? static_cast<__mmask16>(0xFFFFu)
                 : static_cast<__mmask16>(r <= 0 ? 0u : (1u << r) - 1u);
}

inline float hsum8(__m256 t8) {  // ((l + l+4) + (l+2)) + (l+1): the fold's last three steps
  const __m128 t4 = _mm_add_ps(_mm256_castps256_ps128(t8), _mm256_extractf128_ps(t8, 1));
  const __m128 t2 = _mm_add_ps(t4, _mm_movehl_ps(t4, t4));
  return _mm_cvtss_f32(_mm_add_ss(t2, _mm_shuffle_ps(t2, t2, _MM_SHUFFLE(1, 1, 1, 1))));
}

struct V {
  using F = __m512;
  using I = __m512i;
  using M = __mmask16;
  static constexpr int64_t kW = 16;
  static F zero() { return _mm512_setzero_ps(); }
  static F set1(float v) { return _mm512_set1_ps(v); }
  static F add(F a, F b) { return _mm512_add_ps(a, b); }
  static F load(const float* p) { return _mm512_loadu_ps(p); }
  static F load_n(const float* p, int64_t n, F fill) {
    return _mm512_mask_loadu_ps(fill, lanes_below(n), p);
  }
  static void store(float* p, F v) { _mm512_storeu_ps(p, v); }
  static void store_n(float* p, F v, int64_t n) { _mm512_mask_storeu_ps(p, lanes_below(n), v); }
  // s[l] for l < 32 in acc[0..1]: T16 = acc0 + acc1, T8 = T16[l] + T16[l + 8], then hsum8
  static float fold32(const F* acc) {
    const __m512 t16 = _mm512_add_ps(acc[0], acc[1]);
    return hsum8(_mm256_add_ps(_mm512_castps512_ps256(t16), _mm512_extractf32x8_ps(t16, 1)));
  }
  static M take(F v, F best) {
    return static_cast<M>(_mm512_cmp_ps_mask(v, best, _CMP_GT_OQ) |
                          _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q));
  }
  static F blend(F a, F b, M m) { return _mm512_mask_blend_ps(m, a, b); }
  static I blendi(I a, I b, M m) { return _mm512_mask_blend_epi32(m, a, b); }
  static I iota() {
    return _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  }
  static I set1i(int v) { return _mm512_set1_epi32(v); }
  static I addi(I a, I b) { return _mm512_add_epi32(a, b); }
  static bool any_nan(F v) { return _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q) != 0; }
  static float hmax(F v) {
    __m256 m = _mm256_max_ps(_mm512_castps512_ps256(v), _mm512_extractf32x8_ps(v, 1));
    __m128 r = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
    r = _mm_max_ps(r, _mm_movehl_ps(r, r));
    return _mm_cvtss_f32(_mm_max_ss(r, _mm_shuffle_ps(r, r, _MM_SHUFFLE(1, 1, 1, 1))));
  }
  static int hmin_where_eq(F best, I idx, float m) {
    const __mmask16 eq = _mm512_cmp_ps_mask(best, _mm512_set1_ps(m), _CMP_EQ_OQ);
    const __m512i c = _mm512_mask_blend_epi32(eq, _mm512_set1_epi32(INT_MAX), idx);
    __m256i h = _mm256_min_epi32(_mm512_castsi512_si256(c), _mm512_extracti64x4_epi64(c, 1));
    __m128i r = _mm_min_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1));
    r = _mm_min_epi32(r, _mm_shuffle_epi32(r, _MM_SHUFFLE(1, 0, 3, 2)));
    r = _mm_min_epi32(r, _mm_shuffle_epi32(r, _MM_SHUFFLE(2, 3, 0, 1)));
    return _mm_cvtsi128_si32(r);
  }
  static void spill(F v, float* p) { _mm512_storeu_ps(p, v); }
  static void spilli(I v, int* p) { _mm512_storeu_si512(p, v); }
};

#include "cpu/global_pool2d_impl.h"

}  // namespace

void global_avgpool2d_fwd(const float* x, float* y, int64_t planes, int64_t HW) {
  gavg_fwd_impl(x, y, planes, HW);
}
void global_avgpool2d_bwd(const float* dy, float* dx, int64_t planes, int64_t HW) {
  gavg_bwd_impl(dy, dx, planes, HW);
}
void global_maxpool2d_fwd(const float* x, float* y, int64_t* idx, int64_t planes, int64_t HW) {
  gmax_fwd_impl(x, y, idx, planes, HW);
}
bool global_maxpool2d_bwd(const float* dy, const int64_t* idx, float* dx, int64_t planes,
                          int64_t HW) {
  return gmax_bwd_impl(dy, idx, dx, planes, HW);
}

}  // namespace fastcnn::cpu::avx512
