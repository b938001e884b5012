// conv2d_smallc.cpp (generic) -- the portable reference of the small-channel direct convolution
// (csrc/cpu/conv2d_smallc.cpp drives it; the contract is Conv2dSmallcArgs /
// Conv2dSmallcWgradArgs in kernels.h). Scalar loops in the contract's order: each forward output
// sums its C*R*S taps in order from 0, then the bias, then the ReLU; each weight-gradient lane
// l = q mod 8 sums its products row by row, column by column (a multiply and an add: the SIMD
// ISAs fuse them). The tile fields are ignored: a tile changes which outputs a call computes
// together, never a sum.
// Shapes: x (rows of the driver's padded copy), y (kt, rows, Q), dy (kt, rows, Q), acc (kt, taps,
// 8). Napkin maths: none to speak of (one scalar multiply-add per step: the rule never routes the
// generic ISA here, FASTCNN_CONV_ROUTE=smallc forces it for tests).
#include "cpu/kernels.h"

namespace fastcnn::cpu::generic {

const int kSmallcVL = 8, kSmallcRegs = 16;

void conv2d_smallc(const Conv2dSmallcArgs& a) {
  for (int64_t k = 0; k < a.kt; ++k) {
    const float bk = a.bias ? a.bias[k] : 0.0f;
    for (int64_t i = 0; i < a.rows; ++i) {
      const float* xi = a.x + i * a.x_row_stride;
      float* yr = a.y + k * a.y_ch_stride + i * a.y_row_stride;
      for (int64_t q = 0; q < a.Q; ++q) {
        float acc = 0.0f;
        for (int64_t t = 0; t < a.taps; ++t) acc += a.w[t * a.ldw + k] * xi[a.off[t] + q];
        float v = a.bias ? acc + bk : acc;
        if (a.relu && v < 0.0f) v = 0.0f;  // max(v, 0) with NaN kept
        yr[q] = v;
      }
    }
  }
}

void conv2d_smallc_wgrad(const Conv2dSmallcWgradArgs& a) {
  constexpr int64_t VL = 8;
  for (int64_t k = 0; k < a.kt; ++k)
    for (int64_t t = 0; t < a.taps; ++t) {
      float lane[VL];
      float* acc = a.acc + k * a.acc_ld + t * VL;
      for (int64_t l = 0; l < VL; ++l) lane[l] = acc[l];
      for (int64_t i = 0; i < a.rows; ++i) {
        const float* xi = a.x + i * a.x_row_stride + a.off[t];
        const int64_t o = k * a.dy_ch_stride + i * a.dy_row_stride;
        const float* dyr = a.dy + o;
        const float* yr = a.relu_y ? a.relu_y + o : nullptr;
        for (int64_t q = 0; q < a.Q; ++q) {
          const float g = (yr && yr[q] <= 0.0f) ? 0.0f : dyr[q];
          lane[q % VL] += g * xi[q];
        }
      }
      for (int64_t l = 0; l < VL; ++l) acc[l] = lane[l];
    }
}

}  // namespace fastcnn::cpu::generic
