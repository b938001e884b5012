// conv2d_ukernel_avx2.cpp -- conv2d's AVX2+FMA micro-kernel: the inner loop of the wide-grid
// direct convolution (conv2d_wide.cpp: forward and backward-data of stride-1 convolutions).
//
// C[4 x 24] (+)= sum_k A_panel[k][4]^T * src[off[k] .. off[k] + 24): 4 output channels x 24
// outputs on the padded grid, k over the Cg*R*S taps (see conv2d_ukernel_avx512.cpp). Per k, 3
// unaligned ymm loads at the tap's offset, 4 broadcasts, 12 FMAs into 12 ymm accumulators.
// The loop body is ukernel_4x24.h, shared with the GEMM micro-kernel (gemm_avx2.cpp): only the
// B-row source differs (here the padded image at per-tap offsets, there a packed panel).
#include <immintrin.h>

#include "cpu/kernels.h"

namespace fastcnn::cpu::avx2 {
namespace {
#include "cpu/avx2/ukernel_4x24.h"
}  // namespace

void conv2d_ukernel(int64_t kc, const float* a, const float* src, const int64_t* off, float* c,
                    int64_t ldc, int accumulate) {
  ukernel_4x24(kc, a, [src, off](int64_t k) { return src + off[k]; }, c, ldc, accumulate);
}

}  // namespace fastcnn::cpu::avx2
