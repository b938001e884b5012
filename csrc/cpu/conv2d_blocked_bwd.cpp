// conv2d_blocked_bwd.cpp -- backward-data of a strided (any stride) groups = 1 convolution as the
// blocked direct convolution's forward tile (conv2d_blocked.cpp, kernels.h Conv2dBlockedArgs),
// and the band reorder the blocked backward passes share (blocked_reorder_rows).
//
// Phases: dx[h, w] = sum over k and the taps (r, s) with h + pt - r*dh = p*sh (likewise w) of
// w[k, c, r, s] * dy[k, p, q]. Write h = hh*sh + a (0 <= a < sh, the output phase): tap r
// contributes iff (a + pt - r*dh) is a multiple of sh, from dy row p = hh + d_r with
// d_r = (a + pt - r*dh) / sh. So each of the sh*sw output phases (a, b) of dx is a stride-1
// correlation of dy with its own taps (r, s) at offsets (d_r, d_s): the blocked forward on dy
// (K input channels) with C output channels and |taps(a)| * |taps(b)| taps, on a dy grid padded
// by the most any phase reads past its border (zeros). Every tap belongs to exactly one phase,
// so the phases together do the stride-1 form's work divided by sh*sw: no multiply by the
// zeros a dilated ("upsampled") dy would hold. A phase with no tap is zeros.
// Layouts: weights per phase [cb][kb][tap][k][c] (the forward's wb with (k, c) swapped, no
// flip: the offsets d_r carry the direction), built once per call; dy per band of phase rows hh
// as the forward's input band ([kb][row][Wd][k], blocked_reorder_rows); each phase's tile
// outputs go to the thread's scratch plane [c][row][ww] (the tile stores consecutive pixels),
// then interleaved into dx rows hh*sh + a, columns ww*sw + b.
// Work items: (image, band of phase rows hh), all phases inside; items write disjoint dx rows.
// Every dx element is one sum in (kb, tap, k) order from 0, whatever the band, tile or thread
// count: bit-identical for any thread count. A fused gradient (BlockedDy: through a max pool and
// ReLU) is built one image at a time in the thread's scratch, reordered from there. NaN / inf: the padding is real zeros multiplied by
// weights (finite weights only, conv2d_route.cpp), dy's channel tail zero lanes meet zero
// weights; every other product is one of the reference's col2im sums.
// Napkin maths, ResNet-20's 32->64 @16 / 2 (dx 32 @16x16 from dy 64 @8x8), batch 128: 302 MFLOP;
// per image 4 phases of 8x8 pixels with 4, 2, 2, 1 taps (9 in all); per band the dy reorder
// (64*9*9 floats) against 2.4 MFLOP of FMAs, the interleave 8 K floats.
#include <algorithm>
#include <cstring>
#include <vector>

#include "cpu/buffer.h"
#include "cpu/conv2d_blocked_bwd.h"
#include "cpu/parallel.h"

namespace fastcnn::cpu {
namespace {

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

constexpr int64_t kBandScratch = int64_t{1} << 17;  // floats of dy band per thread
constexpr int64_t kOutScratch = int64_t{1} << 17;   // floats of phase outputs per thread

// One direction's phases: for phase a, its outputs (count), its taps and their offsets d.
struct Phases {
  std::vector<int64_t> count;
  std::vector<std::vector<int64_t>> taps, d;
  int64_t dmin = 0, dmax = 0, pad_lo = 0, pad_hi = 0;  // over phases with outputs and taps
  bool any = false;
};

Phases phases(int64_t st, int64_t pad, int64_t dil, int64_t R, int64_t H, int64_t P) {
  Phases ph;
  ph.count.assign(static_cast<size_t>(st), 0);
  ph.taps.resize(static_cast<size_t>(st));
  ph.d.resize(static_cast<size_t>(st));
  int64_t hi = 0;
  for (int64_t a = 0; a < st; ++a) {
    const int64_t n = a < H ? ceil_div(H - a, st) : 0;
    ph.count[static_cast<size_t>(a)] = n;
    for (int64_t r = 0; r < R; ++r) {
      const int64_t num = a + pad - r * dil;
      if (((num % st) + st) % st != 0) continue;
      const int64_t d = num / st;  // exact
      ph.taps[static_cast<size_t>(a)].push_back(r);
      ph.d[static_cast<size_t>(a)].push_back(d);
      if (n == 0) continue;
      if (!ph.any) ph.dmin = d, ph.dmax = d, hi = n - 1 + d;
      ph.any = true;
      ph.dmin = std::min(ph.dmin, d), ph.dmax = std::max(ph.dmax, d);
      hi = std::max(hi, n - 1 + d);
    }
  }
  ph.pad_lo = std::max<int64_t>(0, -ph.dmin);
  ph.pad_hi = std::max<int64_t>(0, hi - (P - 1));
  return ph;
}

}  // namespace

void blocked_reorder_rows(const float* src, int64_t C, int64_t H, int64_t W, int64_t row0,
                          int64_t nrows, int64_t pad_top, int64_t pad_left, int64_t Wp,
                          float* dst, int64_t plane) {
  const KernelTable& kt = kernels();
  const int64_t VL = kt.blocked_vl, Cb = ceil_div(C, VL), HW = H * W;
  const int64_t pad_right = Wp - pad_left - W;
  for (int64_t cb = 0; cb < Cb; ++cb) {
    const int64_t cn = std::min(VL, C - cb * VL);
    const float* xc = src + cb * VL * HW;
    for (int64_t hr = 0; hr < nrows; ++hr) {
      float* d = dst + cb * plane + hr * Wp * VL;
      const int64_t h = row0 + hr - pad_top;
      if (h < 0 || h >= H || cn < VL) {
        std::memset(d, 0, sizeof(float) * static_cast<size_t>(Wp * VL));
        if (h < 0 || h >= H) continue;
      } else {
        std::memset(d, 0, sizeof(float) * static_cast<size_t>(pad_left * VL));
        std::memset(d + (pad_left + W) * VL, 0,
                    sizeof(float) * static_cast<size_t>(pad_right * VL));
      }
      kt.transpose(xc + h * W, HW, cn, W, d + pad_left * VL, VL);
    }
  }
}

bool blocked_bwd_data_strided_applicable(const Conv2dParams& p) {
  return p.groups == 1 && p.N > 0 && p.C > 0 && p.K > 0 && p.H > 0 && p.W > 0 && p.P > 0 &&
         p.Q > 0 && p.pad_top >= 0 && p.pad_left >= 0 && p.pad_bottom >= 0 && p.pad_right >= 0;
}

void conv2d_blocked_backward_data_strided(const BlockedDy& g, const float* w, float* dx,
                                          const Conv2dParams& p) {
  const KernelTable& kt = kernels();
  const int64_t VL = kt.blocked_vl, Kb = ceil_div(p.K, VL), Cb = ceil_div(p.C, VL);
  const int64_t RS = p.R * p.S, HW = p.H * p.W, PQ = p.P * p.Q;
  const int64_t sh = p.stride_h, sw = p.stride_w;
  const Phases ph = phases(sh, p.pad_top, p.dil_h, p.R, p.H, p.P);
  const Phases pw = phases(sw, p.pad_left, p.dil_w, p.S, p.W, p.Q);
  if (!ph.any || !pw.any) {  // no tap reaches any dx element
    std::memset(dx, 0, sizeof(float) * static_cast<size_t>(p.N * p.C * HW));
    return;
  }
  const int64_t PL = pw.pad_lo, Wd = p.Q + PL + pw.pad_hi;  // the padded dy grid's width
  const int64_t nph = sh * sw;

  // per phase (a, b): its taps' offsets in the band and its weights [cb][kb][tap][k][c]
  std::vector<std::vector<int64_t>> tap_off(static_cast<size_t>(nph));
  std::vector<Buffer> wph(static_cast<size_t>(nph));
  std::vector<int64_t> wob(static_cast<size_t>(nph), 0);
  for (int64_t a = 0; a < sh; ++a)
    for (int64_t b = 0; b < sw; ++b) {
      const size_t f = static_cast<size_t>(a * sw + b);
      const auto& tr = ph.taps[static_cast<size_t>(a)];
      const auto& ts = pw.taps[static_cast<size_t>(b)];
      const int64_t T = static_cast<int64_t>(tr.size() * ts.size());
      for (size_t i = 0; i < tr.size(); ++i)
        for (size_t j = 0; j < ts.size(); ++j)
          tap_off[f].push_back(((ph.d[static_cast<size_t>(a)][i] - ph.dmin) * Wd +
                                pw.d[static_cast<size_t>(b)][j] + PL) * VL);
      wob[f] = Kb * T * VL * VL;
      wph[f] = alloc_floats(Cb * wob[f]);
      float* dst = wph[f].get();
      std::memset(dst, 0, sizeof(float) * static_cast<size_t>(Cb * wob[f]));
      for (int64_t c = 0; c < p.C; ++c)
        for (int64_t k = 0; k < p.K; ++k) {
          float* d = dst + (c / VL) * wob[f] + (k / VL) * T * VL * VL + (k % VL) * VL + c % VL;
          const float* src = w + (k * p.C + c) * RS;
          int64_t t = 0;
          for (const int64_t r : tr)
            for (const int64_t s : ts) d[(t++) * VL * VL] = src[r * p.S + s];
        }
    }

  // the forward tile of the phase problem (K -> C channels, phase 0's pixels)
  Conv2dParams q;
  q.N = p.N, q.C = p.K, q.K = p.C, q.H = p.P, q.W = p.Q, q.R = 1, q.S = 1;
  q.P = ph.count[0], q.Q = pw.count[0];
  const BlockedTiling tiling = blocked_tiling(q);
  const int64_t ocb = tiling.ocb, nc = tiling.nc;

  // bands of phase rows hh; the dy rows one reads, in the padded grid's rows
  const int64_t Hh = ph.count[0], Wh = pw.count[0];  // phase 0 is the largest
  auto rows_in = [&](int64_t band) { return band - 1 + ph.dmax - ph.dmin + 1; };
  const double flops = 2.0 * double(p.N) * double(p.K) * double(p.C) * double(RS) * double(PQ);
  const int nt_all = threads_for(flops, 1 << 20);
  int64_t band = std::min<int64_t>(Hh, ceil_div(Hh, ceil_div(4 * int64_t{nt_all}, p.N)));
  while (band > 1 && (Kb * rows_in(band) * Wd * VL > kBandScratch ||
                      p.C * band * Wh > kOutScratch))
    --band;
  const int64_t nband = ceil_div(Hh, band), items = p.N * nband;
  const int nt = static_cast<int>(std::min<int64_t>(nt_all, items));
  const int64_t plane = rows_in(band) * Wd * VL;
  std::vector<Buffer> scratch, outs, planes;  // planes: a fused gradient's image (BlockedDy)
  for (int t = 0; t < nt; ++t) {
    scratch.push_back(alloc_floats(Kb * plane));
    outs.push_back(alloc_floats(p.C * band * Wh));
    if (g.fused()) planes.push_back(alloc_floats(p.K * PQ));
  }
  std::vector<int64_t> have(static_cast<size_t>(nt), -1);  // the image in planes[t]
  const Conv2dBlockedFn kernel = kt.conv2d_blocked;
  parallel_for(items, [&](int tid, int64_t i0, int64_t i1) {
    float* ds = scratch[static_cast<size_t>(tid)].get();
    float* ys = outs[static_cast<size_t>(tid)].get();
    for (int64_t item = i0; item < i1; ++item) {
      const int64_t n = item / nband, h0 = (item % nband) * band;
      const int64_t h1 = std::min(Hh, h0 + band);
      // 1. the band's dy rows: padded row h0 + PT + dmin on, i.e. dy row h0 + dmin on
      const float* dyn = g.dy + n * p.K * PQ;
      if (g.fused()) {
        float* gs = planes[static_cast<size_t>(tid)].get();
        if (have[static_cast<size_t>(tid)] != n) blocked_dy_planes(g, p, n, 0, p.K, gs);
        have[static_cast<size_t>(tid)] = n;
        dyn = gs;
      }
      blocked_reorder_rows(dyn, p.K, p.P, p.Q, h0 + ph.pad_lo + ph.dmin,
                           rows_in(h1 - h0), ph.pad_lo, PL, Wd, ds, plane);
      // 2. each phase: tiles of its band into ys, then interleaved into dx
      for (int64_t a = 0; a < sh; ++a) {
        const int64_t ha1 = std::min(h1, ph.count[static_cast<size_t>(a)]);
        if (ha1 <= h0) continue;
        for (int64_t b = 0; b < sw; ++b) {
          const int64_t wn = pw.count[static_cast<size_t>(b)];
          if (wn == 0) continue;
          const size_t f = static_cast<size_t>(a * sw + b);
          const int64_t T = static_cast<int64_t>(tap_off[f].size());
          const int64_t npix = (ha1 - h0) * wn;
          if (T == 0) {
            std::memset(ys, 0, sizeof(float) * static_cast<size_t>(p.C * npix));
          } else {
            Conv2dBlockedArgs g;
            g.cblocks = Kb, g.in_cb_stride = plane, g.tap_off = tap_off[f].data(), g.taps = T;
            g.relu = 0, g.bias = nullptr, g.y_ch_stride = npix, g.w_ob_stride = wob[f];
            for (int64_t cb0 = 0; cb0 < Cb; cb0 += ocb) {
              g.ocb = std::min(ocb, Cb - cb0);
              g.w = wph[f].get() + cb0 * wob[f];
              g.kvalid = std::min(p.C - cb0 * VL, g.ocb * VL);
              int64_t oh = 0, ow = 0;  // the next tile's first pixel
              for (int64_t j0 = 0; j0 < npix; j0 += nc) {
                g.nc = std::min(nc, npix - j0);
                for (int64_t j = 0; j < g.nc; ++j) {
                  g.in[j] = ds + (oh * Wd + ow) * VL;
                  if (++ow == wn) ow = 0, ++oh;
                }
                g.y = ys + cb0 * VL * npix + j0;
                kernel(g);
              }
            }
          }
          for (int64_t c = 0; c < p.C; ++c)
            for (int64_t hh = h0; hh < ha1; ++hh) {
              const float* src = ys + c * npix + (hh - h0) * wn;
              float* d = dx + (n * p.C + c) * HW + (hh * sh + a) * p.W + b;
              for (int64_t ww = 0; ww < wn; ++ww) d[ww * sw] = src[ww];
            }
        }
      }
    }
  }, nt);
}

}  // namespace fastcnn::cpu
