// args.cpp -- the argument checks of every op (args.h): shapes and options, device-neutral.
// Messages follow one pattern: "<op>: <argument> <what is wrong>, got <value>" or "<op>: <a> has
// shape X but <b> ... gives Y"; tests match them, so change them only with the tests.
#include "common/args.h"

#include <algorithm>

namespace fastcnn {

Conv2dParams check_conv2d_args(const Shape& x, const Shape& w, const Shape* b, int64_t stride_h,
                               int64_t stride_w, int64_t pad_top, int64_t pad_left,
                               int64_t pad_bottom, int64_t pad_right, int64_t dil_h, int64_t dil_w,
                               int64_t groups) {
  FASTCNN_CHECK(x.size() == 4, "conv2d: x must be 4-D (N, C, H, W), got shape ", shape_str(x));
  FASTCNN_CHECK(w.size() == 4, "conv2d: w must be 4-D (K, C/groups, R, S), got shape ",
                shape_str(w));
  FASTCNN_CHECK(stride_h >= 1 && stride_w >= 1, "conv2d: stride must be >= 1, got (", stride_h,
                ", ", stride_w, ")");
  FASTCNN_CHECK(dil_h >= 1 && dil_w >= 1, "conv2d: dilation must be >= 1, got (", dil_h, ", ",
                dil_w, ")");
  FASTCNN_CHECK(pad_top >= 0 && pad_left >= 0 && pad_bottom >= 0 && pad_right >= 0,
                "conv2d: padding must be >= 0, got (top, left, bottom, right) = (", pad_top, ", ",
                pad_left, ", ", pad_bottom, ", ", pad_right, ")");
  FASTCNN_CHECK(groups >= 1, "conv2d: groups must be >= 1, got ", groups);
  constexpr int64_t kMaxDim = int64_t{1} << 31;
  for (int64_t v : {stride_h, stride_w, dil_h, dil_w, pad_top, pad_left, pad_bottom, pad_right})
    FASTCNN_CHECK(v < kMaxDim, "conv2d: stride, padding and dilation must be < 2^31, got ", v);
  Conv2dParams p;
  p.N = x[0], p.C = x[1], p.H = x[2], p.W = x[3];
  p.K = w[0], p.R = w[2], p.S = w[3];
  FASTCNN_CHECK(p.C >= 1 && p.H >= 1 && p.W >= 1, "conv2d: x of shape ", shape_str(x),
                " has an empty channel or spatial dimension");
  FASTCNN_CHECK(p.K >= 1 && p.R >= 1 && p.S >= 1 && w[1] >= 1, "conv2d: w of shape ",
                shape_str(w), " has an empty dimension");
  FASTCNN_CHECK(p.C % groups == 0, "conv2d: groups=", groups, " must divide the ", p.C,
                " input channels of x ", shape_str(x));
  FASTCNN_CHECK(p.K % groups == 0, "conv2d: groups=", groups, " must divide the ", p.K,
                " output channels of w ", shape_str(w));
  FASTCNN_CHECK(w[1] == p.C / groups, "conv2d: w has shape ", shape_str(w), " but x ",
                shape_str(x), " with groups=", groups, " needs w.shape[1] == ", p.C / groups);
  if (b) {
    FASTCNN_CHECK(b->size() == 1 && (*b)[0] == p.K, "conv2d: b must have shape (", p.K,
                  ",) to match w ", shape_str(w), ", got ", shape_str(*b));
  }
  p.stride_h = stride_h, p.stride_w = stride_w, p.dil_h = dil_h, p.dil_w = dil_w;
  p.pad_top = pad_top, p.pad_left = pad_left, p.pad_bottom = pad_bottom, p.pad_right = pad_right;
  p.groups = groups;
  p.P = conv_out_size(p.H, p.R, stride_h, pad_top, pad_bottom, dil_h, "the height");
  p.Q = conv_out_size(p.W, p.S, stride_w, pad_left, pad_right, dil_w, "the width");
  // every size product the kernels form must fit comfortably in int64 (an empty batch counts as
  // one image: the output's strides must be describable even when it holds no element)
  checked_numel({std::max<int64_t>(p.N, 1), p.K, p.P, p.Q}, "conv2d output");
  checked_numel({p.N, p.C, p.H, p.W}, "conv2d input");
  checked_numel({p.K, w[1], p.R, p.S}, "conv2d weight");
  checked_numel({p.N, p.P, p.Q, p.R, p.S}, "conv2d reduction");
  return p;
}

void check_conv2d_grad(const Shape& dy, const Conv2dParams& p) {
  const Shape want{p.N, p.K, p.P, p.Q};
  FASTCNN_CHECK(dy == want, "conv2d_backward: dy has shape ", shape_str(dy),
                " but the forward pass for these x, w and options gives ", shape_str(want));
}

Pool2dParams check_conv2d_pooled_grad(const Shape& dy, const Conv2dParams& p, int64_t kh,
                                      int64_t kw, int64_t sh, int64_t sw, int64_t ph, int64_t pw,
                                      bool ceil_mode) {
  const Shape out{p.N, p.K, p.P, p.Q};
  const Pool2dParams pp = check_max_pool2d_args(out, kh, kw, sh, sw, ph, pw, 1, 1, ceil_mode);
  const Shape pooled{p.N, p.K, pp.P, pp.Q};
  FASTCNN_CHECK(dy == pooled, "conv2d_backward: dy has shape ", shape_str(dy),
                " but max pooling the convolution's output ", shape_str(out),
                " with these pool options gives ", shape_str(pooled));
  return pp;
}

Pool2dParams check_max_pool2d_args(const Shape& x, int64_t kh, int64_t kw, int64_t sh, int64_t sw,
                                   int64_t ph, int64_t pw, int64_t dh, int64_t dw,
                                   bool ceil_mode) {
  FASTCNN_CHECK(x.size() == 4, "max_pool2d: x must be 4-D (N, C, H, W), got shape ",
                shape_str(x));
  FASTCNN_CHECK(kh >= 1 && kw >= 1, "max_pool2d: kernel_size must be >= 1, got (", kh, ", ", kw,
                ")");
  FASTCNN_CHECK(sh >= 1 && sw >= 1, "max_pool2d: stride must be >= 1, got (", sh, ", ", sw, ")");
  FASTCNN_CHECK(dh >= 1 && dw >= 1, "max_pool2d: dilation must be >= 1, got (", dh, ", ", dw,
                ")");
  FASTCNN_CHECK(ph >= 0 && pw >= 0, "max_pool2d: padding must be >= 0, got (", ph, ", ", pw, ")");
  constexpr int64_t kMaxDim = int64_t{1} << 31;
  for (int64_t v : {kh, kw, sh, sw, ph, pw, dh, dw})
    FASTCNN_CHECK(v < kMaxDim, "max_pool2d: kernel_size, stride, padding and dilation must be "
                  "< 2^31, got ", v);
  FASTCNN_CHECK(ph <= kh / 2 && pw <= kw / 2, "max_pool2d: padding (", ph, ", ", pw,
                ") must be at most half the kernel_size (", kh, ", ", kw, ")");
  Pool2dParams p;
  p.N = x[0], p.C = x[1], p.H = x[2], p.W = x[3];
  FASTCNN_CHECK(p.C >= 1 && p.H >= 1 && p.W >= 1, "max_pool2d: x of shape ", shape_str(x),
                " has an empty channel or spatial dimension");
  p.kh = kh, p.kw = kw, p.stride_h = sh, p.stride_w = sw, p.pad_h = ph, p.pad_w = pw;
  p.dil_h = dh, p.dil_w = dw, p.ceil_mode = ceil_mode;
  checked_mul(dh, kh, "max_pool2d window");
  checked_mul(dw, kw, "max_pool2d window");
  p.P = pool_out_size(p.H, kh, sh, ph, dh, ceil_mode, "the height");
  p.Q = pool_out_size(p.W, kw, sw, pw, dw, ceil_mode, "the width");
  FASTCNN_CHECK(p.P >= 1 && p.Q >= 1, "max_pool2d: output size (", p.P, ", ", p.Q,
                ") is too small for x ", shape_str(x));
  checked_numel({std::max<int64_t>(p.N, 1), p.C, p.P, p.Q}, "max_pool2d output");
  return p;
}

void check_max_pool2d_grad(const Shape& dy, const Pool2dParams& p) {
  const Shape want{p.N, p.C, p.P, p.Q};
  FASTCNN_CHECK(dy == want, "max_pool2d_backward: dy has shape ", shape_str(dy),
                " but the forward pass for this x and these options gives ", shape_str(want));
}

void check_indices_shape(const Shape& indices, const Shape& dy, const char* op, const char* name) {
  FASTCNN_CHECK(indices == dy, op, ": ", name, " has shape ", shape_str(indices),
                " but dy has shape ", shape_str(dy));
}

LinearParams check_linear_args(const Shape& x, const Shape& w, const Shape* b) {
  FASTCNN_CHECK(x.size() == 2, "linear: x must be 2-D (N, in_features), got shape ",
                shape_str(x));
  FASTCNN_CHECK(w.size() == 2, "linear: w must be 2-D (out_features, in_features), got shape ",
                shape_str(w));
  FASTCNN_CHECK(x[1] == w[1], "linear: x has shape ", shape_str(x), " and w has shape ",
                shape_str(w), ": expected x.shape[1] == w.shape[1]");
  FASTCNN_CHECK(w[0] >= 1 && w[1] >= 1, "linear: w of shape ", shape_str(w),
                " has an empty dimension");
  if (b) {
    FASTCNN_CHECK(b->size() == 1 && (*b)[0] == w[0], "linear: b must have shape (", w[0],
                  ",) to match w ", shape_str(w), ", got ", shape_str(*b));
  }
  LinearParams p;
  p.N = x[0], p.in = x[1], p.out = w[0];
  checked_mul(p.N, p.out, "linear output");
  return p;
}

void check_linear_grad(const Shape& dy, const LinearParams& p) {
  const Shape want{p.N, p.out};
  FASTCNN_CHECK(dy == want, "linear_backward: dy has shape ", shape_str(dy),
                " but the forward pass for these x and w gives ", shape_str(want));
}

RowsParams check_softmax_args(const Shape& x, bool log) {
  const char* op = log ? "log_softmax" : "softmax";
  FASTCNN_CHECK(!x.empty(), op, ": x must have at least one dimension, got a 0-d array");
  const int64_t n = checked_numel(x, op);
  RowsParams r;
  r.L = x.back();
  r.rows = r.L > 0 ? n / r.L : 0;
  return r;
}

RowsParams check_cross_entropy_logits(const Shape& logits) {
  FASTCNN_CHECK(logits.size() == 2, "cross_entropy: logits must be 2-D (N, classes), got shape ",
                shape_str(logits));
  FASTCNN_CHECK(logits[1] >= 1, "cross_entropy: logits of shape ", shape_str(logits),
                " has no classes");
  RowsParams r;
  r.rows = logits[0], r.L = logits[1];
  return r;
}

void check_cross_entropy_labels(const Shape& labels, const Shape& logits, bool class_ids) {
  if (class_ids) {
    FASTCNN_CHECK(labels.size() == 1 && labels[0] == logits[0],
                  "cross_entropy: integer labels must have shape (", logits[0],
                  ",) to match logits ", shape_str(logits), ", got ", shape_str(labels));
  } else {
    FASTCNN_CHECK(labels == logits, "cross_entropy: probability labels have shape ",
                  shape_str(labels), " but logits have shape ", shape_str(logits),
                  ": expected the same shape (or integer class ids of shape (N,))");
  }
}

// ---- normalization family (batch_norm) -------------------------------------------------------

namespace {

BatchNormParams batch_norm_shape(const Shape& x, const char* op) {
  FASTCNN_CHECK(x.size() >= 2 && x.size() <= 4, op,
                ": x must be 2-D (N, C), 3-D (N, C, L) or 4-D (N, C, H, W), got shape ",
                shape_str(x));
  BatchNormParams p;
  p.N = x[0], p.C = x[1];
  p.S = 1;
  for (size_t i = 2; i < x.size(); ++i) p.S = checked_mul(p.S, x[i], "batch_norm input");
  checked_numel(x, "batch_norm input");
  return p;
}

void check_per_channel(const Shape* a, const char* name, const Shape& x, int64_t C,
                       const char* op) {
  if (!a) return;
  FASTCNN_CHECK(a->size() == 1 && (*a)[0] == C, op, ": ", name, " must have shape (", C,
                ",) (one value per channel of x ", shape_str(x), "), got ", shape_str(*a));
}

}  // namespace

BatchNormParams check_batch_norm_args(const Shape& x, const Shape* weight, const Shape* bias,
                                      const Shape* running_mean, const Shape* running_var,
                                      bool training, double momentum, double eps) {
  const char* op = "batch_norm";
  BatchNormParams p = batch_norm_shape(x, op);
  check_per_channel(weight, "weight", x, p.C, op);
  check_per_channel(bias, "bias", x, p.C, op);
  check_per_channel(running_mean, "running_mean", x, p.C, op);
  check_per_channel(running_var, "running_var", x, p.C, op);
  FASTCNN_CHECK((running_mean == nullptr) == (running_var == nullptr), op,
                ": give both running_mean and running_var or neither");
  FASTCNN_CHECK(training || running_mean, op,
                ": training=False normalises with running_mean and running_var; pass them (or "
                "training=True)");
  FASTCNN_CHECK(!training || p.M() != 1, op,
                ": expected more than 1 value per channel when training, got x of shape ",
                shape_str(x), " (N * spatial = 1); use a larger batch or training=False");
  FASTCNN_CHECK(eps >= 0.0 && eps < 1e300, op, ": eps must be finite and >= 0, got ", eps);
  FASTCNN_CHECK(momentum > -1e300 && momentum < 1e300, op, ": momentum must be finite, got ",
                momentum);
  p.training = training, p.momentum = momentum, p.eps = eps;
  return p;
}

BatchNormParams check_batch_norm_backward_args(const Shape& dy, const Shape& x,
                                               const Shape* weight, const Shape& mean,
                                               const Shape& invstd, bool training) {
  const char* op = "batch_norm_backward";
  BatchNormParams p = batch_norm_shape(x, op);
  FASTCNN_CHECK(dy == x, op, ": dy has shape ", shape_str(dy), " but x has shape ", shape_str(x),
                ": expected the same shape");
  check_per_channel(weight, "weight", x, p.C, op);
  check_per_channel(&mean, "mean", x, p.C, op);
  check_per_channel(&invstd, "invstd", x, p.C, op);
  p.training = training;
  return p;
}

// ---- pooling family: avg_pool2d, global_avg_pool2d, global_max_pool2d (issue 17) ----------

AvgPool2dParams check_avg_pool2d_args(const Shape& x, int64_t kh, int64_t kw, int64_t sh,
                                      int64_t sw, int64_t ph, int64_t pw, bool ceil_mode,
                                      bool count_include_pad, bool has_divisor,
                                      int64_t divisor_override, const char* op) {
  FASTCNN_CHECK(x.size() == 4, op, ": x must be 4-D (N, C, H, W), got shape ", shape_str(x));
  FASTCNN_CHECK(kh >= 1 && kw >= 1, op, ": kernel_size must be >= 1, got (", kh, ", ", kw, ")");
  FASTCNN_CHECK(sh >= 1 && sw >= 1, op, ": stride must be >= 1, got (", sh, ", ", sw, ")");
  FASTCNN_CHECK(ph >= 0 && pw >= 0, op, ": padding must be >= 0, got (", ph, ", ", pw, ")");
  constexpr int64_t kMaxDim = int64_t{1} << 31;
  for (int64_t v : {kh, kw, sh, sw, ph, pw})
    FASTCNN_CHECK(v < kMaxDim, op, ": kernel_size, stride and padding must be < 2^31, got ", v);
  FASTCNN_CHECK(ph <= kh / 2 && pw <= kw / 2, op, ": padding (", ph, ", ", pw,
                ") must be at most half the kernel_size (", kh, ", ", kw, ")");
  FASTCNN_CHECK(!has_divisor || divisor_override != 0, op,
                ": divisor_override must not be 0 (None: the window's size)");
  FASTCNN_CHECK(!has_divisor || (divisor_override < kMaxDim && divisor_override > -kMaxDim), op,
                ": divisor_override must lie in (-2^31, 2^31), got ", divisor_override);
  FASTCNN_CHECK(x[1] >= 1 && x[2] >= 1 && x[3] >= 1, op, ": x of shape ", shape_str(x),
                " has an empty channel or spatial dimension");
  FASTCNN_CHECK(x[2] + 2 * ph >= kh && x[3] + 2 * pw >= kw, op, ": the window (", kh, ", ", kw,
                ") is larger than the padded input (", x[2], " + 2*", ph, ", ", x[3], " + 2*", pw,
                ")");
  AvgPool2dParams a;
  Pool2dParams& p = a.pool;
  p.N = x[0], p.C = x[1], p.H = x[2], p.W = x[3];
  p.kh = kh, p.kw = kw, p.stride_h = sh, p.stride_w = sw, p.pad_h = ph, p.pad_w = pw;
  p.dil_h = 1, p.dil_w = 1, p.ceil_mode = ceil_mode;
  p.P = pool_out_size(p.H, kh, sh, ph, 1, ceil_mode, "the height");
  p.Q = pool_out_size(p.W, kw, sw, pw, 1, ceil_mode, "the width");
  checked_numel({std::max<int64_t>(p.N, 1), p.C, p.P, p.Q}, "avg_pool2d output");
  checked_numel({p.N, p.C, p.H, p.W}, "avg_pool2d input");
  a.count_include_pad = count_include_pad;
  a.divisor_override = has_divisor ? divisor_override : 0;
  return a;
}

void check_avg_pool2d_grad(const Shape& dy, const AvgPool2dParams& a) {
  const Pool2dParams& p = a.pool;
  const Shape want{p.N, p.C, p.P, p.Q};
  FASTCNN_CHECK(dy == want, "avg_pool2d_backward: dy has shape ", shape_str(dy),
                " but the forward pass for this x and these options gives ", shape_str(want));
}

GlobalPool2dParams check_global_pool2d_args(const Shape& x, const char* op) {
  FASTCNN_CHECK(x.size() == 4, op, ": x must be 4-D (N, C, H, W), got shape ", shape_str(x));
  FASTCNN_CHECK(x[1] >= 1 && x[2] >= 1 && x[3] >= 1, op, ": x of shape ", shape_str(x),
                " has an empty channel or spatial dimension");
  GlobalPool2dParams p;
  p.N = x[0], p.C = x[1], p.H = x[2], p.W = x[3];
  checked_numel({std::max<int64_t>(p.N, 1), p.C, p.H, p.W}, op);
  return p;
}

void check_global_pool2d_grad(const Shape& dy, const GlobalPool2dParams& p, const char* op) {
  const Shape want{p.N, p.C};
  FASTCNN_CHECK(dy == want, op, ": dy has shape ", shape_str(dy),
                " but the forward pass for this x gives ", shape_str(want));
}

// ---- activation family (issue 17) ------------------------------------------------------------
bool check_gelu_approximate(const std::string& approximate, const char* op) {
  FASTCNN_CHECK(approximate == "none" || approximate == "tanh", op,
                ": approximate must be 'none' or 'tanh', got '", approximate, "'");
  return approximate == "tanh";
}

void check_activation_grad(const Shape& dy, const Shape& t, const char* op, const char* name) {
  FASTCNN_CHECK(dy == t, op, ": dy has shape ", shape_str(dy), " but ", name, " has shape ",
                shape_str(t), ": expected the same shape");
}

}  // namespace fastcnn
