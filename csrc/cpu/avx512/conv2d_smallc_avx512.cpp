// conv2d_smallc_avx512.cpp -- the small-channel direct convolution's kernels on AVX-512F
// (csrc/cpu/conv2d_smallc.cpp drives them; the contract is Conv2dSmallcArgs /
// Conv2dSmallcWgradArgs in kernels.h). VL = 16 floats along the output row q; the AVX2 file's
// loops with zmm registers and k-masks (masked tails: maskz loads, mask stores).
//
// Forward tile: KT output channels x QV vectors of q. Per tap: QV unaligned loads, KT
// broadcasts, KT*QV FMAs; KT*QV + QV + 1 <= 32 zmm. Seeds' 1->32 @28 (Q = 26 = 16 + 10: 2
// vectors, 26 of 32 lanes useful): the rule takes KT = 8, QV = 2 (16 accumulators, 10 loads per
// 16 FMAs: 8 cycles on 2 FMA ports, FMA-bound).
// Weight-gradient tile: KT channels x TT taps of vector partials (lane = q mod 16); KT*TT + KT
// + 1 <= 32 zmm: 1->32 (10 taps with the ones tap for db): KT = 2, TT = 5 (10 accumulators,
// 7 loads per 10 FMAs; the model's ties go to the first, smaller tile). The last vector of a row loads both operands under the k-mask.
#include "cpu/avx512/intrin.h"

#include <algorithm>
#include <cstdint>
#include <array>
#include <utility>

#include "cpu/kernels.h"

namespace fastcnn::cpu::avx512 {

const int kSmallcVL = 16, kSmallcRegs = 32;

namespace {

inline __mmask16 lane_mask(int64_t n) {  // lanes < n (0 <= n <= 16)
  return static_cast<__mmask16>((uint32_t{1} << n) - 1);
}

// keeps v in a register: the compiler would otherwise fold its load into each FMA that uses
// it (one load per use instead of one); nothing under SIMDe (no zmm registers there)
#ifdef FASTCNN_AVX512_SIMDE
inline void in_register(__m512&) {}
#else
inline void in_register(__m512& v) { __asm__("" : "+v"(v)); }
#endif

// outputs [k0, k0 + KT) x columns [q0, q0 + qn) (qn <= QV*16, > (QV-1)*16) of every row
template <int KT, int QV>
void fwd_tile(const Conv2dSmallcArgs& a, int64_t k0, int64_t q0, int64_t qn) {
  const __m512 zero = _mm512_setzero_ps();
  const __mmask16 tail = lane_mask(qn - (QV - 1) * 16);
  const bool whole = qn == QV * 16;  // the tile's last vector is full
  __m512 bv[KT];
  #pragma GCC unroll 16
  for (int k = 0; k < KT; ++k) bv[k] = a.bias ? _mm512_set1_ps(a.bias[k0 + k]) : zero;
  for (int64_t i = 0; i < a.rows; ++i) {
    const float* xi = a.x + i * a.x_row_stride + q0;
    __m512 acc[KT][QV];
    #pragma GCC unroll 16
    for (int k = 0; k < KT; ++k)
      #pragma GCC unroll 4
      for (int v = 0; v < QV; ++v) acc[k][v] = zero;
    const float* wt = a.w + k0;
    for (int64_t t = 0; t < a.taps; ++t, wt += a.ldw) {
      const float* xs = xi + a.off[t];
      __m512 xv[QV];
      #pragma GCC unroll 4
      for (int v = 0; v < QV; ++v) xv[v] = _mm512_loadu_ps(xs + v * 16);
      #pragma GCC unroll 16
      for (int k = 0; k < KT; ++k) {
        const __m512 w = _mm512_set1_ps(wt[k]);
        #pragma GCC unroll 4
        for (int v = 0; v < QV; ++v) acc[k][v] = _mm512_fmadd_ps(w, xv[v], acc[k][v]);
      }
    }
    float* yi = a.y + k0 * a.y_ch_stride + i * a.y_row_stride + q0;
    #pragma GCC unroll 16
    for (int k = 0; k < KT; ++k) {
      float* yk = yi + k * a.y_ch_stride;
      #pragma GCC unroll 4
      for (int v = 0; v < QV; ++v) {
        __m512 r = acc[k][v];
        if (a.bias) r = _mm512_add_ps(r, bv[k]);
        if (a.relu) r = _mm512_max_ps(zero, r);  // returns r when r is NaN
        if (v + 1 < QV || whole) _mm512_storeu_ps(yk + v * 16, r);
        else _mm512_mask_storeu_ps(yk + v * 16, tail, r);
      }
    }
  }
}

template <int KT, int TT>
void wgrad_tile(const Conv2dSmallcWgradArgs& a, int64_t k0, int64_t t0) {
  __m512 acc[KT][TT];
  #pragma GCC unroll 16
  for (int k = 0; k < KT; ++k)
    #pragma GCC unroll 16
    for (int t = 0; t < TT; ++t)
      acc[k][t] = _mm512_loadu_ps(a.acc + (k0 + k) * a.acc_ld + (t0 + t) * 16);
  int64_t off[TT];
  #pragma GCC unroll 16
  for (int t = 0; t < TT; ++t) off[t] = a.off[t0 + t];
  const __m512 zero = _mm512_setzero_ps();
  const int64_t full = a.Q / 16 * 16;
  const __mmask16 tail = lane_mask(a.Q - full);
  for (int64_t i = 0; i < a.rows; ++i) {
    const float* xi = a.x + i * a.x_row_stride;
    const float* dyi = a.dy + k0 * a.dy_ch_stride + i * a.dy_row_stride;
    const float* yri = a.relu_y ? a.relu_y + k0 * a.dy_ch_stride + i * a.dy_row_stride : nullptr;
    for (int64_t q = 0; q < full; q += 16) {
      __m512 d[KT];
      #pragma GCC unroll 16
      for (int k = 0; k < KT; ++k) d[k] = _mm512_loadu_ps(dyi + k * a.dy_ch_stride + q);
      if (yri) {
        #pragma GCC unroll 16
        for (int k = 0; k < KT; ++k)  // ReLU's backward: 0 where y <= 0 (a NaN y keeps dy)
          d[k] = _mm512_mask_mov_ps(
              d[k], _mm512_cmp_ps_mask(_mm512_loadu_ps(yri + k * a.dy_ch_stride + q), zero,
                                       _CMP_LE_OQ), zero);
      }
      #pragma GCC unroll 16
      for (int t = 0; t < TT; ++t) {
        __m512 xv = _mm512_loadu_ps(xi + off[t] + q);
        in_register(xv);
        #pragma GCC unroll 16
        for (int k = 0; k < KT; ++k) acc[k][t] = _mm512_fmadd_ps(d[k], xv, acc[k][t]);
      }
    }
    if (full < a.Q) {
      __m512 d[KT];
      #pragma GCC unroll 16
      for (int k = 0; k < KT; ++k)
        d[k] = _mm512_maskz_loadu_ps(tail, dyi + k * a.dy_ch_stride + full);
      if (yri) {
        #pragma GCC unroll 16
        for (int k = 0; k < KT; ++k)
          d[k] = _mm512_mask_mov_ps(
              d[k], _mm512_cmp_ps_mask(_mm512_maskz_loadu_ps(tail, yri + k * a.dy_ch_stride + full),
                                       zero, _CMP_LE_OQ), zero);
      }
      #pragma GCC unroll 16
      for (int t = 0; t < TT; ++t) {
        __m512 xv = _mm512_maskz_loadu_ps(tail, xi + off[t] + full);
        in_register(xv);
        #pragma GCC unroll 16
        for (int k = 0; k < KT; ++k) acc[k][t] = _mm512_fmadd_ps(d[k], xv, acc[k][t]);
      }
    }
  }
  #pragma GCC unroll 16
  for (int k = 0; k < KT; ++k)
    #pragma GCC unroll 16
    for (int t = 0; t < TT; ++t)
      _mm512_storeu_ps(a.acc + (k0 + k) * a.acc_ld + (t0 + t) * 16, acc[k][t]);
}

using FwdFn = void (*)(const Conv2dSmallcArgs&, int64_t, int64_t, int64_t);
using WgradFn = void (*)(const Conv2dSmallcWgradArgs&, int64_t, int64_t);

template <int KT, int... V>
constexpr auto fwd_row(std::integer_sequence<int, V...>) {
  return std::array<FwdFn, sizeof...(V)>{&fwd_tile<KT, V + 1>...};
}
template <int... K>
constexpr auto fwd_table(std::integer_sequence<int, K...>) {
  return std::array<std::array<FwdFn, kSmallcMaxTileV>, sizeof...(K)>{
      fwd_row<K + 1>(std::make_integer_sequence<int, kSmallcMaxTileV>{})...};
}
template <int KT, int... T>
constexpr auto wgrad_row(std::integer_sequence<int, T...>) {
  return std::array<WgradFn, sizeof...(T)>{&wgrad_tile<KT, T + 1>...};
}
template <int... K>
constexpr auto wgrad_table(std::integer_sequence<int, K...>) {
  return std::array<std::array<WgradFn, kSmallcMaxWgradT>, sizeof...(K)>{
      wgrad_row<K + 1>(std::make_integer_sequence<int, kSmallcMaxWgradT>{})...};
}

constexpr auto kFwd = fwd_table(std::make_integer_sequence<int, kSmallcMaxTileK>{});
constexpr auto kWgrad = wgrad_table(std::make_integer_sequence<int, kSmallcMaxWgradK>{});

}  // namespace

void conv2d_smallc(const Conv2dSmallcArgs& a) {
  const int64_t tk = std::clamp<int64_t>(a.tile_k, 1, kSmallcMaxTileK);
  const int64_t tw = std::clamp<int64_t>(a.tile_v, 1, kSmallcMaxTileV) * 16;
  for (int64_t k0 = 0; k0 < a.kt; k0 += tk) {
    const int64_t kn = std::min(tk, a.kt - k0);
    for (int64_t q0 = 0; q0 < a.Q; q0 += tw) {
      const int64_t qn = std::min(tw, a.Q - q0);
      kFwd[static_cast<size_t>(kn - 1)][static_cast<size_t>((qn + 15) / 16 - 1)](a, k0, q0, qn);
    }
  }
}

void conv2d_smallc_wgrad(const Conv2dSmallcWgradArgs& a) {
  const int64_t tk = std::clamp<int64_t>(a.tile_k, 1, kSmallcMaxWgradK);
  const int64_t tt = std::clamp<int64_t>(a.tile_t, 1, kSmallcMaxWgradT);
  for (int64_t k0 = 0; k0 < a.kt; k0 += tk) {
    const int64_t kn = std::min(tk, a.kt - k0);
    for (int64_t t0 = 0; t0 < a.taps; t0 += tt) {
      const int64_t tn = std::min(tt, a.taps - t0);
      kWgrad[static_cast<size_t>(kn - 1)][static_cast<size_t>(tn - 1)](a, k0, t0);
    }
  }
}

}  // namespace fastcnn::cpu::avx512
