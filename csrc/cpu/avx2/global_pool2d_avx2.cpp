// global_pool2d_avx2.cpp -- global average / max pooling over `planes` planes of HW floats, AVX2.
//   global_avgpool2d_fwd: y[pl] = plane sum (fixed 32-lane order) / float(HW)
//   global_avgpool2d_bwd: dx[pl, :] = dy[pl] / float(HW)
//   global_maxpool2d_fwd: y[pl], idx[pl] (may be null): max_pool2d's rule over the plane
//   global_maxpool2d_bwd: dx[pl, :] = 0, dx[pl, idx[pl]] = 0 + dy[pl]; false if an idx is outside
// Semantics: exactly generic/global_pool2d.cpp; the body is global_pool2d_impl.h over these
// 8-lane traits (the sum: 4 accumulators = the 32 lanes; the max: 2 chains of compare + 2 blends).
// Napkin (ResNet's 8x8 x 64-channel planes): a 64-float plane is 8 loads; the sum 8 adds + a
// 5-step fold + a divide ~ 25 uops (~8 cycles); the max 8 x 5 uops + a ~25-uop merge (~20
// cycles): 256 B a plane, from DRAM ~12 ns at 20 GB/s, so memory bound except in L1.
#include <immintrin.h>

#include <climits>
#include <cstdint>
#include <cstring>

#include "cpu/kernels.h"

namespace fastcnn::cpu::avx2 {
namespace {

inline __m256i lanes_below(int64_t r) {  // int32 lanes [0, r) set, r <= 8
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(r < 0 ? 0 : r)),
                            _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

inline float hsum8(__m256 t8) {  // ((l + l+4) + (l+2)) + (l+1): the fold's last three steps
  const __m128 t4 = _mm_add_ps(_mm256_castps256_ps128(t8), _mm256_extractf128_ps(t8, 1));
  const __m128 t2 = _mm_add_ps(t4, _mm_movehl_ps(t4, t4));
  return _mm_cvtss_f32(_mm_add_ss(t2, _mm_shuffle_ps(t2, t2, _MM_SHUFFLE(1, 1, 1, 1))));
}

struct V {
  using F = __m256;
  using I = __m256i;
  using M = __m256;
  static constexpr int64_t kW = 8;
  static F zero() { return _mm256_setzero_ps(); }
  static F set1(float v) { return _mm256_set1_ps(v); }
  static F add(F a, F b) { return _mm256_add_ps(a, b); }
  static F load(const float* p) { return _mm256_loadu_ps(p); }
  static F load_n(const float* p, int64_t n, F fill) {
    const __m256i m = lanes_below(n);
    return _mm256_blendv_ps(fill, _mm256_maskload_ps(p, m), _mm256_castsi256_ps(m));
  }
  static void store(float* p, F v) { _mm256_storeu_ps(p, v); }
  static void store_n(float* p, F v, int64_t n) { _mm256_maskstore_ps(p, lanes_below(n), v); }
  // s[l] for l < 32 in acc[0..3]: (acc0 + acc2) + (acc1 + acc3) = T8, then hsum8
  static float fold32(const F* acc) {
    return hsum8(_mm256_add_ps(_mm256_add_ps(acc[0], acc[2]), _mm256_add_ps(acc[1], acc[3])));
  }
  static M take(F v, F best) {
    return _mm256_or_ps(_mm256_cmp_ps(v, best, _CMP_GT_OQ), _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
  }
  static F blend(F a, F b, M m) { return _mm256_blendv_ps(a, b, m); }
  static I blendi(I a, I b, M m) {
    return _mm256_castps_si256(
        _mm256_blendv_ps(_mm256_castsi256_ps(a), _mm256_castsi256_ps(b), m));
  }
  static I iota() { return _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7); }
  static I set1i(int v) { return _mm256_set1_epi32(v); }
  static I addi(I a, I b) { return _mm256_add_epi32(a, b); }
  static bool any_nan(F v) { return _mm256_movemask_ps(_mm256_cmp_ps(v, v, _CMP_UNORD_Q)) != 0; }
  static float hmax(F v) {
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    return _mm_cvtss_f32(_mm_max_ss(m, _mm_shuffle_ps(m, m, _MM_SHUFFLE(1, 1, 1, 1))));
  }
  static int hmin_where_eq(F best, I idx, float m) {
    const __m256 eq = _mm256_cmp_ps(best, _mm256_set1_ps(m), _CMP_EQ_OQ);
    const __m256i c = blendi(_mm256_set1_epi32(INT_MAX), idx, eq);
    __m128i r = _mm_min_epi32(_mm256_castsi256_si128(c), _mm256_extracti128_si256(c, 1));
    r = _mm_min_epi32(r, _mm_shuffle_epi32(r, _MM_SHUFFLE(1, 0, 3, 2)));
    r = _mm_min_epi32(r, _mm_shuffle_epi32(r, _MM_SHUFFLE(2, 3, 0, 1)));
    return _mm_cvtsi128_si32(r);
  }
  static void spill(F v, float* p) { _mm256_storeu_ps(p, v); }
  static void spilli(I v, int* p) { _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), v); }
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

}  // namespace fastcnn::cpu::avx2
