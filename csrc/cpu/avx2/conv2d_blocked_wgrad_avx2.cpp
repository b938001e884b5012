// conv2d_blocked_wgrad_avx2.cpp -- the weight-gradient tile of the blocked direct convolution on
// AVX2 + FMA (csrc/cpu/conv2d_blocked_wgrad.cpp drives it; the contract is
// Conv2dBlockedWgradArgs in kernels.h).
//
// Layout: VL = 8. dy of a band is pixel-major lines of 8 output channels per k block (one
// aligned 32-byte load a pixel and block); x is the forward's blocked band (nChw8c, padding as
// zeros), read one scalar per column and pixel (vbroadcastss from memory: a load-port op).
// Tile: OCB k blocks x NC columns (a column = one (tap, input channel) pair of a channel block):
// per output pixel OCB dy loads, NC broadcasts, OCB*NC FMAs into OCB*NC accumulators that stay
// in registers over the whole band (imgs x rows x cols pixels), loaded / stored once per call.
// Napkin maths (2 FMA ports, 2 loads a cycle, FMA latency 4-5): 2 x 6 = 12 accumulators + 2 dy
// + 1 broadcast = 15 of 16 ymm; 8 loads per 12 FMAs (6 cycles, 12 chains): FMA-bound. A 3x3
// channel block has 72 columns = 12 tiles of 6. Per call (a band of e.g. 32 x 32 pixels) the
// 24 accumulator loads / stores are 0.2 % of the 12288 FMAs. Strides and dilations cost the same
// (x_col_stride, and the columns' own pointers): no gather.
#include <immintrin.h>

#include <algorithm>
#include <utility>

#include "cpu/kernels.h"

namespace fastcnn::cpu::avx2 {
namespace {

// min(kBlockedMaxNC, kBlockedMaxAcc / ocb) of conv2d_blocked_avx2.cpp
constexpr int max_nc(int ocb) { return ocb == 1 ? 8 : ocb == 2 ? 6 : 4; }

template <int OCB, int NC>
void tile(const Conv2dBlockedWgradArgs& a) {
  __m256 acc[OCB][NC];
  #pragma GCC unroll 16
  for (int o = 0; o < OCB; ++o)
    #pragma GCC unroll 16
    for (int j = 0; j < NC; ++j)
      acc[o][j] = a.accumulate ? _mm256_loadu_ps(a.out + o * a.out_ob_stride + j * 8)
                               : _mm256_setzero_ps();
  const float* src[NC];
  #pragma GCC unroll 16
  for (int j = 0; j < NC; ++j) src[j] = a.x[j];
  const int64_t dos = a.dy_ob_stride, xcs = a.x_col_stride;
  const float* d = a.dy;
  for (int64_t i = 0; i < a.imgs * a.rows; ++i) {
    int64_t xo = (i / a.rows) * a.x_img_stride + (i % a.rows) * a.x_row_stride;
    for (int64_t q = 0; q < a.cols; ++q, xo += xcs, d += 8) {
      __m256 dv[OCB];
      #pragma GCC unroll 16
      for (int o = 0; o < OCB; ++o) dv[o] = _mm256_load_ps(d + o * dos);
      #pragma GCC unroll 16
      for (int j = 0; j < NC; ++j) {
        const __m256 xb = _mm256_broadcast_ss(src[j] + xo);
        #pragma GCC unroll 16
        for (int o = 0; o < OCB; ++o) acc[o][j] = _mm256_fmadd_ps(dv[o], xb, acc[o][j]);
      }
    }
  }
  #pragma GCC unroll 16
  for (int o = 0; o < OCB; ++o)
    #pragma GCC unroll 16
    for (int j = 0; j < NC; ++j) _mm256_storeu_ps(a.out + o * a.out_ob_stride + j * 8, acc[o][j]);
}

using TileFn = void (*)(const Conv2dBlockedWgradArgs&);

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

void conv2d_blocked_wgrad(const Conv2dBlockedWgradArgs& args) {
  const int ocb = static_cast<int>(args.ocb);
  const int cap = max_nc(ocb);
  if (args.nc <= cap) {  // the driver's tiles: no copy of the arguments
    select(ocb, static_cast<int>(args.nc))(args);
    return;
  }
  Conv2dBlockedWgradArgs a = args;
  for (int64_t j0 = 0; j0 < args.nc; j0 += cap) {
    const int nc = static_cast<int>(std::min<int64_t>(cap, args.nc - j0));
    for (int j = 0; j < nc; ++j) a.x[j] = args.x[j0 + j];
    a.out = args.out + j0 * 8;
    a.nc = nc;
    select(ocb, nc)(a);
  }
}

}  // namespace fastcnn::cpu::avx2
