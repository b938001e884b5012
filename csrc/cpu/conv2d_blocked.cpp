// conv2d_blocked.cpp -- the forward convolution as a direct convolution over blocked activations
// (oneDNN's nChw8c on AVX2 / generic, nChw16c on AVX-512), conv2d.cpp's third form next to the
// wide grid and the implicit GEMM (conv2d_route.cpp chooses); stride-1 backward-data runs as the
// same forward on dy with the flipped, transposed weights (pads (R-1)*dil - pad, end of file).
//
// Layouts (VL = kernels().blocked_vl, Cb = ceil(C / VL), Kb = ceil(K / VL)):
//   weights  wb[kb][cb][r][s][c][k] = w[kb*VL + k, cb*VL + c, r, s], zero past K and C: one
//            VL-wide aligned line per (kb, cb, tap, c), built once per call in parallel.
//   input    per work item, the rows its output band reads, reordered into the thread's scratch
//            as [cb][row][col][c]: (rows, Wp = W + pl + pr, VL) per channel block, the padding
//            and the channel tail written as zeros (the ISA's block transpose, kernels().transpose,
//            8 channel rows -> pixel-major lines). The reorder happens right before the band is
//            used, so the band is read by the kernel from L2, not memory.
//   output   straight NCHW: the tile kernel transposes its accumulators in registers and stores
//            NC consecutive pixels per channel row (kernels.h, Conv2dBlockedArgs).
// Work items: (image, band of output rows), threads over items (parallel.h); in an item, oc
// groups of `ocb` blocks outer (their weights stay in L1 / L2) and tiles of `nc` consecutive
// pixels of the band inner (a tile may wrap to the next row: its pixels are consecutive in the
// NCHW plane, and each column carries its own input pointer, so a plane of P*Q pixels wastes
// only its last tile). Every output is the same fixed sum (cb, tap, c order, from 0, then the
// bias, then the ReLU) whatever the tile, band or thread count: bit-identical for any threads.
// NaN / inf: the padding is real zeros multiplied by every weight, as the reference's im2col form
// (and PyTorch) does; padded channels multiply zero inputs by zero weights (+0, dropped rows).
//
// The tile rule (blocked_tiling): per (cb, tap, c) step a tile of O oc blocks x N pixels costs
//   step(O, N) = max(O*N / 2 (two FMA ports), (O + N) / 2 (two loads a cycle), 5 (FMA latency:
//                fewer than 10 chains leave the ports idle)) cycles,
// summed over ceil(Kb / O) oc groups x ceil(P*Q / N) tiles (the last ones narrower), divided by
// the useful K/VL * P*Q / 2 cycles, times Cb*VL / C (the channel tail's zero lanes). The
// cheapest (O, N) with O <= blocked_max_ocb, N <= min(blocked_max_nc, blocked_max_acc / O)
// wins (the larger tile on a tie). AVX2, P*Q = 1024 / 256 / 64:
//   K = 16 (Kb = 2)  2 x 6: step 6 for 12 FMAs, cost 1.00 (1 x 8 and 2 x 4: step 5 for 8, 1.25)
//   K = 32, 64       2 x 6 (1.00); K = 8: 1 x 8 (1.25); K = 24: 3 x 4 (1.00)
// AVX-512 (budget 24 accumulators): K = 16: 1 x 16 (step 8.5 for 16 FMAs, 1.06); K = 32: 2 x 12;
// K = 64: 2 x 12 (1.00; 4 x 6 ties).
// The band: the largest number of output rows whose input rows fit 128 Ki floats of scratch
// (L2), and no more than ceil(P / ceil(4 * threads / N)) so a small batch still spreads.
// With batch statistics (conv2d_stats.h) the band is rounded to whole chunks of the shape's
// fixed rows, and each oc group's chunks are reduced right after its tiles are stored.
#include "cpu/conv2d_blocked.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "cpu/buffer.h"
#include "cpu/conv2d_stats.h"
#include "cpu/kernels.h"
#include "cpu/parallel.h"

namespace fastcnn::cpu {
namespace {

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

constexpr int64_t kBandScratch = int64_t{1} << 17;  // floats of input band per thread (512 KiB)

double step_cycles(int64_t o, int64_t n) {
  return std::max({double(o * n) / 2.0, double(o + n) / 2.0, 5.0});
}

int64_t cap_nc(const KernelTable& kt, int64_t o) {
  return std::min<int64_t>(kt.blocked_max_nc, kt.blocked_max_acc / o);
}

}  // namespace

bool blocked_fwd_applicable(const Conv2dParams& p) {
  return p.groups == 1 && p.N > 0 && p.P > 0 && p.Q > 0 && p.C > 0 && p.K > 0 &&
         p.pad_top >= 0 && p.pad_left >= 0 && p.pad_bottom >= 0 && p.pad_right >= 0;
}

BlockedTiling blocked_tiling(const Conv2dParams& p) {
  const KernelTable& kt = kernels();
  const int64_t VL = kt.blocked_vl, Kb = ceil_div(p.K, VL), Cb = ceil_div(p.C, VL);
  const int64_t npix = std::max<int64_t>(p.P * p.Q, 1);
  const double useful = double(std::max<int64_t>(p.K, 1)) / double(VL) * double(npix) / 2.0;
  const double ctail = double(Cb * VL) / double(std::max<int64_t>(p.C, 1));
  BlockedTiling best{1, 1, 1e300};
  for (int64_t o = 1; o <= kt.blocked_max_ocb; ++o) {
    for (int64_t n = cap_nc(kt, o); n >= 1; --n) {
      const int64_t fo = Kb / o, ro = Kb % o, fn = npix / n, rn = npix % n;
      auto row = [&](int64_t oo) {
        return double(fn) * step_cycles(oo, n) + (rn ? step_cycles(oo, rn) : 0.0);
      };
      const double cycles = double(fo) * row(o) + (ro ? row(ro) : 0.0);
      const double cost = cycles / useful * ctail;
      if (cost < best.cost * (1.0 - 1e-9)) best = {o, n, cost};
    }
  }
  return best;
}

void conv2d_blocked_forward(const float* x, const float* w, const float* b, float* y,
                            const Conv2dParams& p, int relu, ConvStatsPlan* stats) {
  const KernelTable& kt = kernels();
  const int64_t VL = kt.blocked_vl, Kb = ceil_div(p.K, VL), Cb = ceil_div(p.C, VL);
  const int64_t RS = p.R * p.S, HW = p.H * p.W, PQ = p.P * p.Q;
  const int64_t Wp = p.W + p.pad_left + p.pad_right, Hp = p.H + p.pad_top + p.pad_bottom;
  const BlockedTiling tiling = blocked_tiling(p);
  const int64_t ocb = tiling.ocb, nc = tiling.nc;

  // weights [kb][cb][tap][c][k] and the zero-padded bias
  const int64_t wblock = Cb * RS * VL * VL;  // floats per output-channel block
  Buffer wb = alloc_floats(Kb * wblock);
  Buffer bb = alloc_floats(Kb * VL);
  parallel_for(Kb, [&](int, int64_t k0, int64_t k1) {
    for (int64_t kb = k0; kb < k1; ++kb) {
      float* dst = wb.get() + kb * wblock;
      std::memset(dst, 0, sizeof(float) * static_cast<size_t>(wblock));
      for (int64_t k = 0; k < VL && kb * VL + k < p.K; ++k)
        for (int64_t c = 0; c < p.C; ++c) {
          const float* src = w + ((kb * VL + k) * p.C + c) * RS;
          const int64_t cb = c / VL, cl = c % VL;
          for (int64_t t = 0; t < RS; ++t) dst[((cb * RS + t) * VL + cl) * VL + k] = src[t];
        }
    }
  }, threads_for(double(p.K) * double(p.C) * double(RS), 1 << 15));
  for (int64_t k = 0; k < Kb * VL; ++k) bb[k] = (b && k < p.K) ? b[k] : 0.0f;

  // bands of output rows; the input rows one reads, in padded coordinates
  auto rows_in = [&](int64_t band) { return (band - 1) * p.stride_h + (p.R - 1) * p.dil_h + 1; };
  const int nt_all = threads_for(2.0 * double(p.N) * double(p.K) * double(PQ) * double(p.C * RS),
                                 1 << 20);
  int64_t band = std::min<int64_t>(p.P, ceil_div(p.P, ceil_div(4 * int64_t{nt_all}, p.N)));
  while (band > 1 && Cb * rows_in(band) * Wp * VL > kBandScratch) --band;
  if (stats && band < p.P) band = std::max(stats->rows, band / stats->rows * stats->rows);
  const int64_t nband = ceil_div(p.P, band), items = p.N * nband;
  const int nt = static_cast<int>(std::min<int64_t>(nt_all, items));
  const int64_t plane = rows_in(band) * Wp * VL;  // floats per channel block of a band
  std::vector<Buffer> scratch;
  scratch.reserve(static_cast<size_t>(nt));
  for (int t = 0; t < nt; ++t) scratch.push_back(alloc_floats(Cb * plane));

  std::vector<int64_t> tap_off(static_cast<size_t>(RS));
  for (int64_t r = 0; r < p.R; ++r)
    for (int64_t s = 0; s < p.S; ++s)
      tap_off[static_cast<size_t>(r * p.S + s)] = (r * p.dil_h * Wp + s * p.dil_w) * VL;

  const TransposeFn transpose = kt.transpose;
  const Conv2dBlockedFn kernel = kt.conv2d_blocked;
  parallel_for(items, [&](int tid, int64_t i0, int64_t i1) {
    float* xs = scratch[static_cast<size_t>(tid)].get();
    for (int64_t item = i0; item < i1; ++item) {
      const int64_t n = item / nband, p0 = (item % nband) * band;
      const int64_t p1 = std::min(p.P, p0 + band);
      const int64_t hp0 = p0 * p.stride_h, nrows = rows_in(p1 - p0);
      // 1. the band's input rows, blocked and padded
      for (int64_t cb = 0; cb < Cb; ++cb) {
        const int64_t cn = std::min(VL, p.C - cb * VL);
        const float* xc = x + (n * p.C + cb * VL) * HW;
        for (int64_t hr = 0; hr < nrows; ++hr) {
          float* dst = xs + cb * plane + hr * Wp * VL;
          const int64_t h = hp0 + hr - p.pad_top;
          if (h < 0 || h >= p.H || hp0 + hr >= Hp) {
            std::memset(dst, 0, sizeof(float) * static_cast<size_t>(Wp * VL));
            continue;
          }
          if (cn < VL) {
            std::memset(dst, 0, sizeof(float) * static_cast<size_t>(Wp * VL));
          } else {
            std::memset(dst, 0, sizeof(float) * static_cast<size_t>(p.pad_left * VL));
            std::memset(dst + (p.pad_left + p.W) * VL, 0,
                        sizeof(float) * static_cast<size_t>(p.pad_right * VL));
          }
          transpose(xc + h * p.W, HW, cn, p.W, dst + p.pad_left * VL, VL);
        }
      }
      // 2. oc groups x pixel tiles of the band
      Conv2dBlockedArgs a;
      a.cblocks = Cb, a.in_cb_stride = plane, a.tap_off = tap_off.data(), a.taps = RS;
      a.relu = relu, a.y_ch_stride = PQ, a.w_ob_stride = wblock;
      const int64_t q0 = p0 * p.Q, q1 = p1 * p.Q;
      for (int64_t kb0 = 0; kb0 < Kb; kb0 += ocb) {
        a.ocb = std::min(ocb, Kb - kb0);
        a.w = wb.get() + kb0 * wblock;
        a.bias = b ? bb.get() + kb0 * VL : nullptr;
        a.kvalid = std::min(p.K - kb0 * VL, a.ocb * VL);
        float* yk = y + (n * p.K + kb0 * VL) * PQ;
        int64_t op = p0, oq = 0;  // the next tile's first pixel (no division per pixel)
        for (int64_t j0 = q0; j0 < q1; j0 += nc) {
          a.nc = std::min(nc, q1 - j0);
          for (int64_t j = 0; j < a.nc; ++j) {
            a.in[j] = xs + ((op - p0) * p.stride_h * Wp + oq * p.stride_w) * VL;
            if (++oq == p.Q) oq = 0, ++op;
          }
          a.y = yk + j0;
          kernel(a);
        }
        // the group's band, just stored (in L1 / L2): its chunks' statistics
        if (stats) conv_stats_gather(*stats, y, n, kb0 * VL, kb0 * VL + a.kvalid, p0, p1);
      }
    }
  }, nt);
}

Conv2dParams blocked_bwd_data_params(const Conv2dParams& p) {
  Conv2dParams q;
  q.N = p.N, q.C = p.K, q.H = p.P, q.W = p.Q, q.K = p.C, q.R = p.R, q.S = p.S, q.P = p.H;
  q.Q = p.W, q.dil_h = p.dil_h, q.dil_w = p.dil_w, q.groups = 1;
  const int64_t eh = (p.R - 1) * p.dil_h, ew = (p.S - 1) * p.dil_w;
  q.pad_top = eh - p.pad_top, q.pad_bottom = eh - p.pad_bottom;
  q.pad_left = ew - p.pad_left, q.pad_right = ew - p.pad_right;
  return q;
}

bool blocked_bwd_data_applicable(const Conv2dParams& p) {
  return p.stride_h == 1 && p.stride_w == 1 && p.groups == 1 && p.H > 0 && p.W > 0 &&
         blocked_fwd_applicable(blocked_bwd_data_params(p));
}

void conv2d_blocked_backward_data(const float* dy, const float* w, float* dx,
                                  const Conv2dParams& p) {
  const int64_t RS = p.R * p.S;
  std::vector<float> wt(static_cast<size_t>(p.K * p.C * RS));
  for (int64_t k = 0; k < p.K; ++k)
    for (int64_t c = 0; c < p.C; ++c) {
      const float* src = w + (k * p.C + c) * RS;
      float* dst = wt.data() + (c * p.K + k) * RS;
      for (int64_t t = 0; t < RS; ++t) dst[t] = src[RS - 1 - t];
    }
  conv2d_blocked_forward(dy, wt.data(), nullptr, dx, blocked_bwd_data_params(p), 0);
}

}  // namespace fastcnn::cpu
