// avgpool2d.cpp -- average pooling driver: x (N, C, H, W) -> y (N, C, P, Q) and its gradient
// (arguments checked by common/args.cpp, PyTorch's rules). The divisor of every window is built
// once as a (P, Q) float table (PyTorch's int64 divide_factor converted to float), shared by all
// planes; then a parallel loop over fixed contiguous ranges of the N*C planes, each range handed
// to the active ISA's kernel. Every plane is computed alone in a fixed order, so the bits do not
// depend on the thread count. The backward's per-thread scratch (dy / div of one plane) is
// allocated here, before the parallel region.
#include <vector>

#include "cpu/kernels.h"
#include "cpu/ops.h"
#include "cpu/parallel.h"

namespace fastcnn::cpu {
namespace {

std::vector<float> avg_divisors(const AvgPool2dParams& a) {
  const Pool2dParams& p = a.pool;
  std::vector<float> div(static_cast<size_t>(p.P * p.Q));
  for (int64_t op = 0; op < p.P; ++op) {
    const int64_t hc = avg_pool_count(op, p.H, p.kh, p.stride_h, p.pad_h, a.count_include_pad);
    for (int64_t oq = 0; oq < p.Q; ++oq) {
      const int64_t wc = avg_pool_count(oq, p.W, p.kw, p.stride_w, p.pad_w, a.count_include_pad);
      div[op * p.Q + oq] = static_cast<float>(a.divisor_override != 0 ? a.divisor_override : hc * wc);
    }
  }
  return div;
}

}  // namespace

void avg_pool2d_forward(const float* x, float* y, const AvgPool2dParams& a) {
  const Pool2dParams& p = a.pool;
  const int64_t planes = p.N * p.C, HW = p.H * p.W, PQ = p.P * p.Q;
  if (planes == 0) return;
  const std::vector<float> div = avg_divisors(a);
  const AvgPool2dFwdFn f = kernels().avgpool2d_fwd;
  parallel_for(planes, [&](int, int64_t b, int64_t e) {
    f(x + b * HW, y + b * PQ, div.data(), p, e - b);
  }, threads_for(double(planes) * double(HW + PQ), 1 << 15));
}

void avg_pool2d_backward(const float* dy, float* dx, const AvgPool2dParams& a) {
  const Pool2dParams& p = a.pool;
  const int64_t planes = p.N * p.C, HW = p.H * p.W, PQ = p.P * p.Q;
  if (planes == 0) return;
  const std::vector<float> div = avg_divisors(a);
  const int nt = threads_for(double(planes) * double(HW + PQ), 1 << 15);
  std::vector<float> scratch(static_cast<size_t>(nt) * static_cast<size_t>(PQ));
  const AvgPool2dBwdFn f = kernels().avgpool2d_bwd;
  parallel_for(planes, [&](int t, int64_t b, int64_t e) {
    f(dy + b * PQ, dx + b * HW, div.data(), scratch.data() + t * PQ, p, e - b);
  }, nt);
}

}  // namespace fastcnn::cpu
