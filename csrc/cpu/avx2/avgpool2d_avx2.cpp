// avgpool2d_avx2.cpp -- 2-D average pooling forward and backward on `planes` (n, c) planes, AVX2.
//   avgpool2d_fwd: x (planes, H, W) -> y (planes, P, Q), y = 0 + window sum / div[p, q]
//   avgpool2d_bwd: dy (planes, P, Q) -> dx (planes, H, W), a gather over the windows
// Semantics: exactly generic/avgpool2d.cpp (PyTorch's CPU loops, bit for bit); the body is
// avgpool2d_impl.h over these 8-lane traits (approach and order there).
// Loads: stride 1 one unaligned load per tap (vmaskmovps for a tail); stride 2 two loads of 16
// floats + vshufps (even / odd) + one vpermpd per pair of taps; other strides a masked
// vgatherdps. Division: vdivps by the per-window divisor row (the driver's table), as PyTorch's
// `sum / divide_factor`.
// Napkin (2x2/2, 112x112 -> 56x56 plane): per 8 outputs 2 rows x (2 loads, 2 shuffles, 2
// permutes, 2 adds) + load/div/add/store ~ 20 uops ~ 6 cycles: 3136 outputs ~ 2.4k cycles ~
// 0.8 us a plane, while the plane's 60 KB take ~ 3 us from DRAM at ~20 GB/s: memory bound.
// 3x3/1 (56x56): 9 loads + 9 adds per 8 outputs, 4 chains interleaved: ~5 cycles per 8.
// Backward 2x2/2: per 16 dx one load, the interleave (2 unpacks + 2 vperm2f128), 2 stores.
#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "cpu/kernels.h"

namespace fastcnn::cpu::avx2 {
namespace {

inline __m256i lanes_below(int64_t r) {  // int32 lanes [0, r) set, r <= 8 (r <= 0: none)
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(r < 0 ? 0 : r)),
                            _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

struct V {
  using F = __m256;
  static constexpr int64_t kW = 8;
  static F zero() { return _mm256_setzero_ps(); }
  static F add(F a, F b) { return _mm256_add_ps(a, b); }
  static F div(F a, F b) { return _mm256_div_ps(a, b); }
  static F load_n(const float* p, int64_t n) {
    return n >= 8 ? _mm256_loadu_ps(p) : _mm256_maskload_ps(p, lanes_below(n));
  }
  // lanes i in [lo, hi) (0 <= lo, hi <= 8) = p[i], others 0; masked-off lanes never fault
  static F load_range(const float* p, int64_t lo, int64_t hi) {
    return _mm256_maskload_ps(p, _mm256_andnot_si256(lanes_below(lo), lanes_below(hi)));
  }
  static void store_n(float* p, F v, int64_t n) {
    if (n >= 8) {
      _mm256_storeu_ps(p, v);
    } else {
      _mm256_maskstore_ps(p, lanes_below(n), v);
    }
  }
  // [lo0 lo2 hi0 hi2 | lo4 lo6 hi4 hi6] -> [lo0 lo2 lo4 lo6 hi0 hi2 hi4 hi6]
  static F fix(F v) {
    return _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(v), _MM_SHUFFLE(3, 1, 2, 0)));
  }
  static void deinterleave_n(const float* p, int64_t n, F& even, F& odd) {
    const F lo = n >= 8 ? _mm256_loadu_ps(p) : _mm256_maskload_ps(p, lanes_below(2 * n));
    const F hi = n >= 8 ? _mm256_loadu_ps(p + 8) : _mm256_maskload_ps(p + 8, lanes_below(2 * n - 8));
    even = fix(_mm256_shuffle_ps(lo, hi, _MM_SHUFFLE(2, 0, 2, 0)));
    odd = fix(_mm256_shuffle_ps(lo, hi, _MM_SHUFFLE(3, 1, 3, 1)));
  }
  static F even_n(const float* p, int64_t n) {
    const F lo = _mm256_maskload_ps(p, lanes_below(2 * n - 1));
    const F hi = _mm256_maskload_ps(p + 8, lanes_below(2 * n - 9));
    return fix(_mm256_shuffle_ps(lo, hi, _MM_SHUFFLE(2, 0, 2, 0)));
  }
  static F gather_n(const float* p, int64_t s, int64_t n) {
    const __m256i off = _mm256_mullo_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
                                           _mm256_set1_epi32(static_cast<int>(s)));
    return _mm256_mask_i32gather_ps(_mm256_setzero_ps(), p, off,
                                    _mm256_castsi256_ps(lanes_below(n)), 4);
  }
  static void store_interleaved_n(float* p, F a, F b, int64_t n) {
    const F lo = _mm256_unpacklo_ps(a, b), hi = _mm256_unpackhi_ps(a, b);
    const F o0 = _mm256_permute2f128_ps(lo, hi, 0x20), o1 = _mm256_permute2f128_ps(lo, hi, 0x31);
    store_n(p, o0, 2 * n);
    if (n > 4) store_n(p + 8, o1, 2 * n - 8);
  }
};

#include "cpu/avgpool2d_impl.h"

}  // namespace

void avgpool2d_fwd(const float* x, float* y, const float* div, const Pool2dParams& p,
                   int64_t planes) {
  avgpool2d_fwd_impl(x, y, div, p, planes);
}

void avgpool2d_bwd(const float* dy, float* dx, const float* div, float* scratch,
                   const Pool2dParams& p, int64_t planes) {
  avgpool2d_bwd_impl(dy, dx, div, scratch, p, planes);
}

}  // namespace fastcnn::cpu::avx2
