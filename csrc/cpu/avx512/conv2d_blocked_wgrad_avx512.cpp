// conv2d_blocked_wgrad_avx512.cpp -- the weight-gradient tile of the blocked direct convolution
// on AVX-512F (csrc/cpu/conv2d_blocked_wgrad.cpp drives it; the contract is
// Conv2dBlockedWgradArgs in kernels.h). The AVX2 file's loop with VL = 16 (nChw16c).
//
// Tile: OCB k blocks x NC columns, OCB*NC <= 24 zmm accumulators (2 x 12, 1 x 16, 3 x 8, 4 x 6);
// per output pixel OCB dy loads (one 64-byte line each), NC broadcasts (vbroadcastss from
// memory), OCB*NC FMAs. Napkin maths (2 FMA ports, 2 loads a cycle): 2 x 12 = 24 FMAs per
// 14 loads (12 cycles of FMA, 7 of loads): FMA-bound; 1 x 16: 17 loads per 16 FMAs (8.5 cycles
// for 8: 94 %). 12 column pointers + dy and loop registers exceed the 16 GPRs: the compiler keeps
// a few pointers on the stack (one more load each). Compiled here, not run: this machine has no
// AVX-512 (the generic kernel of the same loop order is the tested reference).
#include "cpu/avx512/intrin.h"

#include <algorithm>
#include <utility>

#include "cpu/kernels.h"

namespace fastcnn::cpu::avx512 {
namespace {

// min(kBlockedMaxNC, kBlockedMaxAcc / ocb) of conv2d_blocked_avx512.cpp
constexpr int max_nc(int ocb) { return ocb == 1 ? 16 : ocb == 2 ? 12 : ocb == 3 ? 8 : 6; }

template <int OCB, int NC>
void tile(const Conv2dBlockedWgradArgs& a) {
  __m512 acc[OCB][NC];
  #pragma GCC unroll 16
  for (int o = 0; o < OCB; ++o)
    #pragma GCC unroll 16
    for (int j = 0; j < NC; ++j)
      acc[o][j] = a.accumulate ? _mm512_loadu_ps(a.out + o * a.out_ob_stride + j * 16)
                               : _mm512_setzero_ps();
  const float* src[NC];
  #pragma GCC unroll 16
  for (int j = 0; j < NC; ++j) src[j] = a.x[j];
  const int64_t dos = a.dy_ob_stride, xcs = a.x_col_stride;
  const float* d = a.dy;
  for (int64_t i = 0; i < a.imgs * a.rows; ++i) {
    int64_t xo = (i / a.rows) * a.x_img_stride + (i % a.rows) * a.x_row_stride;
    for (int64_t q = 0; q < a.cols; ++q, xo += xcs, d += 16) {
      __m512 dv[OCB];
      #pragma GCC unroll 16
      for (int o = 0; o < OCB; ++o) dv[o] = _mm512_load_ps(d + o * dos);
      #pragma GCC unroll 16
      for (int j = 0; j < NC; ++j) {
        const __m512 xb = _mm512_set1_ps(src[j][xo]);
        #pragma GCC unroll 16
        for (int o = 0; o < OCB; ++o) acc[o][j] = _mm512_fmadd_ps(dv[o], xb, acc[o][j]);
      }
    }
  }
  #pragma GCC unroll 16
  for (int o = 0; o < OCB; ++o)
    #pragma GCC unroll 16
    for (int j = 0; j < NC; ++j) _mm512_storeu_ps(a.out + o * a.out_ob_stride + j * 16, acc[o][j]);
}

using TileFn = void (*)(const Conv2dBlockedWgradArgs&);

template <int OCB, int... I>
constexpr TileFn pick(int nc, std::integer_sequence<int, I...>) {
  constexpr TileFn fns[] = {&tile<OCB, (I + 1 <= max_nc(OCB) ? I + 1 : max_nc(OCB))>...};
  return fns[nc - 1];
}

TileFn select(int ocb, int nc) {
  const auto seq = std::make_integer_sequence<int, 16>{};
  return ocb == 1   ? pick<1>(nc, seq)
         : ocb == 2 ? pick<2>(nc, seq)
         : ocb == 3 ? pick<3>(nc, seq)
                    : pick<4>(nc, seq);
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
    a.out = args.out + j0 * 16;
    a.nc = nc;
    select(ocb, nc)(a);
  }
}

}  // namespace fastcnn::cpu::avx512
