// optim.cpp -- in-place optimizer updates on the CPU, elementwise over a parameter (n floats):
// the twins of csrc/cuda/optim.cu, with the same formulas (fastcnn.optimizers):
//   SGD:   g = grad + wd*p (wd != 0);  buf = g (first step) | momentum*buf + g;
//          g = g + momentum*buf (nesterov) | buf (momentum != 0);  p -= lr*g
//   Adam:  p *= decay (AdamW) | g = grad + l2*p (Adam, l2 != 0)
//          m = beta1*m + (1 - beta1)*g;  v = beta2*v + (1 - beta2)*g*g
//          p -= step_size * m / (sqrt(v) / sqrt_bc2 + eps)
// Every operation is one IEEE float32 operation in the NumPy code's order (this file is built
// for baseline x86-64, so nothing is contracted into FMAs): bit-identical to the NumPy
// formulas and to the GPU, in one pass over memory with no temporaries (NumPy needs 3-9).
#include <cmath>

#include "cpu/ops.h"
#include "cpu/parallel.h"

namespace fastcnn::cpu {
namespace {

// One range of the SGD update, the options fixed at compile time so the loop has no branches
// and vectorises (MODE 0: no momentum, 1: momentum, 2: Nesterov; FIRST: buf = g).
template <bool WD, int MODE, bool FIRST>
void sgd_range(float* __restrict__ p, const float* __restrict__ g, float* __restrict__ buf,
               int64_t b, int64_t e, float lr, float momentum, float wd) {
  for (int64_t i = b; i < e; ++i) {
    float gi = g[i];
    const float pi = p[i];
    if (WD) gi = gi + wd * pi;
    if (MODE != 0) {
      const float bi = FIRST ? gi : buf[i] * momentum + gi;
      buf[i] = bi;
      gi = MODE == 2 ? gi + momentum * bi : bi;
    }
    p[i] = pi - lr * gi;
  }
}

template <bool WD, int MODE>
void sgd_range_first(bool first, float* p, const float* g, float* buf, int64_t b, int64_t e,
                     float lr, float momentum, float wd) {
  if (first) sgd_range<WD, MODE, true>(p, g, buf, b, e, lr, momentum, wd);
  else sgd_range<WD, MODE, false>(p, g, buf, b, e, lr, momentum, wd);
}

template <bool WD>
void sgd_range_mode(int mode, bool first, float* p, const float* g, float* buf, int64_t b,
                    int64_t e, float lr, float momentum, float wd) {
  if (mode == 0) sgd_range<WD, 0, false>(p, g, buf, b, e, lr, momentum, wd);
  else if (mode == 1) sgd_range_first<WD, 1>(first, p, g, buf, b, e, lr, momentum, wd);
  else sgd_range_first<WD, 2>(first, p, g, buf, b, e, lr, momentum, wd);
}

// One range of the Adam update (DECAY: AdamW's decoupled decay; L2: Adam's weight decay).
template <bool DECAY, bool L2>
void adam_range(float* __restrict__ p, const float* __restrict__ g, float* __restrict__ m,
                float* __restrict__ v, int64_t b, int64_t e, const AdamScalars& s) {
  const float decay = s.decay, l2 = s.l2, b1 = s.beta1, omb1 = s.one_minus_beta1;
  const float b2 = s.beta2, omb2 = s.one_minus_beta2, sq = s.sqrt_bc2, eps = s.eps;
  const float step = s.step_size;
  for (int64_t i = b; i < e; ++i) {
    float gi = g[i], pi = p[i];
    if (DECAY) pi = pi * decay;
    if (L2) gi = gi + l2 * pi;
    const float mi = m[i] * b1 + omb1 * gi;
    const float vi = v[i] * b2 + omb2 * (gi * gi);
    m[i] = mi;
    v[i] = vi;
    const float denom = std::sqrt(vi) / sq + eps;
    p[i] = pi - step * (mi / denom);
  }
}

}  // namespace

void sgd_update(float* p, const float* g, float* buf, int64_t n, float lr, float momentum,
                float wd, bool nesterov, bool first) {
  const int mode = momentum == 0.0f ? 0 : (nesterov ? 2 : 1);
  parallel_for(n, [&](int, int64_t b, int64_t e) {
    if (wd != 0.0f) sgd_range_mode<true>(mode, first, p, g, buf, b, e, lr, momentum, wd);
    else sgd_range_mode<false>(mode, first, p, g, buf, b, e, lr, momentum, wd);
  }, threads_for(double(n), 1 << 16));
}

void adam_update(float* p, const float* g, float* m, float* v, int64_t n, const AdamScalars& s) {
  parallel_for(n, [&](int, int64_t b, int64_t e) {
    if (s.has_decay) adam_range<true, false>(p, g, m, v, b, e, s);
    else if (s.has_l2) adam_range<false, true>(p, g, m, v, b, e, s);
    else adam_range<false, false>(p, g, m, v, b, e, s);
  }, threads_for(double(n), 1 << 16));
}

}  // namespace fastcnn::cpu
