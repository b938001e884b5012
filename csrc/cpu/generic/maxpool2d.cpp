// maxpool2d.cpp (generic) -- 2-D max pooling forward and backward on one (n, c) plane, portable.
//   maxpool2d_fwd: x (H, W) -> y (P, Q), idx (P, Q) = h*W + w of the chosen element (idx may
//                  be null)
//   maxpool2d_bwd: dx (H*W) = 0, then dx[idx[i]] += dy[i] for i = 0 .. P*Q-1 in order
// Semantics (PyTorch's CPU kernel, bit for bit, and the oracle the SIMD files are tested against):
// window (p, q) covers rows h0 = p*sh - ph, h0 + dh, ... < min(h0 + (kh-1)*dh + 1, H) with h0
// first advanced by dh while negative (w likewise); maxval = -inf, maxidx = h0*W + w0, then in
// row-major tap order `if (v > maxval || isnan(v)) { maxval = v; maxidx = h*W + w; }`: ties go to
// the first maximum, the last NaN wins, an all -inf window gives -inf and its first element.
// A window with no in-bounds tap (possible only with dilation > 1, e.g. k 2, dilation 3, pad 1,
// H 2; PyTorch then writes an index outside the plane) gives -inf and index -1, and the
// backward skips any index outside [0, H*W), so no such index can ever touch memory.
// Approach: rows once per p, the column range of each window once per q, plain scalar loops.
// Napkin (2x2/2, 112x112 plane): 4 compares per output, 3136 outputs -> ~10-20 us per plane
// scalar; the SIMD files do 16 (8) outputs per compare.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "cpu/kernels.h"

namespace fastcnn::cpu::generic {
namespace {

#include "cpu/maxpool2d_scatter.h"

// First in-bounds tap of an axis: PyTorch's `while (i0 < 0) i0 += dil;` in closed form.
inline int64_t first_in_bounds(int64_t i0, int64_t dil) {
  return i0 < 0 ? i0 + ((-i0 + dil - 1) / dil) * dil : i0;
}

}  // namespace

void maxpool2d_fwd(const float* x, float* y, int64_t* idx, const Pool2dParams& p) {
  const int64_t H = p.H, W = p.W, P = p.P, Q = p.Q;
  const float ninf = -std::numeric_limits<float>::infinity();
  for (int64_t op = 0; op < P; ++op) {
    const int64_t hs = op * p.stride_h - p.pad_h;
    const int64_t h1 = std::min(hs + (p.kh - 1) * p.dil_h + 1, H);
    const int64_t h0 = first_in_bounds(hs, p.dil_h);
    for (int64_t oq = 0; oq < Q; ++oq) {
      const int64_t ws = oq * p.stride_w - p.pad_w;
      const int64_t w1 = std::min(ws + (p.kw - 1) * p.dil_w + 1, W);
      const int64_t w0 = first_in_bounds(ws, p.dil_w);
      float maxval = ninf;
      int64_t maxidx = -1;
      if (h0 < h1 && w0 < w1) {
        maxidx = h0 * W + w0;
        for (int64_t h = h0; h < h1; h += p.dil_h) {
          const float* row = x + h * W;
          for (int64_t w = w0; w < w1; w += p.dil_w) {
            const float v = row[w];
            if (v > maxval || std::isnan(v)) {
              maxval = v;
              maxidx = h * W + w;
            }
          }
        }
      }
      y[op * Q + oq] = maxval;
      if (idx) idx[op * Q + oq] = maxidx;
    }
  }
}

bool maxpool2d_bwd(const float* dy, const int64_t* idx, float* dx, const Pool2dParams& p) {
  return maxpool2d_bwd_scatter(dy, idx, dx, p.H * p.W, p.P * p.Q);
}

}  // namespace fastcnn::cpu::generic
