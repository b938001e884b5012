// avgpool2d_avx512.cpp -- 2-D average pooling forward and backward on `planes` (n, c) planes,
// AVX-512.
//   avgpool2d_fwd: x (planes, H, W) -> y (planes, P, Q), y = 0 + window sum / div[p, q]
//   avgpool2d_bwd: dy (planes, P, Q) -> dx (planes, H, W), a gather over the windows
// Semantics: exactly generic/avgpool2d.cpp (PyTorch's CPU loops, bit for bit); the body is
// avgpool2d_impl.h over these 16-lane traits (approach and order there).
// Loads: stride 1 one masked unaligned load per tap; stride 2 two masked loads of 32 floats +
// one vpermt2ps each for the even and the odd lanes; other strides a masked vgatherdps.
// Division: vdivps by the per-window divisor row (the driver's table), as PyTorch's
// `sum / divide_factor`. Masked loads never fault on masked-off lanes, so tails read nothing
// past the last needed float.
// Napkin (2x2/2, 112x112 -> 56x56 plane): per 16 outputs 2 rows x (2 loads, 2 vpermt2ps,
// 2 adds) + load/div/add/store ~ 16 uops: 196 vectors ~ 1.5k cycles ~ 0.5 us a plane; the
// plane's 60 KB from DRAM take longer: memory bound. Backward 2x2/2: per 32 dx one load, two
// vpermt2ps, 2 stores.
#include "cpu/avx512/intrin.h"

#include <cstdint>
#include <cstring>

#include "cpu/kernels.h"

namespace fastcnn::cpu::avx512 {
namespace {

inline __mmask16 lanes_below(int64_t r) {  // lanes [0, r), any r
  return r >= 16 ? static_cast<__mmask16>(0xFFFFu)
                 : static_cast<__mmask16>(r <= 0 ? 0u : (1u << r) - 1u);
}

struct V {
  using F = __m512;
  static constexpr int64_t kW = 16;
  static F zero() { return _mm512_setzero_ps(); }
  static F add(F a, F b) { return _mm512_add_ps(a, b); }
  static F div(F a, F b) { return _mm512_div_ps(a, b); }
  static F load_n(const float* p, int64_t n) {
    return n >= 16 ? _mm512_loadu_ps(p) : _mm512_maskz_loadu_ps(lanes_below(n), p);
  }
  // lanes i in [lo, hi) (0 <= lo, hi <= 16) = p[i], others 0; masked-off lanes never fault
  static F load_range(const float* p, int64_t lo, int64_t hi) {
    return _mm512_maskz_loadu_ps(static_cast<__mmask16>(lanes_below(hi) & ~lanes_below(lo)), p);
  }
  static void store_n(float* p, F v, int64_t n) {
    if (n >= 16) {
      _mm512_storeu_ps(p, v);
    } else {
      _mm512_mask_storeu_ps(p, lanes_below(n), v);
    }
  }
  static __m512i even_idx() {
    return _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
  }
  static __m512i odd_idx() {
    return _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
  }
  static void deinterleave_n(const float* p, int64_t n, F& even, F& odd) {
    const F lo = _mm512_maskz_loadu_ps(lanes_below(2 * n), p);
    const F hi = _mm512_maskz_loadu_ps(lanes_below(2 * n - 16), p + 16);
    even = _mm512_permutex2var_ps(lo, even_idx(), hi);
    odd = _mm512_permutex2var_ps(lo, odd_idx(), hi);
  }
  static F even_n(const float* p, int64_t n) {
    const F lo = _mm512_maskz_loadu_ps(lanes_below(2 * n - 1), p);
    const F hi = _mm512_maskz_loadu_ps(lanes_below(2 * n - 17), p + 16);
    return _mm512_permutex2var_ps(lo, even_idx(), hi);
  }
  static F gather_n(const float* p, int64_t s, int64_t n) {
    const __m512i off = _mm512_mullo_epi32(
        _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
        _mm512_set1_epi32(static_cast<int>(s)));
    return _mm512_mask_i32gather_ps(_mm512_setzero_ps(), lanes_below(n), off, p, 4);
  }
  static void store_interleaved_n(float* p, F a, F b, int64_t n) {
    const __m512i lo = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    const __m512i hi =
        _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
    store_n(p, _mm512_permutex2var_ps(a, lo, b), 2 * n);
    if (n > 8) store_n(p + 16, _mm512_permutex2var_ps(a, hi, b), 2 * n - 16);
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

}  // namespace fastcnn::cpu::avx512
