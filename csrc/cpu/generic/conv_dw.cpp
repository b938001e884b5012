// conv_dw.cpp (generic) -- portable micro-kernel of the wide-grid weight gradient:
//   part[i][t][l] += sum_n sum_v dy[n][i][16v + l] * x[n][off[t] + 16v + l],  i < 4, t < 6, l < 16
// (see conv_dw_avx512.cpp and conv2d_wide.cpp). One (row, tap) pair at a time, 16 lanes in a
// fixed-size array the compiler keeps in SSE registers.
#include "cpu/kernels.h"

namespace fastcnn::cpu::generic {

void conv_dw_ukernel(int64_t nimg, int64_t jv, const float* dy, int64_t dy_ld, int64_t dy_is,
                     const float* x, int64_t x_is, const int64_t* off, float* part) {
  for (int i = 0; i < 4; ++i) {
    for (int t = 0; t < 6; ++t) {
      float acc[16] = {};
      for (int64_t n = 0; n < nimg; ++n) {
        const float* d = dy + n * dy_is + i * dy_ld;
        const float* xs = x + n * x_is + off[t];
        for (int64_t j = 0; j < jv * 16; j += 16)
          for (int l = 0; l < 16; ++l) acc[l] += d[j + l] * xs[j + l];
      }
      float* p = part + (i * 6 + t) * 16;
      for (int l = 0; l < 16; ++l) p[l] += acc[l];
    }
  }
}

}  // namespace fastcnn::cpu::generic
