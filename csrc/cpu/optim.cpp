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

void sgd_update(float* p, const float* g, float* buf, int64_t n, float lr, float momentum,
                float wd, bool nesterov, bool first) {
  parallel_for(n, [&](int, int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      float gi = g[i];
      const float pi = p[i];
      if (wd != 0.0f) gi = gi + wd * pi;
      if (momentum != 0.0f) {
        const float bi = first ? gi : buf[i] * momentum + gi;
        buf[i] = bi;
        gi = nesterov ? gi + momentum * bi : bi;
      }
      p[i] = pi - lr * gi;
    }
  }, threads_for(double(n), 1 << 16));
}

void adam_update(float* p, const float* g, float* m, float* v, int64_t n, const AdamScalars& s) {
  parallel_for(n, [&](int, int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      float gi = g[i], pi = p[i];
      if (s.has_decay) {
        pi = pi * s.decay;
      } else if (s.has_l2) {
        gi = gi + s.l2 * pi;
      }
      const float mi = m[i] * s.beta1 + s.one_minus_beta1 * gi;
      const float vi = v[i] * s.beta2 + s.one_minus_beta2 * (gi * gi);
      m[i] = mi;
      v[i] = vi;
      const float denom = std::sqrt(vi) / s.sqrt_bc2 + s.eps;
      p[i] = pi - s.step_size * (mi / denom);
    }
  }, threads_for(double(n), 1 << 16));
}

}  // namespace fastcnn::cpu
