// avgpool2d.cpp (generic) -- 2-D average pooling forward and backward on `planes` (n, c) planes,
// portable; the oracle the SIMD files are tested against.
//   avgpool2d_fwd: x (planes, H, W) -> y (planes, P, Q)
//   avgpool2d_bwd: dy (planes, P, Q) -> dx (planes, H, W); scratch holds P*Q floats
// Semantics (PyTorch's CPU kernels cpu_avg_pool2d / cpu_avg_pool2d_backward, bit for bit):
// window (p, q) covers rows [max(hs, 0), min(hs + kh, H)), hs = p*sh - ph (columns likewise);
// y = 0 + s / div[p, q] with s = 0 + x[...] + ... over the window in row-major order (float)
// and div the driver's divisor table (float of PyTorch's int64 divide_factor). Backward:
// g = dy / div, then dx[h, w] = 0 + the g of every window containing (h, w) in increasing (p, q)
// order (PyTorch's scatter order, written as a gather: each dx element once, any thread count).
// Napkin: kh*kw adds per output, ~1 ns each scalar; the SIMD files do 8 (16) outputs per add.
#include <algorithm>
#include <cstdint>

#include "cpu/kernels.h"

namespace fastcnn::cpu::generic {
namespace {

// [lo, hi]: the windows of one axis containing position i (empty when lo > hi).
void windows_of(int64_t i, int64_t pad, int64_t k, int64_t s, int64_t out, int64_t& lo,
                int64_t& hi) {
  const int64_t a = i + pad - k + 1;
  lo = a <= 0 ? 0 : (a + s - 1) / s;
  hi = std::min(out - 1, (i + pad) / s);
}

}  // namespace

void avgpool2d_fwd(const float* x, float* y, const float* div, const Pool2dParams& p,
                   int64_t planes) {
  const int64_t H = p.H, W = p.W, P = p.P, Q = p.Q;
  for (int64_t pl = 0; pl < planes; ++pl) {
    const float* xp = x + pl * H * W;
    float* yp = y + pl * P * Q;
    for (int64_t op = 0; op < P; ++op) {
      const int64_t hs = op * p.stride_h - p.pad_h;
      const int64_t h0 = std::max<int64_t>(hs, 0), h1 = std::min(hs + p.kh, H);
      for (int64_t oq = 0; oq < Q; ++oq) {
        const int64_t ws = oq * p.stride_w - p.pad_w;
        const int64_t w0 = std::max<int64_t>(ws, 0), w1 = std::min(ws + p.kw, W);
        float s = 0.0f;
        for (int64_t h = h0; h < h1; ++h)
          for (int64_t w = w0; w < w1; ++w) s += xp[h * W + w];
        yp[op * Q + oq] = 0.0f + s / div[op * Q + oq];
      }
    }
  }
}

void avgpool2d_bwd(const float* dy, float* dx, const float* div, float* scratch,
                   const Pool2dParams& p, int64_t planes) {
  const int64_t H = p.H, W = p.W, P = p.P, Q = p.Q, PQ = P * Q;
  for (int64_t pl = 0; pl < planes; ++pl) {
    const float* dyp = dy + pl * PQ;
    float* dxp = dx + pl * H * W;
    for (int64_t o = 0; o < PQ; ++o) scratch[o] = dyp[o] / div[o];
    for (int64_t h = 0; h < H; ++h) {
      int64_t oa, ob;
      windows_of(h, p.pad_h, p.kh, p.stride_h, P, oa, ob);
      for (int64_t w = 0; w < W; ++w) {
        int64_t qa, qb;
        windows_of(w, p.pad_w, p.kw, p.stride_w, Q, qa, qb);
        float acc = 0.0f;
        for (int64_t oh = oa; oh <= ob; ++oh)
          for (int64_t oq = qa; oq <= qb; ++oq) acc += scratch[oh * Q + oq];
        dxp[h * W + w] = acc;
      }
    }
  }
}

}  // namespace fastcnn::cpu::generic
