// conv2d_blocked_wgrad.cpp (generic) -- the portable weight-gradient tile of the blocked direct
// convolution (csrc/cpu/conv2d_blocked_wgrad.cpp drives it; the contract is
// Conv2dBlockedWgradArgs in kernels.h). Plain C++ with VL = 8 (the AVX2 layout): the reference
// for the ISA kernels' loop order. Per accumulator the products dy * x are added pixel by pixel
// (images, rows, then columns), one multiply and one add each (baseline x86-64 has no FMA and
// the build contracts nothing), starting from the tile's stored value when accumulating.
// Tile: up to 2 k blocks x 8 columns = 128 float accumulators; no napkin maths beyond
// "portable": the ISA files are the fast path (the route never picks the blocked form here
// unless forced).
#include <algorithm>

#include "cpu/kernels.h"

namespace fastcnn::cpu::generic {

void conv2d_blocked_wgrad(const Conv2dBlockedWgradArgs& a) {
  constexpr int VL = 8, kOcb = 2, kNc = 8;
  for (int64_t j0 = 0; j0 < a.nc; j0 += kNc) {
    const int64_t nc = std::min<int64_t>(kNc, a.nc - j0);
    for (int64_t o0 = 0; o0 < a.ocb; o0 += kOcb) {
      const int64_t no = std::min<int64_t>(kOcb, a.ocb - o0);
      float acc[kOcb][kNc][VL] = {};
      if (a.accumulate)
        for (int64_t o = 0; o < no; ++o)
          for (int64_t j = 0; j < nc; ++j)
            for (int k = 0; k < VL; ++k)
              acc[o][j][k] = a.out[(o0 + o) * a.out_ob_stride + (j0 + j) * VL + k];
      for (int64_t i = 0; i < a.imgs * a.rows; ++i)
        for (int64_t q = 0; q < a.cols; ++q) {
          const int64_t xo = (i / a.rows) * a.x_img_stride + (i % a.rows) * a.x_row_stride +
                             q * a.x_col_stride;
          for (int64_t o = 0; o < no; ++o) {
            const float* d = a.dy + (o0 + o) * a.dy_ob_stride + (i * a.cols + q) * VL;
            for (int64_t j = 0; j < nc; ++j) {
              const float xv = a.x[j0 + j][xo];
              for (int k = 0; k < VL; ++k) acc[o][j][k] += d[k] * xv;
            }
          }
        }
      for (int64_t o = 0; o < no; ++o)
        for (int64_t j = 0; j < nc; ++j)
          for (int k = 0; k < VL; ++k)
            a.out[(o0 + o) * a.out_ob_stride + (j0 + j) * VL + k] = acc[o][j][k];
    }
  }
}

}  // namespace fastcnn::cpu::generic
