// conv_rows_avx2.cpp -- AVX2+FMA micro-kernel of the wide-grid direct convolution (4 x 24).
//
// C[4 x 24] = sum_k A_panel[k][4]^T * src[off[k] .. off[k] + 24) (see conv_rows_avx512.cpp and
// conv2d_wide.cpp): per k, 3 unaligned ymm loads at the row's offset, 4 broadcasts, 12 FMAs.
#include <immintrin.h>

#include "cpu/kernels.h"

namespace fastcnn::cpu::avx2 {
namespace {
#include "cpu/avx2/ukernel_4x24.h"
}  // namespace

void conv_ukernel(int64_t kc, const float* a, const float* src, const int64_t* off, float* c,
                  int64_t ldc, int accumulate) {
  ukernel_4x24(kc, a, [src, off](int64_t k) { return src + off[k]; }, c, ldc, accumulate);
}

}  // namespace fastcnn::cpu::avx2
