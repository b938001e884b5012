// conv2d_blocked_avx2.cpp -- the tile kernel of the blocked direct convolution on AVX2 + FMA
// (csrc/cpu/conv2d_blocked.cpp drives it; the contract is Conv2dBlockedArgs in kernels.h).
//
// Layout: VL = 8 channels a vector (oneDNN's nChw8c): one input pixel's 8 channels of a block are
// one aligned 32-byte line, one weight (kb, cb, tap, c) row is the 8 output channels k of block kb.
// Tile: OCB output-channel blocks x NC output pixels, OCB*NC accumulators of 8 output channels.
// Per (cb, tap, c): OCB weight loads, NC broadcasts of one input scalar (vbroadcastss from
// memory: a load-port op, no shuffle), OCB*NC FMAs. Any stride and dilation cost the same (the
// broadcasts read in[j] + offset, whatever in[j] is: no gather).
// Napkin maths (2 FMA ports, 2 loads a cycle, FMA latency 4-5): 2 x 6 = 12 accumulators + 2
// weights + 1 broadcast = 15 of 16 ymm; 8 loads per 12 FMAs (6 cycles, 12 independent chains
// >= 2 ports x latency 5): FMA-bound. 1 x 8: 9 loads per 8 FMAs: 4.5 cycles for 4 of FMA (89 %),
// 3 x 4: 7 loads per 12 FMAs. The driver picks (OCB, NC) from the shape (conv2d_blocked.cpp).
// Store: per oc block the NC pixel vectors (+ bias, ReLU as store_tile: max(0, v) keeps NaN) go
// through an 8x8 in-register transpose (24 shuffles) into 8 channel rows of NC consecutive
// pixels, stored straight into the NCHW output (y + k*PQ + pq: one 32-byte store a row for
// NC = 8, a 16-byte + 8/4-byte pair for NC = 4..7): no tile buffer, no reorder pass back.
// Per tile that is 24 shuffles + 8 stores against NC*cblocks*taps*8 FMAs (16 channels, 3x3:
// 144 per pixel), a few percent.
#include <immintrin.h>

#include <algorithm>
#include <utility>

#include "cpu/kernels.h"

namespace fastcnn::cpu::avx2 {

const int kBlockedVL = 8, kBlockedMaxOCB = 3, kBlockedMaxNC = 8, kBlockedMaxAcc = 12;

namespace {

// min(kBlockedMaxNC, kBlockedMaxAcc / ocb): the driver's rule uses the same caps
constexpr int max_nc(int ocb) { return ocb == 1 ? 8 : ocb == 2 ? 6 : 4; }

inline void transpose8(__m256 r[8]) {
  __m256 t[8];
  for (int i = 0; i < 8; i += 2) {
    t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
  }
  __m256 u[8];
  for (int i = 0; i < 8; i += 4) {
    u[i] = _mm256_shuffle_ps(t[i], t[i + 2], 0x44);
    u[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], 0xEE);
    u[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0x44);
    u[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
  }
  for (int i = 0; i < 4; ++i) {
    r[i] = _mm256_permute2f128_ps(u[i], u[i + 4], 0x20);
    r[i + 4] = _mm256_permute2f128_ps(u[i], u[i + 4], 0x31);
  }
}

// the first N lanes of v to dst[0..N)
template <int N>
inline void store_first(float* dst, __m256 v) {
  if constexpr (N == 8) {
    _mm256_storeu_ps(dst, v);
  } else {
    const __m128 lo = _mm256_castps256_ps128(v);
    if constexpr (N >= 4) {
      _mm_storeu_ps(dst, lo);
      const __m128 hi = _mm256_extractf128_ps(v, 1);
      if constexpr (N == 5) _mm_store_ss(dst + 4, hi);
      if constexpr (N >= 6) _mm_storel_pi(reinterpret_cast<__m64*>(dst + 4), hi);
      if constexpr (N == 7) _mm_store_ss(dst + 6, _mm_movehl_ps(hi, hi));
    } else {
      if constexpr (N == 1) _mm_store_ss(dst, lo);
      if constexpr (N >= 2) _mm_storel_pi(reinterpret_cast<__m64*>(dst), lo);
      if constexpr (N == 3) _mm_store_ss(dst + 2, _mm_movehl_ps(lo, lo));
    }
  }
}

template <int OCB, int NC>
void tile(const Conv2dBlockedArgs& a) {
  __m256 acc[OCB][NC];
  #pragma GCC unroll 16
  for (int o = 0; o < OCB; ++o)
    #pragma GCC unroll 16
    for (int j = 0; j < NC; ++j) acc[o][j] = _mm256_setzero_ps();
  const float* wp = a.w;
  const int64_t wos = a.w_ob_stride;
  for (int64_t cb = 0; cb < a.cblocks; ++cb) {
    const int64_t cbo = cb * a.in_cb_stride;
    for (int64_t t = 0; t < a.taps; ++t, wp += 64) {
      const int64_t off = cbo + a.tap_off[t];
      const float* src[NC];
      #pragma GCC unroll 16
      for (int j = 0; j < NC; ++j) src[j] = a.in[j] + off;
      #pragma GCC unroll 16
      for (int c = 0; c < 8; ++c) {
        __m256 wv[OCB];
        #pragma GCC unroll 16
        for (int o = 0; o < OCB; ++o) wv[o] = _mm256_load_ps(wp + o * wos + c * 8);
        #pragma GCC unroll 16
        for (int j = 0; j < NC; ++j) {
          const __m256 xb = _mm256_broadcast_ss(src[j] + c);
          #pragma GCC unroll 16
          for (int o = 0; o < OCB; ++o) acc[o][j] = _mm256_fmadd_ps(wv[o], xb, acc[o][j]);
        }
      }
    }
  }
  const __m256 zero = _mm256_setzero_ps();
  #pragma GCC unroll 16
  for (int o = 0; o < OCB; ++o) {
    const int64_t k0 = int64_t{o} * 8;
    if (k0 >= a.kvalid) continue;  // (not break: every index stays a constant)
    __m256 r[8];
    const __m256 bv = a.bias ? _mm256_loadu_ps(a.bias + k0) : zero;
    #pragma GCC unroll 16
    for (int j = 0; j < 8; ++j) {
      if (j < NC) {
        __m256 v = acc[o][j];
        if (a.bias) v = _mm256_add_ps(v, bv);
        if (a.relu) v = _mm256_max_ps(zero, v);  // returns v when v is NaN
        r[j] = v;
      } else {
        r[j] = zero;
      }
    }
    transpose8(r);
    const int64_t kn = std::min<int64_t>(8, a.kvalid - k0);
    float* y = a.y + k0 * a.y_ch_stride;
    #pragma GCC unroll 16
    for (int k = 0; k < kn; ++k) store_first<NC>(y + k * a.y_ch_stride, r[k]);
  }
}

using TileFn = void (*)(const Conv2dBlockedArgs&);

template <int OCB, int... I>
constexpr TileFn pick(int nc, std::integer_sequence<int, I...>) {
  constexpr TileFn fns[] = {&tile<OCB, (I + 1 <= max_nc(OCB) ? I + 1 : max_nc(OCB))>...};
  return fns[nc - 1];
}

TileFn select(int ocb, int nc) {
  const auto seq = std::make_integer_sequence<int, 8>{};
  return ocb == 1 ? pick<1>(nc, seq) : ocb == 2 ? pick<2>(nc, seq) : pick<3>(nc, seq);
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

}  // namespace fastcnn::cpu::avx2
