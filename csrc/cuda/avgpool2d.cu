// avgpool2d.cu -- 2-D average pooling, forward and backward (a gather: no atomics).
// Shapes: x (N, C, H, W) -> y (N, C, P, Q); dx (N, C, H, W) from dy (N, C, P, Q).
// Semantics: PyTorch's, exactly as the CPU kernels (csrc/cpu/generic/avgpool2d.cpp), so the same
// bits: window (p, q) covers rows [max(hs, 0), min(hs + kh, H)), hs = p*sh - ph (columns
// likewise), y = 0 + s / div with s = 0 + x[...] + ... in row-major order (float adds, IEEE
// division: no fast-math) and div = float(divisor_override or the count of avg_pool_count,
// common/params.h). Backward: dx[h, w] = 0 + sum of dy[p, q] / div[p, q] over the windows
// [ceil((h + ph - kh + 1) / sh), floor((h + ph) / sh)] x (likewise for w) in increasing (p, q)
// order: the CPU's (and PyTorch's scatter) order, one thread per dx element writing it once.
// Forward: one thread per output element (grid-stride, int64; consecutive threads take
// consecutive q, so the loads of a warp are sw floats apart); backward: one thread per dx
// element (consecutive w: coalesced stores, the dy reads of a warp hit a few lines).
// Napkin: 2x2/2 on 64 x 256 x 56 x 56: 51 M input floats read once (205 MB) + 13 M written
// (51 MB) ~ 0.1 ms at 3 TB/s; the backward is the mirror. Both are memory bound; the integer
// work per element (~2 FastDivs, a few min/max) is well below the loads' cost.
#include "cuda/common.cuh"

namespace fastcnn::cuda {
namespace {

struct AvgGeom {
  int64_t H, W, P, Q, kh, kw, sh, sw, ph, pw;
  int64_t divisor;  // divisor_override, 0 for none
  bool include_pad;
  FastDiv div_Q, div_P, div_W, div_H;
};

AvgGeom geom(const AvgPool2dParams& a) {
  const Pool2dParams& p = a.pool;
  return AvgGeom{p.H,        p.W,        p.P,      p.Q,      p.kh,
                 p.kw,       p.stride_h, p.stride_w, p.pad_h, p.pad_w,
                 a.divisor_override, a.count_include_pad,
                 FastDiv(p.Q), FastDiv(p.P), FastDiv(p.W), FastDiv(p.H)};
}

// common/params.h's avg_pool_count, on the device
FASTCNN_D int64_t count_of(int64_t o, int64_t size, int64_t k, int64_t s, int64_t pad,
                           bool include_pad) {
  const int64_t start = o * s - pad;
  const int64_t end = imin(start + k, size + pad);
  return include_pad ? end - start : imin(end, size) - imax(start, 0);
}

FASTCNN_D float divisor_of(const AvgGeom& g, int64_t op, int64_t oq) {
  const int64_t d = g.divisor != 0 ? g.divisor
                                   : count_of(op, g.H, g.kh, g.sh, g.ph, g.include_pad) *
                                         count_of(oq, g.W, g.kw, g.sw, g.pw, g.include_pad);
  return static_cast<float>(d);
}

__global__ void __launch_bounds__(kThreads)
    avgpool_fwd_kernel(const float* __restrict__ x, float* __restrict__ y, int64_t total,
                       AvgGeom g) {
  for (int64_t i = global_thread(); i < total; i += grid_threads()) {
    int64_t t, plane;
    const int64_t oq = g.div_Q.divmod(i, t);
    const int64_t op = g.div_P.divmod(t, plane);
    const float* xp = x + plane * g.H * g.W;
    const int64_t hs = op * g.sh - g.ph, ws = oq * g.sw - g.pw;
    const int64_t h0 = imax(hs, 0), h1 = imin(hs + g.kh, g.H);
    const int64_t w0 = imax(ws, 0), w1 = imin(ws + g.kw, g.W);
    float s = 0.0f;
    for (int64_t h = h0; h < h1; ++h) {
      const float* row = xp + h * g.W;
      for (int64_t w = w0; w < w1; ++w) s += row[w];
    }
    y[i] = 0.0f + s / divisor_of(g, op, oq);
  }
}

// [lo, hi]: the windows of one axis containing position i (empty when lo > hi)
FASTCNN_D void windows_of(int64_t i, int64_t pad, int64_t k, int64_t s, int64_t out,
                          int64_t& lo, int64_t& hi) {
  lo = imax(0, -floor_div(-(i + pad - k + 1), s));  // ceil division
  hi = imin(out - 1, (i + pad) / s);
}

__global__ void __launch_bounds__(kThreads)
    avgpool_bwd_kernel(const float* __restrict__ dy, float* __restrict__ dx, int64_t total,
                       AvgGeom g) {
  const int64_t PQ = g.P * g.Q;
  for (int64_t i = global_thread(); i < total; i += grid_threads()) {
    int64_t t, plane;
    const int64_t w = g.div_W.divmod(i, t);
    const int64_t h = g.div_H.divmod(t, plane);
    const float* dyp = dy + plane * PQ;
    int64_t p0, p1, q0, q1;
    windows_of(h, g.ph, g.kh, g.sh, g.P, p0, p1);
    windows_of(w, g.pw, g.kw, g.sw, g.Q, q0, q1);
    float acc = 0.0f;
    for (int64_t op = p0; op <= p1; ++op)
      for (int64_t oq = q0; oq <= q1; ++oq) acc += dyp[op * g.Q + oq] / divisor_of(g, op, oq);
    dx[i] = acc;
  }
}

}  // namespace

void avg_pool2d_forward(const float* x, float* y, const AvgPool2dParams& a, Stream stream) {
  const Pool2dParams& p = a.pool;
  const int64_t total = p.N * p.C * p.P * p.Q;
  if (total <= 0) return;
  launch("avg_pool2d", avgpool_fwd_kernel, grid_1d(total), dim3(kThreads), stream, x, y, total,
         geom(a));
}

void avg_pool2d_backward(const float* dy, float* dx, const AvgPool2dParams& a, Stream stream) {
  const Pool2dParams& p = a.pool;
  const int64_t total = p.N * p.C * p.H * p.W;
  if (total <= 0) return;
  launch("avg_pool2d_backward", avgpool_bwd_kernel, grid_1d(total), dim3(kThreads), stream, dy,
         dx, total, geom(a));
}

}  // namespace fastcnn::cuda
