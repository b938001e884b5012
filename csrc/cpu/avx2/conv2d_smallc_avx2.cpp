// conv2d_smallc_avx2.cpp -- the small-channel direct convolution's kernels on AVX2 + FMA
// (csrc/cpu/conv2d_smallc.cpp drives them; the contract is Conv2dSmallcArgs /
// Conv2dSmallcWgradArgs in kernels.h). VL = 8 floats along the output row q.
//
// Forward tile: KT output channels x QV vectors of q (one output row at a time, every row of the
// call in turn). Per tap t: QV unaligned loads of the input row at off[t] + q, KT broadcasts of
// w[t][k] (vbroadcastss from memory: a load-port op), KT*QV FMAs. Registers: KT*QV accumulators
// + QV inputs + 1 broadcast <= 16 ymm. Seeds' 1->32 @28 (Q = 26 = 3x8 + 2): the driver's rule
// takes KT = 5, QV = 2 (10 accumulators, 7 loads per 10 FMAs: 5 cycles, FMA-bound; 10 chains =
// 2 ports x latency 5); the row's 4 vectors carry 26 useful lanes of 32 (81 %). Stores: the
// accumulators (+ bias, ReLU: max(0, v) keeps NaN) straight into the NCHW rows, the last
// vector of a row as 16-, 8- and 4-byte stores of its valid lanes. No transpose, no tile buffer.
// Weight-gradient tile: KT output channels x TT taps of vector partial sums (lane = q mod 8).
// Per row vector: KT loads of dy, then per tap one load of x (kept in a register, not folded
// into the KT FMAs as a memory operand each) and KT FMAs. Registers: KT*TT
// accumulators + KT dy + 1 x <= 16 ymm; 1->32 (9 taps + the driver's ones tap for db = 10):
// KT = 2, TT = 5 (10 accumulators, 7 loads per 10 FMAs: 5 cycles). The last vector of a row is
// a masked load of both operands (zeros past Q, so an unused input column's NaN stays out).
// With relu_y, ReLU's backward is applied to each dy vector as it is loaded (one more load and
// a compare a dy vector: no materialised gradient, no extra pass over memory).
// dy rows of the call are re-read once per tap tile (from L1: KT rows of Q floats a row).
#include <immintrin.h>

#include <algorithm>
#include <array>
#include <utility>

#include "cpu/kernels.h"

namespace fastcnn::cpu::avx2 {

const int kSmallcVL = 8, kSmallcRegs = 16;

namespace {

inline __m256i lane_mask(int64_t n) {  // lanes < n (0 <= n <= 8)
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(n)),
                            _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

// the first n lanes of v to dst (1 <= n <= 8): 16-, 8- and 4-byte stores (vmaskmovps stores are
// microcoded on AMD Zen: several times slower)
inline void store_n(float* dst, __m256 v, int64_t n) {
  if (n == 8) {
    _mm256_storeu_ps(dst, v);
    return;
  }
  __m128 lo = _mm256_castps256_ps128(v);
  if (n >= 4) {
    _mm_storeu_ps(dst, lo);
    lo = _mm256_extractf128_ps(v, 1);
    dst += 4, n -= 4;
  }
  if (n >= 2) {
    _mm_storel_pi(reinterpret_cast<__m64*>(dst), lo);
    lo = _mm_movehl_ps(lo, lo);
    dst += 2, n -= 2;
  }
  if (n) _mm_store_ss(dst, lo);
}

// keeps v in a register: the compiler would otherwise fold its load into each FMA that uses
// it (one load per use instead of one)
inline void in_register(__m256& v) { __asm__("" : "+x"(v)); }

// outputs [k0, k0 + KT) x columns [q0, q0 + qn) (qn <= QV*8, > (QV-1)*8) of every row
template <int KT, int QV>
void fwd_tile(const Conv2dSmallcArgs& a, int64_t k0, int64_t q0, int64_t qn) {
  const __m256 zero = _mm256_setzero_ps();
  const int64_t tail = qn - (QV - 1) * 8;  // lanes of the tile's last vector
  __m256 bv[KT];
  #pragma GCC unroll 16
  for (int k = 0; k < KT; ++k) bv[k] = a.bias ? _mm256_broadcast_ss(a.bias + k0 + k) : zero;
  for (int64_t i = 0; i < a.rows; ++i) {
    const float* xi = a.x + i * a.x_row_stride + q0;
    __m256 acc[KT][QV];
    #pragma GCC unroll 16
    for (int k = 0; k < KT; ++k)
      #pragma GCC unroll 4
      for (int v = 0; v < QV; ++v) acc[k][v] = zero;
    const float* wt = a.w + k0;
    for (int64_t t = 0; t < a.taps; ++t, wt += a.ldw) {
      const float* xs = xi + a.off[t];
      __m256 xv[QV];
      #pragma GCC unroll 4
      for (int v = 0; v < QV; ++v) xv[v] = _mm256_loadu_ps(xs + v * 8);
      #pragma GCC unroll 16
      for (int k = 0; k < KT; ++k) {
        const __m256 w = _mm256_broadcast_ss(wt + k);
        #pragma GCC unroll 4
        for (int v = 0; v < QV; ++v) acc[k][v] = _mm256_fmadd_ps(w, xv[v], acc[k][v]);
      }
    }
    float* yi = a.y + k0 * a.y_ch_stride + i * a.y_row_stride + q0;
    #pragma GCC unroll 16
    for (int k = 0; k < KT; ++k) {
      float* yk = yi + k * a.y_ch_stride;
      #pragma GCC unroll 4
      for (int v = 0; v < QV; ++v) {
        __m256 r = acc[k][v];
        if (a.bias) r = _mm256_add_ps(r, bv[k]);
        if (a.relu) r = _mm256_max_ps(zero, r);  // returns r when r is NaN
        if (v + 1 < QV) _mm256_storeu_ps(yk + v * 8, r);
        else store_n(yk + v * 8, r, tail);
      }
    }
  }
}

template <int KT, int TT>
void wgrad_tile(const Conv2dSmallcWgradArgs& a, int64_t k0, int64_t t0) {
  __m256 acc[KT][TT];
  #pragma GCC unroll 16
  for (int k = 0; k < KT; ++k)
    #pragma GCC unroll 16
    for (int t = 0; t < TT; ++t)
      acc[k][t] = _mm256_loadu_ps(a.acc + (k0 + k) * a.acc_ld + (t0 + t) * 8);
  int64_t off[TT];
  #pragma GCC unroll 16
  for (int t = 0; t < TT; ++t) off[t] = a.off[t0 + t];
  const __m256 zero = _mm256_setzero_ps();
  const int64_t full = a.Q / 8 * 8;
  const __m256i tail = lane_mask(a.Q - full);
  for (int64_t i = 0; i < a.rows; ++i) {
    const float* xi = a.x + i * a.x_row_stride;
    const float* dyi = a.dy + k0 * a.dy_ch_stride + i * a.dy_row_stride;
    const float* yri = a.relu_y ? a.relu_y + k0 * a.dy_ch_stride + i * a.dy_row_stride : nullptr;
    for (int64_t q = 0; q < full; q += 8) {
      __m256 d[KT];
      #pragma GCC unroll 16
      for (int k = 0; k < KT; ++k) d[k] = _mm256_loadu_ps(dyi + k * a.dy_ch_stride + q);
      if (yri) {
        #pragma GCC unroll 16
        for (int k = 0; k < KT; ++k)  // ReLU's backward: 0 where y <= 0 (a NaN y keeps dy)
          d[k] = _mm256_andnot_ps(
              _mm256_cmp_ps(_mm256_loadu_ps(yri + k * a.dy_ch_stride + q), zero, _CMP_LE_OQ), d[k]);
      }
      #pragma GCC unroll 16
      for (int t = 0; t < TT; ++t) {
        __m256 xv = _mm256_loadu_ps(xi + off[t] + q);
        in_register(xv);
        #pragma GCC unroll 16
        for (int k = 0; k < KT; ++k) acc[k][t] = _mm256_fmadd_ps(d[k], xv, acc[k][t]);
      }
    }
    if (full < a.Q) {
      __m256 d[KT];
      #pragma GCC unroll 16
      for (int k = 0; k < KT; ++k)
        d[k] = _mm256_maskload_ps(dyi + k * a.dy_ch_stride + full, tail);
      if (yri) {
        #pragma GCC unroll 16
        for (int k = 0; k < KT; ++k)
          d[k] = _mm256_andnot_ps(
              _mm256_cmp_ps(_mm256_maskload_ps(yri + k * a.dy_ch_stride + full, tail), zero,
                            _CMP_LE_OQ), d[k]);
      }
      #pragma GCC unroll 16
      for (int t = 0; t < TT; ++t) {
        __m256 xv = _mm256_maskload_ps(xi + off[t] + full, tail);
        in_register(xv);
        #pragma GCC unroll 16
        for (int k = 0; k < KT; ++k) acc[k][t] = _mm256_fmadd_ps(d[k], xv, acc[k][t]);
      }
    }
  }
  #pragma GCC unroll 16
  for (int k = 0; k < KT; ++k)
    #pragma GCC unroll 16
    for (int t = 0; t < TT; ++t)
      _mm256_storeu_ps(a.acc + (k0 + k) * a.acc_ld + (t0 + t) * 8, acc[k][t]);
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
  const int64_t tw = std::clamp<int64_t>(a.tile_v, 1, kSmallcMaxTileV) * 8;
  for (int64_t k0 = 0; k0 < a.kt; k0 += tk) {
    const int64_t kn = std::min(tk, a.kt - k0);
    for (int64_t q0 = 0; q0 < a.Q; q0 += tw) {
      const int64_t qn = std::min(tw, a.Q - q0);
      kFwd[static_cast<size_t>(kn - 1)][static_cast<size_t>((qn + 7) / 8 - 1)](a, k0, q0, qn);
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

}  // namespace fastcnn::cpu::avx2
