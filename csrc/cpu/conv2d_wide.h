// conv2d_wide.h -- the "wide-grid" direct convolution (conv2d_wide.cpp), used by conv2d.cpp for
// the forward and backward-data passes of stride-1 convolutions, the forward pass of strided ones
// with wide windows, and the weight gradients of both.
#pragma once
#include <cstdint>

#include "common/params.h"
#include "cpu/ops.h"

namespace fastcnn::cpu {

// Plane pl (= n*K + k) of the gradient of the pooling's input, from the pooled gradient dy
// (pg.pp's output layout) and pg's indices, into dst (pg.pp.H * pg.pp.W floats), with the ISA's
// maxpool2d_bwd kernel: bitwise what max_pool2d_backward writes for the plane.
void pooled_grad_plane(const PooledGrad& pg, const float* dy, int64_t pl, float* dst);

// One correlation: y (N, K, P, Q) = b + sum over taps of w (K, C/groups, R, S) times x
// (N, C, H, W) zero-padded by pad_* (a negative pad crops), dilated by dil_*, strided by
// stride_*, per group; P = (H + pad_top + pad_bottom - (R-1)*dil_h - 1) / stride_h + 1 (>= 1), Q
// likewise. Contiguous buffers.
struct WideConv {
  const float* x = nullptr;
  const float* w = nullptr;
  const float* b = nullptr;  // (K,) or null
  float* y = nullptr;
  int64_t N = 0, C = 0, H = 0, W = 0, K = 0, R = 0, S = 0, groups = 1;
  int64_t pad_top = 0, pad_left = 0, pad_bottom = 0, pad_right = 0, dil_h = 1, dil_w = 1;
  // > 1: x is read through its stride_h x stride_w phase planes (plain x only: relu_mask and
  // pooled need stride 1); P = (H + pads - (R-1)*dil_h - 1) / stride_h + 1, Q likewise
  int64_t stride_h = 1, stride_w = 1;
  // When set (same layout as x): x is first passed through a ReLU's backward, x where
  // relu_mask > 0 or NaN, else 0 (relu_mask = the ReLU's output).
  const float* relu_mask = nullptr;
  // When set: x is a pooled gradient (pooled->pp's output layout); the planes read are its
  // pooled_grad_plane (the pooling's input layout), produced plane by plane into the thread's
  // scratch.
  const PooledGrad* pooled = nullptr;
  // > 1: that many images side by side in one grid (stride 1 and pads >= 0 only; else 1): the
  // grid rows of a small plane then fill the micro-kernel's NR-column strips (conv2d_route.cpp)
  int64_t imgs = 1;
};

// Whether the forward pass of p (and its backward-data pass) should run on the wide grid.
bool wide_conv_applicable(const Conv2dParams& p);
// Whether the forward pass of p should run on the wide grid: stride 1 (wide_conv_applicable),
// or a larger stride with overlapping windows on the phase planes of the padded input.
bool wide_fwd_applicable(const Conv2dParams& p);
// Whether the weight gradient of p should run on the wide grid: stride 1, or a larger stride
// with overlapping windows (a stride-s convolution is the sum of stride-1 ones over the
// s_h x s_w phase planes of the padded input); at most half of each grid row discarded.
bool wide_wgrad_applicable(const Conv2dParams& p);
// Computes cv (every element of y written), ReLU after the bias when relu != 0.
void wide_correlate(const WideConv& cv, int relu);
// dw (K, C/groups, R, S) of a convolution with wide_wgrad_applicable(p). Returns false, dw then
// being garbage, when x holds a NaN or infinity: the padded grid's discarded columns multiply x
// by zeros of dy, which would spread them where PyTorch's im2col form doesn't.
// relu_y (optional, dy's layout): dy is first passed through the backward of the ReLU whose
// output is relu_y. db (optional): the bias gradient of that same dy.
// pooled (optional): dy is a pooled gradient; the planes read come from pooled_grad_plane.
bool wide_weight_grad(const Conv2dParams& p, const float* dy, const float* relu_y,
                      const PooledGrad* pooled, const float* x, float* dw, float* db);
// No NaN or infinity in v[0:n].
bool all_finite(const float* v, int64_t n);

}  // namespace fastcnn::cpu
