// global_pool2d.cpp -- global average / max pooling drivers: x (N, C, H, W) -> y (N, C) (and the
// max's int64 indices into H*W), and their gradients (arguments checked by common/args.cpp).
// A parallel loop over fixed contiguous ranges of the N*C planes, each handed to the active
// ISA's kernel, which loops over its planes itself (ResNet's 8x8 planes are 64 floats: one call
// per plane would cost as much as the plane). Each plane is reduced alone in a fixed order, so
// the bits do not depend on the thread count. User-given indices of the max's backward are
// checked by the kernel as it goes; a bad one is reported after the parallel region.
#include <atomic>

#include "common/check.h"
#include "cpu/kernels.h"
#include "cpu/ops.h"
#include "cpu/parallel.h"

namespace fastcnn::cpu {
namespace {

int plane_threads(const GlobalPool2dParams& p) {
  return threads_for(double(p.planes()) * double(p.HW() + 1), 1 << 15);
}

}  // namespace

void global_avg_pool2d_forward(const float* x, float* y, const GlobalPool2dParams& p) {
  const GlobalAvgPool2dFwdFn f = kernels().global_avgpool2d_fwd;
  const int64_t HW = p.HW();
  parallel_for(p.planes(), [&](int, int64_t b, int64_t e) { f(x + b * HW, y + b, e - b, HW); },
               plane_threads(p));
}

void global_avg_pool2d_backward(const float* dy, float* dx, const GlobalPool2dParams& p) {
  const GlobalAvgPool2dBwdFn f = kernels().global_avgpool2d_bwd;
  const int64_t HW = p.HW();
  parallel_for(p.planes(), [&](int, int64_t b, int64_t e) { f(dy + b, dx + b * HW, e - b, HW); },
               plane_threads(p));
}

void global_max_pool2d_forward(const float* x, float* y, int64_t* idx,
                               const GlobalPool2dParams& p) {
  const GlobalMaxPool2dFwdFn f = kernels().global_maxpool2d_fwd;
  const int64_t HW = p.HW();
  parallel_for(p.planes(), [&](int, int64_t b, int64_t e) {
    f(x + b * HW, y + b, idx ? idx + b : nullptr, e - b, HW);
  }, plane_threads(p));
}

void global_max_pool2d_backward(const float* dy, const int64_t* idx, float* dx,
                                const GlobalPool2dParams& p) {
  const GlobalMaxPool2dBwdFn f = kernels().global_maxpool2d_bwd;
  const int64_t HW = p.HW();
  std::atomic<bool> ok{true};
  parallel_for(p.planes(), [&](int, int64_t b, int64_t e) {
    if (!f(dy + b, idx + b, dx + b * HW, e - b, HW)) ok.store(false, std::memory_order_relaxed);
  }, plane_threads(p));
  if (ok.load()) return;
  for (int64_t i = 0; i < p.planes(); ++i)
    FASTCNN_CHECK(idx[i] >= 0 && idx[i] < HW, "global_max_pool2d_backward: indices[", i / p.C,
                  ", ", i % p.C, "] = ", idx[i], " is outside the input plane of ", p.H, " x ",
                  p.W, " = ", HW, " elements");
}

}  // namespace fastcnn::cpu
