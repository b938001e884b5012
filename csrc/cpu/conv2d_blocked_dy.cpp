// conv2d_blocked_dy.cpp -- the conv output's gradient as the blocked backward passes read it
// (BlockedDy, conv2d_blocked_bwd.h): dy, or dy routed back through a fused max pooling and ReLU,
// built image by image in a thread's scratch instead of materialised over the whole tensor; and
// the stride-1 backward-data pass that reads it that way (conv2d_blocked_backward_data_fused).
//
// Planes (blocked_dy_planes): plane k of image n of the gradient is
//   g = pooled ? max_pool2d_backward's plane (pooled_grad_plane: the ISA's maxpool2d_bwd, zeros
//       then the scatter in order) : dy's plane;   g = relu_y ? relu_bwd(g, relu_y) : g
// element for element the kernels conv2d_backward's materialised route ran over the whole
// tensor (relu_backward cuts it into chunks for the same elementwise kernel): the same bits.
// Napkin maths, the seeds' 32->64 @26 (dy 64 @24x24 pooled to 12x12), batch 64: the tensor is
// 2.36 M floats (9.4 MB written, then read by each pass from memory); one image's 64 planes are
// 36.9 K floats (147 KB), a channel block's 4.6 K (18 KB), built and read back in L1 / L2 by the
// band reorder (building the whole image's first measured 3 ms slower per call: 147 KB more
// beside the 200 KB band and the 74 KB of weights the tiles re-read from L2).
//
// The fused stride-1 backward-data is conv2d_blocked_backward_data's problem (the forward of
// blocked_bwd_data_params(p): dy padded by (R-1)*dil - pad, flipped transposed weights) run with
// the forward's layouts, tile rule and kernel calls (conv2d_blocked.cpp: weights
// [kb][cb][tap][c][k], per (image, band of output rows) the input rows blocked into the thread's
// scratch, oc groups x pixel tiles), the band's input rows reordered channel block by channel
// block from that block's planes, built for the band in the thread's scratch (VL planes: 18 KB
// for the seeds' 24x24; an image of several bands rebuilds them per band). Every output is the
// same (cb, tap, c)-ordered sum from 0 as there, whatever the band: bit-identical to the
// materialised route, for any thread count. NaN / inf: the same products (finite weights only).
#include <algorithm>
#include <cstring>
#include <vector>

#include "cpu/buffer.h"
#include "cpu/conv2d_blocked.h"
#include "cpu/conv2d_blocked_bwd.h"
#include "cpu/conv2d_wide.h"
#include "cpu/parallel.h"

namespace fastcnn::cpu {
namespace {

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

constexpr int64_t kBandScratch = int64_t{1} << 17;  // floats of input band per thread

}  // namespace

void blocked_dy_planes(const BlockedDy& g, const Conv2dParams& p, int64_t n, int64_t k0,
                       int64_t k1, float* dst) {
  const KernelTable& kt = kernels();
  const int64_t PQ = p.P * p.Q;
  for (int64_t k = k0; k < k1; ++k) {
    const int64_t pl = n * p.K + k;
    float* d = dst + (k - k0) * PQ;
    const float* src = g.dy + pl * PQ;
    if (g.pooled) {
      pooled_grad_plane(*g.pooled, g.dy, pl, d);
      src = d;
    }
    if (g.relu_y) kt.relu_bwd(src, g.relu_y + pl * PQ, d, PQ);
    else if (src != d) std::memcpy(d, src, sizeof(float) * static_cast<size_t>(PQ));
  }
}

void conv2d_blocked_backward_data_fused(const BlockedDy& g, const float* w, float* dx,
                                        const Conv2dParams& p) {
  const KernelTable& kt = kernels();
  const Conv2dParams q = blocked_bwd_data_params(p);  // K -> C channels, P x Q -> H x W
  const int64_t VL = kt.blocked_vl, Kb = ceil_div(q.K, VL), Cb = ceil_div(q.C, VL);
  const int64_t RS = q.R * q.S, HWin = q.H * q.W, PQ = q.P * q.Q;
  const int64_t Wp = q.W + q.pad_left + q.pad_right;
  const BlockedTiling tiling = blocked_tiling(q);
  const int64_t ocb = tiling.ocb, nc = tiling.nc;

  // weights [kb][cb][tap][c][k] of wt[c', k', t] = w[k', c', RS-1-t] (q's K = p.C, C = p.K)
  const int64_t wblock = Cb * RS * VL * VL;
  Buffer wb = alloc_floats(Kb * wblock);
  parallel_for(Kb, [&](int, int64_t b0, int64_t b1) {
    for (int64_t kb = b0; kb < b1; ++kb) {
      float* dst = wb.get() + kb * wblock;
      std::memset(dst, 0, sizeof(float) * static_cast<size_t>(wblock));
      for (int64_t k = 0; k < VL && kb * VL + k < q.K; ++k)
        for (int64_t c = 0; c < q.C; ++c) {
          const float* src = w + (c * p.C + kb * VL + k) * RS;  // w[c, kb*VL + k, :, :]
          const int64_t cb = c / VL, cl = c % VL;
          for (int64_t t = 0; t < RS; ++t)
            dst[((cb * RS + t) * VL + cl) * VL + k] = src[RS - 1 - t];
        }
    }
  }, threads_for(double(q.K) * double(q.C) * double(RS), 1 << 15));

  auto rows_in = [&](int64_t band) { return (band - 1) * q.stride_h + (q.R - 1) * q.dil_h + 1; };
  const int nt_all = threads_for(2.0 * double(q.N) * double(q.K) * double(PQ) * double(q.C * RS),
                                 1 << 20);
  int64_t band = std::min<int64_t>(q.P, ceil_div(q.P, ceil_div(4 * int64_t{nt_all}, q.N)));
  while (band > 1 && Cb * rows_in(band) * Wp * VL > kBandScratch) --band;
  const int64_t nband = ceil_div(q.P, band), items = q.N * nband;
  const int nt = static_cast<int>(std::min<int64_t>(nt_all, items));
  const int64_t plane = rows_in(band) * Wp * VL;
  std::vector<Buffer> scratch, planes;
  for (int t = 0; t < nt; ++t) {
    scratch.push_back(alloc_floats(Cb * plane));
    planes.push_back(alloc_floats(VL * HWin));  // one channel block's gradient planes
  }

  std::vector<int64_t> tap_off(static_cast<size_t>(RS));
  for (int64_t r = 0; r < q.R; ++r)
    for (int64_t s = 0; s < q.S; ++s)
      tap_off[static_cast<size_t>(r * q.S + s)] = (r * q.dil_h * Wp + s * q.dil_w) * VL;

  const Conv2dBlockedFn kernel = kt.conv2d_blocked;
  parallel_for(items, [&](int tid, int64_t i0, int64_t i1) {
    float* xs = scratch[static_cast<size_t>(tid)].get();
    float* gs = planes[static_cast<size_t>(tid)].get();
    for (int64_t item = i0; item < i1; ++item) {
      const int64_t n = item / nband, p0 = (item % nband) * band;
      const int64_t p1 = std::min(q.P, p0 + band);
      // 1. the band's input rows, blocked and padded, channel block by channel block from
      // that block's gradient planes (built for the band: 8 or 16 planes stay in L1 / L2 beside
      // the band and the weights the tiles read)
      for (int64_t cb = 0; cb < Cb; ++cb) {
        const int64_t c0 = cb * VL, c1 = std::min(q.C, c0 + VL);
        blocked_dy_planes(g, p, n, c0, c1, gs);
        blocked_reorder_rows(gs, c1 - c0, q.H, q.W, p0 * q.stride_h, rows_in(p1 - p0),
                             q.pad_top, q.pad_left, Wp, xs + cb * plane, plane);
      }
      // 2. oc groups x pixel tiles of the band (conv2d_blocked_forward's loop, no bias / ReLU)
      Conv2dBlockedArgs a;
      a.cblocks = Cb, a.in_cb_stride = plane, a.tap_off = tap_off.data(), a.taps = RS;
      a.relu = 0, a.bias = nullptr, a.y_ch_stride = PQ, a.w_ob_stride = wblock;
      const int64_t j0s = p0 * q.Q, j1s = p1 * q.Q;
      for (int64_t kb0 = 0; kb0 < Kb; kb0 += ocb) {
        a.ocb = std::min(ocb, Kb - kb0);
        a.w = wb.get() + kb0 * wblock;
        a.kvalid = std::min(q.K - kb0 * VL, a.ocb * VL);
        float* yk = dx + (n * q.K + kb0 * VL) * PQ;
        int64_t op = p0, oq = 0;
        for (int64_t j0 = j0s; j0 < j1s; j0 += nc) {
          a.nc = std::min(nc, j1s - j0);
          for (int64_t j = 0; j < a.nc; ++j) {
            a.in[j] = xs + ((op - p0) * q.stride_h * Wp + oq * q.stride_w) * VL;
            if (++oq == q.Q) oq = 0, ++op;
          }
          a.y = yk + j0;
          kernel(a);
        }
      }
    }
  }, nt);
}

}  // namespace fastcnn::cpu
