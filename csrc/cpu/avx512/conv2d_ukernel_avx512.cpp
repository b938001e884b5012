// conv2d_ukernel_avx512.cpp -- conv2d's AVX-512 micro-kernel: the inner loop of the wide-grid
// direct convolution (conv2d_wide.cpp). The loop body is ukernel_8x48.h, shared with the GEMM
// micro-kernel (gemm_avx512.cpp).
//
// C[8 x 48] = sum_k A_panel[k][8]^T * src[off[k] .. off[k] + 48): the GEMM micro-kernel with its
// B rows read straight from a zero-padded image (row k of im2col is the padded image shifted by
// off[k] = c*plane + r*dil_h*Wp + s*dil_w, see conv2d_wide.cpp), so nothing is packed.
// Napkin maths: per k, 1 offset load + 3 unaligned zmm loads + 8 embedded broadcasts against 24
// FMAs (12 cycles at 2 FMA ports): FMA-bound like gemm_ukernel, 64 flops/cycle/core peak.
#include "cpu/avx512/intrin.h"

#include "cpu/kernels.h"

namespace fastcnn::cpu::avx512 {
namespace {
#include "cpu/avx512/ukernel_8x48.h"
}  // namespace

void conv2d_ukernel(int64_t kc, const float* a, const float* src, const int64_t* off, float* c,
                    int64_t ldc, int accumulate) {
  ukernel_8x48(kc, a, [src, off](int64_t k) { return src + off[k]; }, c, ldc, accumulate);
}

}  // namespace fastcnn::cpu::avx512
