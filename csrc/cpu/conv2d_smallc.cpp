// conv2d_smallc.cpp -- the direct convolution for few input channels (C*R*S <= 32: a first
// layer), forward and weight gradient, vectorised along the output row q; conv2d.cpp's fourth
// form (conv2d_route.cpp's rule takes it ahead of the others wherever it applies).
//
// Why a form of its own: the blocked form pads C to a channel block (C = 1: 8 of 8 lanes are
// zeros but one, 8x the FMAs), the implicit GEMM and the wide grid reduce over K = C*R*S = 9 or
// 27 steps, too short for their MR x NR tiles (the tile's load / store and the packing weigh as
// much as its FMAs). Here the reduction is the C*R*S taps, unrolled inside one register tile,
// and the vectors run along q, where a first layer's planes are wide (26, 32).
//
// Layout: per work item, the input rows its output rows read, copied into the thread's scratch
// as [c][row][phase][i]: phase ph of a padded row holds xpad[i*sw + ph] (Lph = round_up(Q, VL) +
// (S-1)*dw / sw columns, zeros for the padding and past the row), so tap (c, r, s) of output
// (p, q) is the contiguous row element
//   xs[(p - p0)*sh*RL + off(c, r, s) + q],  off = c*plane + r*dh*RL + ((s*dw) % sw)*Lph + s*dw/sw
// for every stride and dilation: unaligned vector loads, no gather. (RL: the row's length; the
// weight gradient appends round_up(Q, VL) ones to each row, the db "tap".) The copy is C*H*W
// floats per image against K*C*R*S*P*Q FMAs (1->32 3x3 @28: 784 floats for 195 K FMAs).
// Forward weights: the table wt[t][k] = w[k, t] (t = (c, r, s)), broadcast by the kernel.
// Napkin maths (kernels.h's tile, VL lanes, 2 FMA ports, 2 loads a cycle, FMA latency 5):
//   step(a, b) = max(a*b / 2, (a + b) / 2, 5) cycles per tap for a tile of a x b vectors
//   forward: a = KT channels, b = QV vectors: KT*QV + QV + 1 <= regs (16 ymm, 32 zmm)
//   weight gradient: a = KT channels, b = TT taps: KT*TT + KT + 1 <= regs
// summed over the tiles that cover K x round_up(Q, VL) (forward) or K x taps (weight gradient,
// lanes past Q counted), divided by the useful K*Q/VL/2 (K*taps/2 times Q / round_up(Q, VL)):
// the cheapest tile wins (smallc_fwd_tiling / smallc_wgrad_tiling; the first on a tie). AVX2:
//   1->32 @28 (Q = 26, 4 vectors: 81 % of the lanes useful)  forward 5 x 2, cost 1.35 (74 %
//     of peak inside the kernel); weight gradient (10 taps with db) 2 x 5, cost 1.23
//   3->16 @32 pad 1 (Q = 32)  forward 6 x 2, cost 1.06; weight gradient (28 taps) 2 x 6, 1.04
// AVX-512: 1->32 @28 forward 8 x 2 (1.23), weight gradient 2 x 5 (1.23); 3->16 @32 forward
// 8 x 2 (1.0), weight gradient 2 x 7 (1.0).
// Memory: the forward writes K*P*Q floats per image against K*C*R*S*P*Q FMAs (C = 1: 9 FMAs a
// stored float, 36 bytes a 9-FMA step: at 1-thread store bandwidth the first layer's forward is
// bound by its output stream, not by the FMAs); the weight gradient reads dy once (the tiles of
// one image's rows re-read it from L1), and takes a fused ReLU's backward as it reads (relu_y:
// no materialised gradient).
// Work: forward items (image, band of output rows), bands cut only when the batch is small
// (< 4 items a thread); weight gradient: the N*P output rows cut into nchunk = N*P / 16
// (1..32) fixed chunks (from the shape, never the thread count), one vector partial sum per (chunk, k,
// tap, lane), then per (k, tap) the chunks added in order and the lanes in order: every output
// of both passes is one fixed-order sum, bit-identical for any thread count. NaN / inf: the
// padding is real zeros multiplied by every weight (forward) and every dy (weight gradient), as
// the reference's im2col form; lanes past Q are masked to zero in the weight gradient, so an
// input column no output reads never enters a sum.
#include "cpu/conv2d_smallc.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "cpu/buffer.h"
#include "cpu/kernels.h"
#include "cpu/parallel.h"

namespace fastcnn::cpu {
namespace {

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
int64_t round_up(int64_t a, int64_t b) { return ceil_div(a, b) * b; }

constexpr int64_t kMaxChunks = 32;     // weight-gradient reduction chunks, at most
constexpr int64_t kMinChunkRows = 16;  // output rows a chunk, at least (its tiles' fixed costs)

double step_cycles(int64_t a, int64_t b) {
  return std::max({double(a * b) / 2.0, double(a + b) / 2.0, 5.0});
}

// cycles of tiles of (ta x tb) covering an A x B grid (remainders as smaller tiles)
double grid_cycles(int64_t A, int64_t B, int64_t ta, int64_t tb) {
  const int64_t fa = A / ta, ra = A % ta, fb = B / tb, rb = B % tb;
  auto row = [&](int64_t a) {
    return double(fb) * step_cycles(a, tb) + (rb ? step_cycles(a, rb) : 0.0);
  };
  return double(fa) * row(ta) + (ra ? row(ra) : 0.0);
}

// The padded, phase-split rows of one image (the header's layout).
struct Layout {
  int64_t VL, Qv, Lph, RL, Hn, plane, T;
  int64_t ones;  // offset of the row's ones (weight gradient), -1 for none
  std::vector<int64_t> off;
};

Layout make_layout(const Conv2dParams& p, int64_t band, bool ones) {
  Layout L;
  L.VL = kernels().smallc_vl;
  L.Qv = round_up(p.Q, L.VL);
  L.Lph = L.Qv + (p.S - 1) * p.dil_w / p.stride_w;
  L.RL = p.stride_w * L.Lph + (ones ? L.Qv : 0);
  L.ones = ones ? p.stride_w * L.Lph : -1;
  L.Hn = (band - 1) * p.stride_h + (p.R - 1) * p.dil_h + 1;
  L.plane = L.Hn * L.RL;
  L.T = p.C * p.R * p.S;
  L.off.resize(static_cast<size_t>(L.T + (ones ? 1 : 0)));
  for (int64_t c = 0; c < p.C; ++c)
    for (int64_t r = 0; r < p.R; ++r)
      for (int64_t s = 0; s < p.S; ++s) {
        const int64_t e = s * p.dil_w;
        L.off[static_cast<size_t>((c * p.R + r) * p.S + s)] =
            c * L.plane + r * p.dil_h * L.RL + (e % p.stride_w) * L.Lph + e / p.stride_w;
      }
  if (ones) L.off[static_cast<size_t>(L.T)] = L.ones;
  return L;
}

// image n's rows for output rows [p0, p1) into xs (C planes of L.plane floats)
void fill_rows(const float* x, const Conv2dParams& p, const Layout& L, int64_t n, int64_t p0,
               int64_t p1, float* xs) {
  const int64_t HW = p.H * p.W, sw = p.stride_w, rows = (p1 - p0 - 1) * p.stride_h +
                                                         (p.R - 1) * p.dil_h + 1;
  for (int64_t c = 0; c < p.C; ++c) {
    const float* xc = x + (n * p.C + c) * HW;
    for (int64_t hr = 0; hr < rows; ++hr) {
      float* dst = xs + c * L.plane + hr * L.RL;
      const int64_t h = p0 * p.stride_h + hr - p.pad_top;
      if (h < 0 || h >= p.H) {
        std::memset(dst, 0, sizeof(float) * static_cast<size_t>(sw * L.Lph));
      } else if (sw == 1) {
        const int64_t lo = std::min(p.pad_left, L.Lph);
        const int64_t n_in = std::max<int64_t>(0, std::min(p.W, L.Lph - p.pad_left));
        std::memset(dst, 0, sizeof(float) * static_cast<size_t>(lo));
        if (n_in > 0)
          std::memcpy(dst + p.pad_left, xc + h * p.W, sizeof(float) * static_cast<size_t>(n_in));
        const int64_t done = lo + n_in;
        std::memset(dst + done, 0, sizeof(float) * static_cast<size_t>(L.Lph - done));
      } else {
        const float* xr = xc + h * p.W;
        for (int64_t ph = 0; ph < sw; ++ph)
          for (int64_t i = 0; i < L.Lph; ++i) {
            const int64_t col = i * sw + ph - p.pad_left;
            dst[ph * L.Lph + i] = (col >= 0 && col < p.W) ? xr[col] : 0.0f;
          }
      }
      if (L.ones >= 0)
        std::fill(dst + L.ones, dst + L.ones + L.Qv, 1.0f);
    }
  }
}

}  // namespace

bool smallc_applicable(const Conv2dParams& p) {
  return p.groups == 1 && p.N > 0 && p.C > 0 && p.K > 0 && p.P > 0 && p.Q > 0 &&
         p.pad_top >= 0 && p.pad_left >= 0 && p.pad_bottom >= 0 && p.pad_right >= 0 &&
         p.C * p.R * p.S <= kSmallcMaxTaps;
}

SmallcTiling smallc_fwd_tiling(const Conv2dParams& p) {
  const KernelTable& kt = kernels();
  const int64_t VL = kt.smallc_vl, nv = ceil_div(std::max<int64_t>(p.Q, 1), VL);
  const int64_t K = std::max<int64_t>(p.K, 1);
  const double useful = double(K) * double(std::max<int64_t>(p.Q, 1)) / double(VL) / 2.0;
  SmallcTiling best{1, 1, 1e300};
  for (int64_t a = 1; a <= std::min<int64_t>(kSmallcMaxTileK, K); ++a)
    for (int64_t b = 1; b <= std::min<int64_t>(kSmallcMaxTileV, nv); ++b) {
      if (a * b + b + 1 > kt.smallc_regs) continue;
      const double cost = grid_cycles(K, nv, a, b) / useful;
      if (cost < best.cost * (1.0 - 1e-9)) best = {a, b, cost};
    }
  return best;
}

SmallcTiling smallc_wgrad_tiling(const Conv2dParams& p, bool with_db) {
  const KernelTable& kt = kernels();
  const int64_t VL = kt.smallc_vl, Q = std::max<int64_t>(p.Q, 1);
  const int64_t K = std::max<int64_t>(p.K, 1), T = p.C * p.R * p.S + (with_db ? 1 : 0);
  const double useful = double(K) * double(T) / 2.0 * double(Q) / double(round_up(Q, VL));
  SmallcTiling best{1, 1, 1e300};
  for (int64_t a = 1; a <= std::min<int64_t>(kSmallcMaxWgradK, K); ++a)
    for (int64_t b = 1; b <= std::min<int64_t>(kSmallcMaxWgradT, T); ++b) {
      if (a * b + a + 1 > kt.smallc_regs) continue;
      const double cost = grid_cycles(K, T, a, b) / useful;
      if (cost < best.cost * (1.0 - 1e-9)) best = {a, b, cost};
    }
  return best;
}

void conv2d_smallc_forward(const float* x, const float* w, const float* b, float* y,
                           const Conv2dParams& p, int relu) {
  const KernelTable& kt = kernels();
  const int64_t PQ = p.P * p.Q, T = p.C * p.R * p.S;
  const SmallcTiling tiling = smallc_fwd_tiling(p);
  std::vector<float> wt(static_cast<size_t>(T * p.K));
  for (int64_t k = 0; k < p.K; ++k)
    for (int64_t t = 0; t < T; ++t) wt[static_cast<size_t>(t * p.K + k)] = w[k * T + t];

  const int nt_all = threads_for(2.0 * double(p.N) * double(p.K) * double(PQ) * double(T),
                                 1 << 20);
  const int64_t band = std::min<int64_t>(p.P, ceil_div(p.P, ceil_div(4 * int64_t{nt_all}, p.N)));
  const int64_t nband = ceil_div(p.P, band), items = p.N * nband;
  const int nt = static_cast<int>(std::min<int64_t>(nt_all, items));
  const Layout L = make_layout(p, band, false);
  std::vector<Buffer> scratch;
  scratch.reserve(static_cast<size_t>(nt));
  for (int t = 0; t < nt; ++t) scratch.push_back(alloc_floats(p.C * L.plane + L.VL));

  const Conv2dSmallcFn kernel = kt.conv2d_smallc;
  parallel_for(items, [&](int tid, int64_t i0, int64_t i1) {
    float* xs = scratch[static_cast<size_t>(tid)].get();
    for (int64_t item = i0; item < i1; ++item) {
      const int64_t n = item / nband, p0 = (item % nband) * band;
      const int64_t p1 = std::min(p.P, p0 + band);
      fill_rows(x, p, L, n, p0, p1, xs);
      Conv2dSmallcArgs a;
      a.x = xs, a.x_row_stride = p.stride_h * L.RL, a.off = L.off.data(), a.taps = T;
      a.w = wt.data(), a.ldw = p.K, a.bias = b, a.relu = relu;
      a.y = y + n * p.K * PQ + p0 * p.Q, a.y_ch_stride = PQ, a.y_row_stride = p.Q;
      a.kt = p.K, a.rows = p1 - p0, a.Q = p.Q, a.tile_k = tiling.k, a.tile_v = tiling.v;
      kernel(a);
    }
  }, nt);
}

bool conv2d_smallc_weight_grad(const float* dy, const float* relu_y, const float* x, float* dw,
                               float* db, const Conv2dParams& p) {
  const KernelTable& kt = kernels();
  const int64_t PQ = p.P * p.Q, T = p.C * p.R * p.S, Tt = T + (db ? 1 : 0);
  const SmallcTiling tiling = smallc_wgrad_tiling(p, db != nullptr);
  const Layout L = make_layout(p, p.P, db != nullptr);
  const int64_t VL = L.VL, NP = p.N * p.P, nchunk = std::clamp<int64_t>(NP / kMinChunkRows, 1, kMaxChunks);
  const int64_t per_chunk = p.K * Tt * VL;
  Buffer part = alloc_floats(nchunk * per_chunk);
  std::memset(part.get(), 0, sizeof(float) * static_cast<size_t>(nchunk * per_chunk));

  const int nt = static_cast<int>(std::min<int64_t>(
      threads_for(2.0 * double(p.N) * double(p.K) * double(PQ) * double(T), 1 << 20), nchunk));
  std::vector<Buffer> scratch;
  scratch.reserve(static_cast<size_t>(nt));
  for (int t = 0; t < nt; ++t) scratch.push_back(alloc_floats(p.C * L.plane + VL));
  const Conv2dSmallcWgradFn kernel = kt.conv2d_smallc_wgrad;
  parallel_for(nchunk, [&](int tid, int64_t c0, int64_t c1) {
    float* xs = scratch[static_cast<size_t>(tid)].get();
    for (int64_t ch = c0; ch < c1; ++ch) {
      const int64_t r0 = NP * ch / nchunk, r1 = NP * (ch + 1) / nchunk;
      for (int64_t r = r0; r < r1;) {  // the chunk's rows, image by image
        const int64_t n = r / p.P, p0 = r % p.P, p1 = std::min(p.P, p0 + (r1 - r));
        fill_rows(x, p, L, n, p0, p1, xs);
        Conv2dSmallcWgradArgs a;
        a.x = xs, a.x_row_stride = p.stride_h * L.RL, a.off = L.off.data(), a.taps = Tt;
        a.dy = dy + n * p.K * PQ + p0 * p.Q, a.dy_ch_stride = PQ, a.dy_row_stride = p.Q;
        a.relu_y = relu_y ? relu_y + n * p.K * PQ + p0 * p.Q : nullptr;
        a.acc = part.get() + ch * per_chunk, a.acc_ld = Tt * VL;
        a.kt = p.K, a.rows = p1 - p0, a.Q = p.Q, a.tile_k = tiling.k, a.tile_t = tiling.v;
        kernel(a);
        r += p1 - p0;
      }
    }
  }, nt);
  // per (k, tap): the chunks in order, then the lanes in order
  parallel_for(p.K, [&](int, int64_t k0, int64_t k1) {
    for (int64_t k = k0; k < k1; ++k)
      for (int64_t t = 0; t < Tt; ++t) {
        float lanes[64] = {};
        for (int64_t ch = 0; ch < nchunk; ++ch) {
          const float* src = part.get() + ch * per_chunk + (k * Tt + t) * VL;
          for (int64_t l = 0; l < VL; ++l) lanes[l] += src[l];
        }
        float s = 0.0f;
        for (int64_t l = 0; l < VL; ++l) s += lanes[l];
        if (t < T) dw[k * T + t] = s;
        else db[k] = s;
      }
  }, threads_for(double(nchunk * per_chunk), 1 << 16));
  return db != nullptr;
}

}  // namespace fastcnn::cpu
