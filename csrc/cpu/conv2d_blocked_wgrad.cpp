// conv2d_blocked_wgrad.cpp -- the weight gradient of a groups = 1 convolution as the blocked
// direct convolution (conv2d_blocked.cpp's layouts), any kernel size, stride, dilation and
// padding (pads >= 0):
//   dw[k, c, r, s] = sum over n, p, q of dy[n, k, p, q] * xpad[n, c, p*sh + r*dh, q*sw + s*dw]
//
// Layouts (VL = kernels().blocked_vl, Kb = ceil(K / VL), Cb = ceil(C / VL), RS = R*S):
//   x        per band of output rows, the input rows it reads, blocked and padded exactly as the
//            forward's band ([cb][row][Wp][c], blocked_reorder_rows in conv2d_blocked_bwd.cpp).
//   dy       per band, the item's k blocks as pixel-major lines: [kb][p*Q + q][k] (the ISA's
//            block transpose; the channel tail zeros). A fused gradient (BlockedDy: dy routed
//            back through a max pool and a ReLU) is first built for the item's k planes of the
//            image in the thread's scratch (blocked_dy_planes, at the image's first band) and
//            transposed from there: never materialised, the same values.
//   db       (optional) per image, the plane sums of conv2d_backward_bias (the ISA's sum over
//            each (n, k) plane, read right after its transpose, in cache) by the one item whose
//            chunk holds the image's first row; then db[k] = sum over n in order from 0: the
//            bits of that separate pass, without its second read of dy from memory.
//   columns  per channel block RS*VL columns j = tap*VL + c, column j reading x at
//            tap_off[tap] + c: the (tap, channel) pairs of that block.
//   partial  per reduction chunk, [kb][cb][j][k]: Kb*Cb*RS*VL*VL floats.
// The tile (the ISA's conv2d_blocked_wgrad, kernels.h): ocb k blocks x nc columns of
// accumulators in registers, reduced over a whole band's pixels per call (loaded from / stored to
// the chunk's partial between bands). Per pixel: ocb dy lines, nc broadcasts, ocb*nc FMAs: the
// forward's tile with the roles of weights and inputs taken by dy and x.
//
// Reduction order (determinism): the batch's N*P output rows (image-major) are cut into NS
// chunks of consecutive rows, NS fixed by the shape (blocked_wgrad_chunks: up to 16, fewer for
// few rows or a partial buffer past 64 MiB). Each chunk sums its pixels in order (image, row,
// column; one FMA each, from 0, whatever the banding: a band continues its chunk's sums), then
// the chunks are added in chunk order. Work items are (chunk, slice of the k groups): threads
// take items (parallel.h), never change a sum: bit-identical for any thread count.
// NaN / inf: no column is computed and discarded, the padding is real zeros, and the channel
// tails' zero lanes land in dropped lanes: every product summed is one the reference's im2col
// form (and PyTorch) sums: a NaN or inf of x or dy reaches exactly the elements it reaches there.
//
// The tile rule (blocked_wgrad_tiling), as the forward's: per pixel a tile of O k blocks x N
// columns costs step(O, N) = max(O*N / 2, (O + N) / 2, 5) cycles; summed over ceil(Kb / O) k
// groups x Cb blocks x ceil(RS*VL / N) column tiles (the last narrower), per the useful
// K/VL * C*RS / 2 cycles. AVX2 3x3: RS*VL = 72 columns = 12 x 6: 2 x 6 for K = 16, 32, 64
// (cost 1.00); 1x1: 8 columns: 1 x 8 (1.25) against 2 x 6 + 2 x 2 (1.25, the larger tile wins).
// The band: the most output rows whose x rows fit 128 Ki floats and whose dy lines fit 64 Ki
// floats of the thread's scratch (L2), the chunk's rows inside one image at a time; a plane of
// under 1024 pixels takes several whole images of its chunk into one band (the kernel's image
// loop: 64->64 @8 runs 8 images, 512 pixels, a call instead of 64), in the same pixel order.
// Napkin maths, ResNet-20's 32->32 @16, batch 128: 302 MFLOP; the per-band reorders move
// 32*18*18 + 32*256 floats per image (18 K) against 2.4 MFLOP of FMAs; the final reduction adds
// 16 partials of 9216 floats.
#include <algorithm>
#include <cstring>
#include <vector>

#include "cpu/buffer.h"
#include "cpu/conv2d_blocked_bwd.h"
#include "cpu/parallel.h"

namespace fastcnn::cpu {
namespace {

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

constexpr int64_t kXScratch = int64_t{1} << 17;   // floats of x band per thread
constexpr int64_t kDyScratch = int64_t{1} << 16;  // floats of dy band per thread
constexpr int64_t kMaxChunks = 16;                // reduction chunks of the batch rows
constexpr int64_t kPartialCap = int64_t{1} << 24; // floats of partial sums, all chunks
constexpr int64_t kMinPixels = 1024;              // pixels a tile call, where images allow

double step_cycles(int64_t o, int64_t n) {
  return std::max({double(o * n) / 2.0, double(o + n) / 2.0, 5.0});
}

}  // namespace

bool blocked_wgrad_applicable(const Conv2dParams& p) {
  return p.groups == 1 && p.N > 0 && p.P > 0 && p.Q > 0 && p.C > 0 && p.K > 0 && p.H > 0 &&
         p.W > 0 && p.pad_top >= 0 && p.pad_left >= 0 && p.pad_bottom >= 0 && p.pad_right >= 0;
}

BlockedTiling blocked_wgrad_tiling(const Conv2dParams& p) {
  const KernelTable& kt = kernels();
  const int64_t VL = kt.blocked_vl, Kb = ceil_div(p.K, VL), Cb = ceil_div(p.C, VL);
  const int64_t cols = p.R * p.S * VL;
  const double useful = double(std::max<int64_t>(p.K, 1)) / double(VL) *
                        double(std::max<int64_t>(p.C, 1) * p.R * p.S) / 2.0;
  BlockedTiling best{1, 1, 1e300};
  for (int64_t o = 1; o <= kt.blocked_max_ocb; ++o) {
    const int64_t ncap = std::min<int64_t>(kt.blocked_max_nc, kt.blocked_max_acc / o);
    for (int64_t n = ncap; n >= 1; --n) {
      const int64_t fo = Kb / o, ro = Kb % o, fn = cols / n, rn = cols % n;
      auto row = [&](int64_t oo) {
        return double(fn) * step_cycles(oo, n) + (rn ? step_cycles(oo, rn) : 0.0);
      };
      const double cycles = double(Cb) * (double(fo) * row(o) + (ro ? row(ro) : 0.0));
      const double cost = cycles / useful;
      if (cost < best.cost * (1.0 - 1e-9)) best = {o, n, cost};
    }
  }
  return best;
}

int64_t blocked_wgrad_chunks(const Conv2dParams& p) {
  const int64_t VL = kernels().blocked_vl;
  const int64_t per = ceil_div(p.K, VL) * ceil_div(p.C, VL) * p.R * p.S * VL * VL;
  int64_t ns = std::min<int64_t>(kMaxChunks, std::max<int64_t>(p.N * p.P, 1));
  while (ns > 1 && ns * per > kPartialCap) --ns;
  return ns;
}

void conv2d_blocked_weight_grad(const BlockedDy& g, const float* x, float* dw, float* db,
                                const Conv2dParams& p) {
  const KernelTable& kt = kernels();
  const int64_t VL = kt.blocked_vl, Kb = ceil_div(p.K, VL), Cb = ceil_div(p.C, VL);
  const int64_t RS = p.R * p.S, PQ = p.P * p.Q, cols = RS * VL;
  const int64_t Wp = p.W + p.pad_left + p.pad_right;
  const BlockedTiling tiling = blocked_wgrad_tiling(p);
  const int64_t ocb = tiling.ocb, nc = tiling.nc;
  const int64_t kgroups = ceil_div(Kb, ocb);
  const int64_t wtile = Cb * cols * VL;  // partial floats per k block
  const int64_t NS = blocked_wgrad_chunks(p), rows_all = p.N * p.P;
  // k-group slices per chunk: enough items for the threads when chunks are few (shape only)
  const int64_t KGI = std::min(kgroups, ceil_div(kMaxChunks, NS));
  const int64_t kb_slice = ceil_div(kgroups, KGI) * ocb;  // k blocks of an item, at most
  const int64_t items = NS * KGI;

  auto rows_in = [&](int64_t band) { return (band - 1) * p.stride_h + (p.R - 1) * p.dil_h + 1; };
  const int64_t kbs = std::min(kb_slice, Kb);
  int64_t band = std::min(p.P, ceil_div(rows_all, NS));
  while (band > 1 && (Cb * rows_in(band) * Wp * VL > kXScratch ||
                      kbs * band * p.Q * VL > kDyScratch))
    --band;
  // whole images of a small plane side by side in one band (>= kMinPixels pixels a call)
  int64_t imgs = 1;
  if (band == p.P)
    while (imgs * PQ < kMinPixels && imgs < ceil_div(rows_all, NS * p.P) &&
           Cb * (imgs + 1) * rows_in(band) * Wp * VL <= kXScratch &&
           kbs * (imgs + 1) * PQ * VL <= kDyScratch)
      ++imgs;
  const int64_t ximg = rows_in(band) * Wp * VL;  // floats per image of an x band and block
  const int64_t plane = imgs * ximg;             // floats per channel block of an x band
  const int64_t dstride = imgs * band * p.Q * VL;  // floats per k block of a dy band
  const double flops = 2.0 * double(p.N) * double(p.K) * double(p.C) * double(RS) * double(PQ);
  const int nt = static_cast<int>(std::min<int64_t>(threads_for(flops, 1 << 20), items));
  // a fused gradient: the item's planes of each image of a band, built in the thread's scratch
  const bool fused = g.fused();
  const int64_t gimg = kbs * VL * PQ;  // floats per image of those planes
  std::vector<Buffer> xs_buf, dys_buf, gs_buf;
  for (int t = 0; t < nt; ++t) {
    xs_buf.push_back(alloc_floats(Cb * plane));
    dys_buf.push_back(alloc_floats(kbs * dstride));
    if (fused) gs_buf.push_back(alloc_floats(imgs * gimg));
  }
  Buffer part = alloc_floats(NS * Kb * wtile);
  // db: the plane sums (n, k) of conv2d_backward_bias, each by the item whose chunk holds the
  // image's first row, added over n in order at the end
  Buffer psum = db ? alloc_floats(p.N * p.K) : Buffer();
  const SumFn sum = kt.sum;

  std::vector<int64_t> col_off(static_cast<size_t>(cols));
  for (int64_t r = 0; r < p.R; ++r)
    for (int64_t s = 0; s < p.S; ++s)
      for (int64_t c = 0; c < VL; ++c)
        col_off[static_cast<size_t>((r * p.S + s) * VL + c)] =
            (r * p.dil_h * Wp + s * p.dil_w) * VL + c;

  const TransposeFn transpose = kt.transpose;
  const Conv2dBlockedWgradFn kernel = kt.conv2d_blocked_wgrad;
  parallel_for(items, [&](int tid, int64_t i0, int64_t i1) {
    float* xs = xs_buf[static_cast<size_t>(tid)].get();
    float* dys = dys_buf[static_cast<size_t>(tid)].get();
    float* gs = fused ? gs_buf[static_cast<size_t>(tid)].get() : nullptr;
    for (int64_t item = i0; item < i1; ++item) {
      const int64_t sp = item / KGI, gi = item % KGI;
      const int64_t kg0 = kgroups * gi / KGI, kg1 = kgroups * (gi + 1) / KGI;
      const int64_t kb0 = kg0 * ocb, kb1 = std::min(Kb, kg1 * ocb);
      float* part_sp = part.get() + sp * Kb * wtile;
      const int64_t r0 = rows_all * sp / NS, r1 = rows_all * (sp + 1) / NS;
      bool first = true;
      for (int64_t gr = r0; gr < r1;) {
        const int64_t n = gr / p.P, pa = gr % p.P, pe = std::min(p.P, pa + (r1 - gr));
        // whole images from here: up to `imgs` of them in one band
        const int64_t nb = pa == 0 ? std::max<int64_t>(1, std::min(imgs, (r1 - gr) / p.P)) : 1;
        for (int64_t p0 = pa; p0 < pe; p0 += band) {
          const int64_t p1 = std::min(pe, p0 + band), nrow = p1 - p0;
          // 1. the band's x rows and dy lines, blocked, image by image (a fused gradient's
          // planes built at the image's first band of the item, kept for its other bands)
          const int64_t k0 = kb0 * VL, k1 = std::min(p.K, kb1 * VL);
          for (int64_t b = 0; b < nb; ++b) {
            blocked_reorder_rows(x + (n + b) * p.C * p.H * p.W, p.C, p.H, p.W, p0 * p.stride_h,
                                 rows_in(nrow), p.pad_top, p.pad_left, Wp, xs + b * ximg, plane);
            if (fused && p0 == pa) blocked_dy_planes(g, p, n + b, k0, k1, gs + b * gimg);
            const float* src = fused ? gs + b * gimg : g.dy + ((n + b) * p.K + k0) * PQ;
            for (int64_t kb = kb0; kb < kb1; ++kb) {
              const int64_t kn = std::min(VL, p.K - kb * VL);
              float* dst = dys + (kb - kb0) * dstride + b * nrow * p.Q * VL;
              if (kn < VL)
                std::memset(dst, 0, sizeof(float) * static_cast<size_t>(nrow * p.Q * VL));
              transpose(src + (kb - kb0) * VL * PQ + p0 * p.Q, PQ, kn, nrow * p.Q, dst, VL);
            }
            if (db && p0 == 0)  // the image's first row is in this chunk: its plane sums
              for (int64_t k = k0; k < k1; ++k)
                psum[(n + b) * p.K + k] = sum(src + (k - k0) * PQ, PQ);
          }
          // 2. the item's tiles over the band's pixels
          Conv2dBlockedWgradArgs a;
          a.dy_ob_stride = dstride, a.imgs = nb, a.rows = nrow, a.cols = p.Q;
          a.x_img_stride = ximg, a.x_row_stride = p.stride_h * Wp * VL;
          a.x_col_stride = p.stride_w * VL;
          a.out_ob_stride = wtile, a.accumulate = first ? 0 : 1;
          for (int64_t kb = kb0; kb < kb1; kb += ocb) {
            a.ocb = std::min(ocb, kb1 - kb);
            a.dy = dys + (kb - kb0) * dstride;
            for (int64_t cb = 0; cb < Cb; ++cb)
              for (int64_t j0 = 0; j0 < cols; j0 += nc) {
                a.nc = std::min(nc, cols - j0);
                for (int64_t j = 0; j < a.nc; ++j)
                  a.x[j] = xs + cb * plane + col_off[static_cast<size_t>(j0 + j)];
                a.out = part_sp + (kb * Cb + cb) * cols * VL + j0 * VL;
                kernel(a);
              }
          }
          first = false;
        }
        gr += nb > 1 ? nb * p.P : pe - pa;
      }
    }
  }, nt);

  // the chunks' partials added in chunk order into chunk 0's (contiguous lines), then
  // transposed into dw (K, C, R, S)
  const int64_t chunk = Kb * wtile;
  const AddFn add = kt.add;
  parallel_for(Kb, [&](int, int64_t k0, int64_t k1) {
    for (int64_t sp = 1; sp < NS; ++sp)
      add(part.get() + k0 * wtile, part.get() + sp * chunk + k0 * wtile, (k1 - k0) * wtile);
    for (int64_t kb = k0; kb < k1; ++kb)
      for (int64_t kl = 0; kl < VL && kb * VL + kl < p.K; ++kl) {
        const int64_t k = kb * VL + kl;
        for (int64_t c = 0; c < p.C; ++c) {
          const int64_t cb = c / VL, cl = c % VL;
          const float* src = part.get() + (kb * Cb + cb) * cols * VL + cl * VL + kl;
          float* d = dw + (k * p.C + c) * RS;
          for (int64_t t = 0; t < RS; ++t) d[t] = src[t * VL * VL];
        }
      }
  }, threads_for(double(NS) * double(chunk), 1 << 21));  // its own threads only when large
  if (db)
    for (int64_t k = 0; k < p.K; ++k) {
      float s = 0.0f;
      for (int64_t n = 0; n < p.N; ++n) s += psum[n * p.K + k];
      db[k] = s;
    }
}

}  // namespace fastcnn::cpu
