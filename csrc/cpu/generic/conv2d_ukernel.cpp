// conv2d_ukernel.cpp (generic) -- conv2d's portable micro-kernel of the wide-grid direct
// convolution (4 x 8):
//   C[i, j] = (accumulate ? C[i, j] : 0) + sum_{k < kc} a[k*4 + i] * src[off[k] + j]
// The C++ oracle of the ISA versions (see conv2d_wide.cpp for the layout).
#include "cpu/kernels.h"

namespace fastcnn::cpu::generic {

void conv2d_ukernel(int64_t kc, const float* a, const float* src, const int64_t* off, float* c,
                    int64_t ldc, int accumulate) {
  float acc[4][8] = {};
  for (int64_t k = 0; k < kc; ++k) {
    const float* b = src + off[k];
    for (int i = 0; i < 4; ++i) {
      const float ai = a[i];
      for (int j = 0; j < 8; ++j) acc[i][j] += ai * b[j];
    }
    a += 4;
  }
  for (int i = 0; i < 4; ++i)
    for (int j = 0; j < 8; ++j) c[i * ldc + j] = accumulate ? c[i * ldc + j] + acc[i][j] : acc[i][j];
}

}  // namespace fastcnn::cpu::generic
