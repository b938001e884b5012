// maxpool2d.cpp -- max pooling driver: x (N, C, H, W) -> y, idx (N, C, P, Q) (arguments checked
// by common/args.cpp, PyTorch's rules). A parallel loop over the N*C planes, each pooled by the
// active ISA's kernel, which records argmax indices for the backward pass. Backward scatters dy
// through the indices plane by plane (deterministic), and checks the indices as it goes; user
// indices are checked here (check_max_pool2d_indices: a parallel scan of host memory).
#include <atomic>

#include "cpu/kernels.h"
#include "cpu/ops.h"
#include "cpu/parallel.h"

namespace fastcnn::cpu {

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
  const MaxPool2dFwdFn f = kernels().maxpool2d_fwd;
  const int64_t HW = p.H * p.W, PQ = p.P * p.Q;
  parallel_for(p.N * p.C, [&](int, int64_t b, int64_t e) {
    for (int64_t pl = b; pl < e; ++pl) f(x + pl * HW, y + pl * PQ, idx ? idx + pl * PQ : nullptr, p);
  }, threads_for(double(p.N * p.C) * double(HW + PQ), 1 << 15));
}

bool max_pool2d_backward(const float* dy, const int64_t* idx, float* dx, const Pool2dParams& p) {
  const MaxPool2dBwdFn f = kernels().maxpool2d_bwd;
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
