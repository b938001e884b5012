// params.h -- geometry of convolution, pooling and linear, all int64, validated once (by the
// check_<op>_args of common/args.h), shared by the CPU drivers and the CUDA launchers.
//
// Conv2d: x (N, C, H, W), w (K, C/groups, R, S), y (N, K, P, Q) with
//   P = floor((H + pad_top + pad_bottom - dil_h*(R-1) - 1) / stride_h) + 1   (Q likewise).
// Pool2d: x (N, C, H, W) -> y (N, C, P, Q); padding is symmetric and implicit -inf, PyTorch's
//   rule pad <= kernel/2; ceil_mode lets the last window hang over the end as long as it starts
//   inside the input or the left padding.
#pragma once
#include <cstdint>
#include <string>

#include "common/check.h"

namespace fastcnn {

struct Conv2dParams {
  int64_t N = 0, C = 0, H = 0, W = 0;      // input
  int64_t K = 0, R = 0, S = 0;             // weight (K, C/groups, R, S)
  int64_t P = 0, Q = 0;                    // output size
  int64_t stride_h = 1, stride_w = 1;
  int64_t pad_top = 0, pad_left = 0, pad_bottom = 0, pad_right = 0;
  int64_t dil_h = 1, dil_w = 1;
  int64_t groups = 1;
  int64_t Cg() const { return C / groups; }   // input channels per group
  int64_t Kg() const { return K / groups; }   // output channels per group
  int64_t CRSg() const { return Cg() * R * S; }
};

// Linear: x (N, in), w (out, in), y (N, out).
struct LinearParams {
  int64_t N = 0, in = 0, out = 0;
};

// Softmax / cross-entropy: `rows` rows of L contiguous elements (the reduced axis last).
struct RowsParams {
  int64_t rows = 0, L = 0;
};

// Scalars of one Adam / AdamW step (fastcnn.optimizers.Adam), rounded to float32 on the host as
// NumPy rounds them; shared by the CPU and CUDA updates.
struct AdamScalars {
  float step_size;      // float32(lr / (1 - beta_1^t))
  float beta1, one_minus_beta1, beta2, one_minus_beta2;  // one_minus_*: computed in float32
  float sqrt_bc2;       // float32(sqrt(1 - beta_2^t))
  float eps;
  float l2;             // L2 weight decay added to the gradient (Adam), 0 for none
  float decay;          // decoupled decay factor float32(1 - lr*wd) (AdamW), 1 for none
  bool has_l2, has_decay;
};

struct Pool2dParams {
  int64_t N = 0, C = 0, H = 0, W = 0;
  int64_t P = 0, Q = 0;
  int64_t kh = 1, kw = 1;
  int64_t stride_h = 1, stride_w = 1;
  int64_t pad_h = 0, pad_w = 0;
  int64_t dil_h = 1, dil_w = 1;
  bool ceil_mode = false;
};

// Output length of one convolution axis; throws ValueError naming `axis` when impossible.
inline int64_t conv_out_size(int64_t in, int64_t k, int64_t stride, int64_t pad0, int64_t pad1,
                             int64_t dil, const char* axis) {
  const int64_t eff = checked_mul(dil, k - 1, "kernel extent") + 1;
  const int64_t padded = in + pad0 + pad1;
  FASTCNN_CHECK(eff <= padded, "conv2d: the dilated kernel (", eff, " along ", axis,
                ") is larger than the padded input (", in, " + ", pad0, " + ", pad1, " = ", padded,
                ")");
  return (padded - eff) / stride + 1;
}

// Output length of one pooling axis (PyTorch's pooling_output_shape).
inline int64_t pool_out_size(int64_t in, int64_t k, int64_t stride, int64_t pad, int64_t dil,
                             bool ceil_mode, const char* axis) {
  const int64_t eff = dil * (k - 1) + 1;
  const int64_t span = in + 2 * pad - eff;
  FASTCNN_CHECK(span >= 0, "max_pool2d: the dilated window (", eff, " along ", axis,
                ") is larger than the padded input (", in, " + 2*", pad, ")");
  int64_t out = (span + (ceil_mode ? stride - 1 : 0)) / stride + 1;
  if (ceil_mode && (out - 1) * stride >= in + pad) --out;  // last window must start inside
  // With dilation a window's taps can step over the whole input (PyTorch then returns -inf with
  // an out-of-range index): such a geometry is rejected. Without dilation every window holds an
  // input element (padding <= k/2 and the ceil_mode rule guarantee it).
  for (int64_t o = 0; dil > 1 && o < out; ++o) {
    const int64_t start = o * stride - pad;
    const int64_t first = start >= 0 ? start : start + (-start + dil - 1) / dil * dil;
    FASTCNN_CHECK(first < in && first <= start + (k - 1) * dil, "max_pool2d: pooling window ", o,
                  " along ", axis, " covers no input element (size ", in, ", kernel ", k,
                  ", stride ", stride, ", padding ", pad, ", dilation ", dil, ")");
  }
  return out;
}

// ---- normalization family (batch_norm) -------------------------------------------------------
// x (N, C, S) as the kernels see it: S = L or H*W (1 for (N, C) inputs); M = N*S values per
// channel. momentum / eps are PyTorch's (double, as F.batch_norm takes them).
struct BatchNormParams {
  int64_t N = 0, C = 0, S = 1;
  bool training = false;
  bool relu = false;  // forward: y = relu(bn(x)) (the fused ReLU; the backward takes relu_y)
  double momentum = 0.1, eps = 1e-5;
  int64_t M() const { return N * S; }
};

// ---- pooling family: average and global pooling (issue 17) -------------------------------------
// Average pooling: the window geometry of Pool2dParams (no dilation), and PyTorch's divisor:
// divisor_override when nonzero, else the window's size counting the padding (count_include_pad;
// a ceil_mode window hanging past the padded input counts only up to its edge) or only the input
// elements it covers.
struct AvgPool2dParams {
  Pool2dParams pool;
  bool count_include_pad = true;
  int64_t divisor_override = 0;  // 0: none
};

// Elements counted along one axis by window o (start o*stride - pad), PyTorch's avg_pool2d rule.
inline int64_t avg_pool_count(int64_t o, int64_t size, int64_t k, int64_t stride, int64_t pad,
                              bool include_pad) {
  const int64_t start = o * stride - pad;
  const int64_t end = start + k < size + pad ? start + k : size + pad;
  if (include_pad) return end - start;
  return (end < size ? end : size) - (start > 0 ? start : 0);
}

// Global pooling: one (H, W) plane per (n, c), reduced to one value.
struct GlobalPool2dParams {
  int64_t N = 0, C = 0, H = 0, W = 0;
  int64_t planes() const { return N * C; }
  int64_t HW() const { return H * W; }
};

}  // namespace fastcnn
