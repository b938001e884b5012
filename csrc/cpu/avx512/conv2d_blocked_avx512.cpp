// conv2d_blocked_avx512.cpp -- the tile kernel of the blocked direct convolution on AVX-512F
// (csrc/cpu/conv2d_blocked.cpp drives it; the contract is Conv2dBlockedArgs in kernels.h).
//
// Layout: VL = 16 channels a vector (oneDNN's nChw16c): one input pixel's 16 channels of a block
// are one aligned 64-byte line, one weight (kb, cb, tap, c) row the 16 output channels of kb.
// Tile: OCB output-channel blocks x NC output pixels, OCB*NC zmm accumulators.
// Per (cb, tap, c): OCB weight loads, NC broadcasts (vbroadcastss from memory), OCB*NC FMAs.
// Napkin maths (2 FMA ports on the server parts, 2 loads a cycle, FMA latency 4): the register
// budget is OCB*NC <= 24 accumulators (+ OCB weights + 1 broadcast <= 29 of 32 zmm, room for
// the compiler's addressing): 1 x 16, 2 x 12 (14 loads per 24 FMAs), 3 x 8, 4 x 6 (10 loads
// per 24 FMAs); each has >= 8 independent chains (2 ports x latency 4) except NC < 8 tails. Strides and dilations cost nothing extra (the
// broadcasts read in[j] + offset: no gather).
// Store: per oc block the NC pixel vectors (+ bias, ReLU as store_tile: max(0, v) keeps NaN), a
// 16x16 in-register transpose (transpose16.h: 64 shuffles) into 16 channel rows of NC pixels,
// each one masked 64-byte store straight into the NCHW output: no tile buffer, no reorder back.
#include "cpu/avx512/intrin.h"

#include <algorithm>
#include <utility>

#include "cpu/kernels.h"

namespace fastcnn::cpu::avx512 {

const int kBlockedVL = 16, kBlockedMaxOCB = 4, kBlockedMaxNC = 16, kBlockedMaxAcc = 24;

namespace {

#include "cpu/avx512/transpose16.h"

// min(kBlockedMaxNC, kBlockedMaxAcc / ocb): the driver's rule uses the same caps
constexpr int max_nc(int ocb) { return ocb == 1 ? 16 : ocb == 2 ? 12 : ocb == 3 ? 8 : 6; }

template <int OCB, int NC>
void tile(const Conv2dBlockedArgs& a) {
  __m512 acc[OCB][NC];
  #pragma GCC unroll 16
  for (int o = 0; o < OCB; ++o)
    #pragma GCC unroll 16
    for (int j = 0; j < NC; ++j) acc[o][j] = _mm512_setzero_ps();
  const float* wp = a.w;
  const int64_t wos = a.w_ob_stride;
  for (int64_t cb = 0; cb < a.cblocks; ++cb) {
    const int64_t cbo = cb * a.in_cb_stride;
    for (int64_t t = 0; t < a.taps; ++t, wp += 256) {
      const int64_t off = cbo + a.tap_off[t];
      const float* src[NC];
      #pragma GCC unroll 16
      for (int j = 0; j < NC; ++j) src[j] = a.in[j] + off;
      #pragma GCC unroll 16
      for (int c = 0; c < 16; ++c) {
        __m512 wv[OCB];
        #pragma GCC unroll 16
        for (int o = 0; o < OCB; ++o) wv[o] = _mm512_load_ps(wp + o * wos + c * 16);
        #pragma GCC unroll 16
        for (int j = 0; j < NC; ++j) {
          const __m512 xb = _mm512_set1_ps(src[j][c]);
          #pragma GCC unroll 16
          for (int o = 0; o < OCB; ++o) acc[o][j] = _mm512_fmadd_ps(wv[o], xb, acc[o][j]);
        }
      }
    }
  }
  const __m512 zero = _mm512_setzero_ps();
  const __mmask16 cols = static_cast<__mmask16>((1u << NC) - 1u);
  #pragma GCC unroll 16
  for (int o = 0; o < OCB; ++o) {
    const int64_t k0 = int64_t{o} * 16;
    if (k0 >= a.kvalid) continue;  // (not break: every index stays a constant)
    __m512 r[16];
    const __m512 bv = a.bias ? _mm512_loadu_ps(a.bias + k0) : zero;
    #pragma GCC unroll 16
    for (int j = 0; j < 16; ++j) {
      if (j < NC) {
        __m512 v = acc[o][j];
        if (a.bias) v = _mm512_add_ps(v, bv);
        if (a.relu) v = _mm512_max_ps(zero, v);  // returns v when v is NaN
        r[j] = v;
      } else {
        r[j] = zero;
      }
    }
    transpose16(r);
    const int64_t kn = std::min<int64_t>(16, a.kvalid - k0);
    float* y = a.y + k0 * a.y_ch_stride;
    #pragma GCC unroll 16
    for (int k = 0; k < kn; ++k) {
      if constexpr (NC == 16) _mm512_storeu_ps(y + k * a.y_ch_stride, r[k]);
      else _mm512_mask_storeu_ps(y + k * a.y_ch_stride, cols, r[k]);
    }
  }
}

using TileFn = void (*)(const Conv2dBlockedArgs&);

template <int OCB, int... I>
constexpr TileFn pick(int nc, std::integer_sequence<int, I...>) {
  constexpr TileFn fns[] = {&tile<OCB, (I + 1 <= max_nc(OCB) ? I + 1 : max_nc(OCB))>...};
  return fns[nc - 1];
}

TileFn select(int ocb, int nc) {
  const auto seq = std::make_integer_sequence<int, 16>{};
  return ocb == 1 ? pick<1>(nc, seq) : ocb == 2 ? pick<2>(nc, seq) : ocb == 3 ? pick<3>(nc, seq) : pick<4>(nc, seq);
}

}  // namespace

void conv2d_blocked(const Conv2dBlockedArgs& args) {
  const int ocb = static_cast<int>(args.ocb);
  const int cap = max_nc(ocb);
  if (args.nc <= cap) {  // the driver's tiles: no copy of the arguments
    select(ocb, static_cast<int>(args.nc))(args);
    return;
  }
  Conv2dBlockedArgs a = args;
  for (int64_t j0 = 0; j0 < args.nc; j0 += cap) {
    const int nc = static_cast<int>(std::min<int64_t>(cap, args.nc - j0));
    for (int j = 0; j < nc; ++j) a.in[j] = args.in[j0 + j];
    a.y = args.y + j0;
    a.nc = nc;
    select(ocb, nc)(a);
  }
}

}  // namespace fastcnn::cpu::avx512
