// pool2d.cpp -- max pooling driver: argument checks (PyTorch's rules) and a parallel loop over
// the N*C planes, each pooled by the active ISA's kernel, which records argmax indices for the
// backward pass. Backward scatters dy through the indices plane by plane (deterministic), and
// checks the indices as it goes.
#include <algorithm>
#include <atomic>

#include "cpu/kernels.h"
#include "cpu/ops.h"
#include "cpu/parallel.h"

namespace fastcnn::cpu {

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

void check_max_pool2d_indices(const int64_t* idx, const Pool2dParams& p) {
  const int64_t total = p.N * p.C * p.P * p.Q, HW = p.H * p.W;
  std::atomic<bool> bad{false};
  parallel_for(total, [&](int, int64_t b, int64_t e) {
    bool out = false;  // a branch-free scan the compiler vectorises
    const uint64_t hw = static_cast<uint64_t>(HW);
    for (int64_t i = b; i < e; ++i) out |= static_cast<uint64_t>(idx[i]) >= hw;
    if (out) bad.store(true, std::memory_order_relaxed);
  }, threads_for(double(total), 1 << 16));
  if (!bad.load()) return;
  for (int64_t i = 0; i < total; ++i) {
    FASTCNN_CHECK(idx[i] >= 0 && idx[i] < HW, "max_pool2d_backward: indices[", i, "] = ", idx[i],
                  " is outside the input plane of ", p.H, " x ", p.W, " = ", HW, " elements");
  }
}

void max_pool2d_forward(const float* x, float* y, int64_t* idx, const Pool2dParams& p) {
  const MaxPoolFwdFn f = kernels().maxpool_fwd;
  const int64_t HW = p.H * p.W, PQ = p.P * p.Q;
  parallel_for(p.N * p.C, [&](int, int64_t b, int64_t e) {
    for (int64_t pl = b; pl < e; ++pl) f(x + pl * HW, y + pl * PQ, idx ? idx + pl * PQ : nullptr, p);
  }, threads_for(double(p.N * p.C) * double(HW + PQ), 1 << 15));
}

bool max_pool2d_backward(const float* dy, const int64_t* idx, float* dx, const Pool2dParams& p) {
  const MaxPoolBwdFn f = kernels().maxpool_bwd;
  const int64_t HW = p.H * p.W, PQ = p.P * p.Q;
  std::atomic<bool> ok{true};
  parallel_for(p.N * p.C, [&](int, int64_t b, int64_t e) {
    bool all = true;
    for (int64_t pl = b; pl < e; ++pl) all &= f(dy + pl * PQ, idx + pl * PQ, dx + pl * HW, p);
    if (!all) ok.store(false, std::memory_order_relaxed);
  }, threads_for(double(p.N * p.C) * double(HW + PQ), 1 << 15));
  return ok.load();
}

}  // namespace fastcnn::cpu
