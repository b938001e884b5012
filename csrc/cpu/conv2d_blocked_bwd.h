// conv2d_blocked_bwd.h -- the blocked direct convolution's backward passes beyond stride-1
// backward-data (conv2d_blocked.h): the weight gradient (conv2d_blocked_wgrad.cpp) and
// backward-data of any stride as stride^2 phase sub-convolutions (conv2d_blocked_bwd.cpp), on
// the active ISA's channel blocks (generic / avx2: 8, avx512: 16), groups = 1.
#pragma once
#include <cstdint>

#include "common/params.h"
#include "cpu/conv2d_blocked.h"
#include "cpu/kernels.h"
#include "cpu/ops.h"

namespace fastcnn::cpu {

// The conv output's gradient (N, K, P, Q) as the blocked backward passes read it: dy itself, or
// dy routed back through a max pooling (pooled: dy is the pooled gradient) and then through the
// ReLU whose output is relu_y (conv2d_backward's arguments). A fused gradient is never
// materialised: each pass builds an image's planes into its thread's scratch right before it
// reorders them (conv2d_blocked_dy.cpp), bitwise what max_pool2d_backward + relu_backward write.
struct BlockedDy {
  const float* dy = nullptr;
  const float* relu_y = nullptr;
  const PooledGrad* pooled = nullptr;
  bool fused() const { return relu_y != nullptr || pooled != nullptr; }
};
// Planes k in [k0, k1) of image n of g (P*Q floats each, p's output planes) into dst [k][P*Q].
void blocked_dy_planes(const BlockedDy& g, const Conv2dParams& p, int64_t n, int64_t k0,
                       int64_t k1, float* dst);
// Stride-1 backward-data of a fused gradient (g.fused()): conv2d_blocked_backward_data's
// problem and bits, the gradient built per image in the thread's scratch.
void conv2d_blocked_backward_data_fused(const BlockedDy& g, const float* w, float* dx,
                                        const Conv2dParams& p);

// Rows [row0, row0 + nrows) of the padded planes of one image's C channels (src: channel 0 of
// H x W planes), blocked into dst as [cb][row][col][c]: Wp = pad_left + W + pad_right columns
// of VL lanes per row, `plane` floats per channel block; the padding and the channel tail zeros.
void blocked_reorder_rows(const float* src, int64_t C, int64_t H, int64_t W, int64_t row0,
                          int64_t nrows, int64_t pad_top, int64_t pad_left, int64_t Wp,
                          float* dst, int64_t plane);

// The weight gradient's register tile on the active ISA (ocb k blocks x nc (tap, channel)
// columns; conv2d_blocked_wgrad.cpp's rule, never a timing) and its cost per useful FMA.
BlockedTiling blocked_wgrad_tiling(const Conv2dParams& p);
// Whether conv2d_blocked_weight_grad handles p (groups = 1, N, P, Q >= 1, pads >= 0).
bool blocked_wgrad_applicable(const Conv2dParams& p);
// The reduction chunks of p's batch rows (fixed by the shape: part of every sum's order).
int64_t blocked_wgrad_chunks(const Conv2dParams& p);
// dw (K, C, R, S) = sum over n, p, q of dy (N, K, P, Q) * x (N, C, H, W) at the taps: every
// element written, one fixed-order sum for any thread count. db (K,), when not null: the bias
// gradient, bitwise conv2d_backward_bias's sums (per plane the ISA's sum, then over n in order),
// taken from the planes while the pass reads them.
void conv2d_blocked_weight_grad(const BlockedDy& g, const float* x, float* dw, float* db,
                                const Conv2dParams& p);

// Whether conv2d_blocked_backward_data_strided handles p (groups = 1, pads >= 0, any stride,
// sizes >= 1). Finite weights only, as the stride-1 form (the padding's zeros meet weights).
bool blocked_bwd_data_strided_applicable(const Conv2dParams& p);
// dx (N, C, H, W) from dy (N, K, P, Q) and w (K, C, R, S): every element written.
void conv2d_blocked_backward_data_strided(const BlockedDy& g, const float* w, float* dx,
                                          const Conv2dParams& p);

}  // namespace fastcnn::cpu
