// args.h -- the argument checks of every op: the one place user errors in shapes and options
// are found, for both devices (fastcnn._cpu and fastcnn._cuda call the same functions, so the
// messages are the same). Each throws std::invalid_argument (ValueError in Python) naming the
// op, the argument, the shapes and what was expected, and returns the validated geometry.
// Shapes only: checks of values in memory (class labels, user-given pooling indices) are the
// devices' own (cpu/ops.h: check_class_labels, check_max_pool2d_indices; the CUDA kernels
// validate on the device). Device-neutral: no CPU kernels, no CUDA, no Python.
#pragma once
#include <cstdint>
#include <string>

#include "common/check.h"
#include "common/params.h"

namespace fastcnn {

// ---- conv2d ---------------------------------------------------------------------------------
// x (N, C, H, W), w (K, C/groups, R, S), b (K,) or none; pads are (top, left, bottom, right).
Conv2dParams check_conv2d_args(const Shape& x, const Shape& w, const Shape* b, int64_t stride_h,
                               int64_t stride_w, int64_t pad_top, int64_t pad_left,
                               int64_t pad_bottom, int64_t pad_right, int64_t dil_h, int64_t dil_w,
                               int64_t groups);
// dy must be (N, K, P, Q) of the forward described by p.
void check_conv2d_grad(const Shape& dy, const Conv2dParams& p);
// The pooled gradient of a fused conv2d_backward: dy is the gradient of max_pool2d(conv output
// (N, K, P, Q); kernel kh x kw, stride sh x sw, padding ph x pw, no dilation, ceil_mode).
// Returns the pooling's geometry (input (N, K, P, Q) -> dy's shape).
Pool2dParams check_conv2d_pooled_grad(const Shape& dy, const Conv2dParams& p, int64_t kh,
                                      int64_t kw, int64_t sh, int64_t sw, int64_t ph, int64_t pw,
                                      bool ceil_mode);

// ---- max_pool2d -----------------------------------------------------------------------------
// x (N, C, H, W); PyTorch's rules for kernel_size, stride, padding, dilation and ceil_mode.
Pool2dParams check_max_pool2d_args(const Shape& x, int64_t kh, int64_t kw, int64_t sh, int64_t sw,
                                   int64_t ph, int64_t pw, int64_t dh, int64_t dw, bool ceil_mode);
// dy must be (N, C, P, Q) of the forward described by p.
void check_max_pool2d_grad(const Shape& dy, const Pool2dParams& p);
// The pooling indices (argument `name` of `op`) must have dy's shape.
void check_indices_shape(const Shape& indices, const Shape& dy, const char* op, const char* name);

// ---- linear ---------------------------------------------------------------------------------
// x (N, in), w (out, in), b (out,) or none.
LinearParams check_linear_args(const Shape& x, const Shape& w, const Shape* b);
// dy must be (N, out).
void check_linear_grad(const Shape& dy, const LinearParams& p);

// ---- softmax / cross-entropy ----------------------------------------------------------------
// x: at least 1-D; the softmax runs over the last axis (rows = numel / L, 0 when L == 0).
// log: log_softmax (names the op in messages).
RowsParams check_softmax_args(const Shape& x, bool log);
// logits (N, classes), classes >= 1.
RowsParams check_cross_entropy_logits(const Shape& logits);
// labels: class ids (N,) when class_ids, else probabilities of the logits' shape.
void check_cross_entropy_labels(const Shape& labels, const Shape& logits, bool class_ids);

// ---- normalization family (batch_norm) -------------------------------------------------------
// x (N, C), (N, C, L) or (N, C, H, W); weight / bias / running_mean / running_var: (C,) each when
// given (the running statistics both or neither, required when !training); training needs more
// than one value per channel (N*spatial != 1, PyTorch's rule); eps >= 0, momentum finite.
BatchNormParams check_batch_norm_args(const Shape& x, const Shape* weight, const Shape* bias,
                                      const Shape* running_mean, const Shape* running_var,
                                      bool training, double momentum, double eps);
// The backward: dy of x's shape; weight (C,) or none; mean and invstd (C,).
BatchNormParams check_batch_norm_backward_args(const Shape& dy, const Shape& x,
                                               const Shape* weight, const Shape& mean,
                                               const Shape& invstd, bool training);
// ---- pooling family: avg_pool2d, global_avg_pool2d, global_max_pool2d (issue 17) ----------
// x (N, C, H, W); PyTorch's rules for kernel_size, stride, padding (<= kernel/2), ceil_mode and
// divisor_override (nonzero; has_divisor false: none). No dilation.
AvgPool2dParams check_avg_pool2d_args(const Shape& x, int64_t kh, int64_t kw, int64_t sh,
                                      int64_t sw, int64_t ph, int64_t pw, bool ceil_mode,
                                      bool count_include_pad, bool has_divisor,
                                      int64_t divisor_override, const char* op = "avg_pool2d");
// dy must be (N, C, P, Q) of the forward described by p.
void check_avg_pool2d_grad(const Shape& dy, const AvgPool2dParams& p);
// x (N, C, H, W) with C, H, W >= 1 (op: "global_avg_pool2d", "global_max_pool2d_backward", ...).
GlobalPool2dParams check_global_pool2d_args(const Shape& x, const char* op);
// dy must be (N, C).
void check_global_pool2d_grad(const Shape& dy, const GlobalPool2dParams& p, const char* op);
// ---- activation family (issue 17) ------------------------------------------------------------
// gelu's approximate= ("none" | "tanh", PyTorch's names): true for the tanh form; ValueError
// naming op and the choices otherwise.
bool check_gelu_approximate(const std::string& approximate, const char* op);
// An activation's gradient pair: dy must have the shape of the forward tensor `name` (x or y).
void check_activation_grad(const Shape& dy, const Shape& t, const char* op, const char* name);

}  // namespace fastcnn
