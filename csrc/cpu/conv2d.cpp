// conv2d.cpp -- 2-D convolution, forward and backward, as implicit GEMMs on the packed driver,
// or on the wide grid (conv2d_wide.cpp) or, for the forward and stride-1 backward-data, as the
// blocked direct convolution (conv2d_blocked.cpp) where conv2d_route.cpp's shape rule says so.
//
// GEMM forms, over blocks of B images (B = conv2d_route.cpp's imgs: 1 for planes of >= 240
// pixels; for small planes several, so that a problem's columns fill the micro-kernel's NR):
//   forward          y[n0.., g] (Kg x B*PQ) = W[g] (Kg x CgRS) . col(x[n0..n0+B, g])
//                    (CgRS x B*PQ), column j = (image b, pixel pq); G = ceil(N/B)*groups
//   backward-data    dcol (CgRS x B*PQ) = W[g]^T (CgRS x Kg) . dy[n0..n0+B, g] (Kg x B*PQ),
//                    added into dx tile by tile (col2im) by the one thread that owns the block:
//                    no races, a fixed order, and only real taps contribute (a NaN or inf
//                    weight stays where PyTorch puts it; a gather over zero-padded dy would
//                    spread it).
//   backward-weights dW[g] (Kg x CgRS)  = sum over n of dy[n,g] (Kg x PQ) . col(x[n,g])^T,
//                    the batch and pixels forming one reduction of length N*P*Q in fixed order.
// col() is never materialised: the B packer (the ISA's conv2d_im2col_batch /
// conv2d_im2col_wgrad) gathers each KC x NC block straight from the images (zero for padding
// and for the columns of a last block past the batch), so the workspace is bounded by the
// block sizes, not by the batch. The store scatters each tile's columns back image by image.
// Napkin maths: seeds' conv2 (32->64, 3x3, 26x26 -> 24x24), batch 64: 2*64*64*288*576 = 1.36
// GFLOP per pass; packing gathers CgRS*PQ elements per image against 2*Kg flops each. ResNet's
// 32->64 3x3 / 2 (16x16 -> 8x8), batch 128: B = 7 images, 448 columns a problem (19 panels of
// NR = 24, 0.4 % padding) instead of 64 columns padded to 72 per image (11 %).
#include <algorithm>
#include <cstring>
#include <vector>

#include "cpu/buffer.h"
#include "cpu/conv2d_blocked.h"
#include "cpu/conv2d_blocked_bwd.h"
#include "cpu/conv2d_route.h"
#include "cpu/conv2d_smallc.h"
#include "cpu/conv2d_stats.h"
#include "cpu/conv2d_wide.h"
#include "cpu/gemm.h"
#include "cpu/kernels.h"
#include "cpu/ops.h"
#include "cpu/parallel.h"

namespace fastcnn::cpu {
namespace {

// Per-row sources of one packed block for the ISA's implicit-im2col kernels (kc <= kGemmKC rows;
// a B panel of the weight gradient has nr <= kGemmKC columns too).
struct Rows {
  const float* plane[kGemmKC];
  int64_t bh[kGemmKC], bw[kGemmKC];
};

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Whole zero panels for columns [ceil(from / nr) * nr, to) of a kc-row B block (the packers
// zero-pad the panel that holds column from - 1 themselves).
void zero_columns(float* dst, int64_t kc, int64_t nr, int64_t from, int64_t to) {
  for (int64_t pn = ceil_div(from, nr); pn < ceil_div(to, nr); ++pn)
    std::memset(dst + pn * kc * nr, 0, sizeof(float) * static_cast<size_t>(kc * nr));
}

// The columns [j0, j0 + nc) of a batched problem (column j = image*PQ + pixel) cut at image
// boundaries, images < nimg only: f(image, first pixel, count, offset of the run in the block).
template <class F>
void for_each_image(int64_t j0, int64_t nc, int64_t PQ, int64_t nimg, F&& f) {
  for (int64_t j = j0; j < j0 + nc;) {
    const int64_t img = j / PQ, pq = j % PQ, len = std::min(PQ - pq, j0 + nc - j);
    if (img >= nimg) return;
    f(img, pq, len, j - j0);
    j += len;
  }
}

}  // namespace

void conv2d_forward(const float* x, const float* w, const float* b, float* y,
                    const Conv2dParams& p, int relu, const ConvBatchStats* stats) {
  if (stats) {  // the blocked form gathers them band by band, the others right after
    ConvStatsPlan plan = conv_stats_plan(p);
    if (route_forward(p).blocked) conv2d_blocked_forward(x, w, b, y, p, relu, &plan);
    else {
      conv2d_forward(x, w, b, y, p, relu, nullptr);
      conv_stats_gather_all(plan, y);
    }
    conv_stats_finish(plan, *stats);
    return;
  }
  const ConvRoute route = route_forward(p);
  if (route.smallc) {
    conv2d_smallc_forward(x, w, b, y, p, relu);
    return;
  }
  if (route.blocked) {
    conv2d_blocked_forward(x, w, b, y, p, relu);
    return;
  }
  if (route.wide) {
    WideConv cv;
    cv.x = x, cv.w = w, cv.b = b, cv.y = y;
    cv.N = p.N, cv.C = p.C, cv.H = p.H, cv.W = p.W, cv.K = p.K, cv.R = p.R, cv.S = p.S;
    cv.groups = p.groups, cv.dil_h = p.dil_h, cv.dil_w = p.dil_w;
    cv.pad_top = p.pad_top, cv.pad_left = p.pad_left, cv.pad_bottom = p.pad_bottom;
    cv.pad_right = p.pad_right, cv.stride_h = p.stride_h, cv.stride_w = p.stride_w;
    cv.imgs = route.imgs;
    wide_correlate(cv, relu);
    return;
  }
  if (p.N == 0) return;
  // problem g = blk*groups + grp: images [blk*B, blk*B + B) of group grp, column j = b*PQ + pq
  // (b < B; the last block's columns past the batch are zeros, computed and dropped)
  const int64_t Cg = p.Cg(), Kg = p.Kg(), CRSg = p.CRSg(), HW = p.H * p.W, PQ = p.P * p.Q;
  const int64_t RS = p.R * p.S, B = route.imgs, nblk = ceil_div(p.N, B);
  GemmProblem prob;
  prob.G = nblk * p.groups, prob.M = Kg, prob.N = B * PQ, prob.K = CRSg, prob.a_groups = p.groups;
  prob.pack_a = [&](int64_t g, int64_t i0, int64_t mc, int64_t k0, int64_t kc, float* dst, int mr) {
    const int64_t grp = g % p.groups;
    pack_a_strided(w + grp * Kg * CRSg, CRSg, 1, i0, mc, k0, kc, dst, mr);
  };
  const Conv2dIm2colBatchFn im2col = kernels().conv2d_im2col_batch;
  prob.pack_b = [&](int64_t g, int64_t k0, int64_t kc, int64_t j0, int64_t nc, float* dst, int nr,
                    float* scratch) {
    const int64_t n0 = (g / p.groups) * B, grp = g % p.groups;
    // images past the batch: the columns from there on read nothing (zeros)
    const int64_t real = std::max<int64_t>(std::min(nc, (p.N - n0) * PQ - j0), 0);
    const float* xg = x + (n0 * p.C + grp * Cg) * HW;
    Rows rows;
    for (int64_t k = 0; k < kc; ++k) {
      const int64_t c = (k0 + k) / RS, r = ((k0 + k) / p.S) % p.R, s = (k0 + k) % p.S;
      rows.plane[k] = xg + c * HW;
      rows.bh[k] = r * p.dil_h - p.pad_top;
      rows.bw[k] = s * p.dil_w - p.pad_left;
    }
    if (real > 0)
      im2col(rows.plane, rows.bh, rows.bw, kc, p.C * HW, j0, real, p.P, p.Q, p.H, p.W, p.stride_h,
             p.stride_w, dst, nr);
    if (real < nc) zero_columns(dst, kc, nr, real, nc);
  };
  const StoreTileFn store = kernels().store_tile;
  prob.store = [&](int64_t g, int64_t i0, int64_t mc, int64_t j0, int64_t nc, const float* src,
                   int64_t lds) {
    const int64_t n0 = (g / p.groups) * B, grp = g % p.groups;
    for_each_image(j0, nc, PQ, p.N - n0, [&](int64_t img, int64_t pq, int64_t len, int64_t off) {
      float* dst = y + ((n0 + img) * p.K + grp * Kg + i0) * PQ + pq;
      store(dst, PQ, src + off, lds, mc, len, b ? b + grp * Kg + i0 : nullptr, nullptr, relu, 0);
    });
  };
  gemm(prob);
}

namespace {

// dx[n, g] = col2im(W[g]^T (CgRS x Kg) . dy[n, g] (Kg x PQ)): B is dy itself (a plain copy to
// pack), A the prepacked transposed weights, and each finished tile of columns is added into dx
// at its (c, r, s) taps. Problem g = blk*groups + grp covers images [blk*B, blk*B + B) (column
// j = b*PQ + pq; conv2d_route.cpp's imgs). One thread owns each problem, so the additions never
// race, and every element of dx receives its taps' values in row (c, r, s) order, one column
// each: the same sums for any B, blocking or thread count.
void backward_data_col2im(const float* dy, const float* w, float* dx, const Conv2dParams& p,
                          int64_t B) {
  if (p.N == 0) return;
  const int64_t Cg = p.Cg(), Kg = p.Kg(), CRSg = p.CRSg(), HW = p.H * p.W, PQ = p.P * p.Q;
  const int64_t RS = p.R * p.S, nblk = ceil_div(p.N, B);
  GemmProblem prob;
  prob.G = nblk * p.groups, prob.M = CRSg, prob.N = B * PQ, prob.K = Kg;
  prob.a_groups = p.groups;
  prob.serial_per_g = true;
  prob.pack_a = [&](int64_t g, int64_t i0, int64_t mc, int64_t k0, int64_t kc, float* dst, int mr) {
    const int64_t grp = g % p.groups;
    pack_a_strided(w + grp * Kg * CRSg, 1, CRSg, i0, mc, k0, kc, dst, mr);
  };
  prob.pack_b = [&](int64_t g, int64_t k0, int64_t kc, int64_t j0, int64_t nc, float* dst, int nr,
                    float*) {
    const int64_t n0 = (g / p.groups) * B, grp = g % p.groups;
    if (B == 1) {  // one image: a plain strided block
      pack_b_strided(dy + (n0 * p.K + grp * Kg) * PQ, PQ, 1, k0, kc, j0, nc, dst, nr);
      return;
    }
    // the block's columns image by image into their panel lanes, zeros past the batch
    int64_t filled = 0;
    for_each_image(j0, nc, PQ, p.N - n0, [&](int64_t img, int64_t pq, int64_t len, int64_t off) {
      const float* src = dy + ((n0 + img) * p.K + grp * Kg + k0) * PQ + pq;
      for (int64_t t = 0; t < len;) {
        const int64_t col = off + t, lane = col % nr, cnt = std::min(len - t, nr - lane);
        float* d = dst + (col / nr) * kc * nr + lane;
        for (int64_t k = 0; k < kc; ++k)
          std::memcpy(d + k * nr, src + k * PQ + t, sizeof(float) * static_cast<size_t>(cnt));
        t += cnt;
      }
      filled = off + len;
    });
    // the rest of the last written panel, then whole zero panels
    if (filled % nr != 0) {
      float* d = dst + (filled / nr) * kc * nr;
      for (int64_t k = 0; k < kc; ++k)
        std::memset(d + k * nr + filled % nr, 0,
                    sizeof(float) * static_cast<size_t>(nr - filled % nr));
    }
    zero_columns(dst, kc, nr, filled, nc);
  };
  const AddFn add = kernels().add;
  prob.store = [&](int64_t g, int64_t i0, int64_t mc, int64_t j0, int64_t nc, const float* src,
                   int64_t lds) {
    const int64_t n0 = (g / p.groups) * B, grp = g % p.groups;
    if (i0 == 0 && j0 == 0)
      for (int64_t img = 0; img < std::min(B, p.N - n0); ++img)
        std::memset(dx + ((n0 + img) * p.C + grp * Cg) * HW, 0,
                    sizeof(float) * static_cast<size_t>(Cg * HW));
    for_each_image(j0, nc, PQ, p.N - n0, [&](int64_t img, int64_t pq0, int64_t cnt, int64_t off) {
      float* dxg = dx + ((n0 + img) * p.C + grp * Cg) * HW;
      for (int64_t i = 0; i < mc; ++i) {
        const int64_t row = i0 + i, c = row / RS, r = (row / p.S) % p.R, s = row % p.S;
        float* plane = dxg + c * HW;
        const float* t = src + i * lds + off;
        const int64_t bw = s * p.dil_w - p.pad_left;
        int64_t j = pq0;
        while (j < pq0 + cnt) {
          const int64_t op = j / p.Q, oq = j % p.Q;
          const int64_t len = std::min(p.Q - oq, pq0 + cnt - j);
          const int64_t h = op * p.stride_h - p.pad_top + r * p.dil_h;
          if (h >= 0 && h < p.H) {
            // columns q in [oq, oq+len) land on w = q*sw + bw; keep those inside [0, W)
            const int64_t sw = p.stride_w, w0 = oq * sw + bw;
            const int64_t lo = w0 >= 0 ? 0 : std::min(len, (-w0 + sw - 1) / sw);
            const int64_t hi = w0 <= p.W - 1 ? std::min(len, (p.W - 1 - w0) / sw + 1) : 0;
            float* drow = plane + h * p.W;
            const float* tv = t + (j - pq0);
            if (sw == 1) {
              if (hi > lo) add(drow + w0 + lo, tv + lo, hi - lo);
            } else {
              for (int64_t u = lo; u < hi; ++u) drow[w0 + u * sw] += tv[u];
            }
          }
          j += len;
        }
      }
    });
  };
  gemm(prob);
}

// dx = dy (through the ReLU whose output is relu_y, when given) padded by (R-1)*dh - pad,
// correlated with wt[g*Cg + c, k, r, s] = w[g*Kg + k, c, R-1-r, S-1-s] (flipped taps, (k, c)
// transposed per group): a stride-1 convolution again.
void backward_data_wide_run(const float* dy, const float* relu_y, const PooledGrad* pooled,
                            const float* w, float* dx, const Conv2dParams& p, int64_t imgs) {
  const int64_t Cg = p.Cg(), Kg = p.Kg(), RS = p.R * p.S;
  std::vector<float> wt(static_cast<size_t>(p.K * Cg * RS));
  for (int64_t g = 0; g < p.groups; ++g)
    for (int64_t k = 0; k < Kg; ++k)
      for (int64_t c = 0; c < Cg; ++c) {
        const float* src = w + ((g * Kg + k) * Cg + c) * RS;
        float* dst = wt.data() + ((g * Cg + c) * Kg + k) * RS;
        for (int64_t t = 0; t < RS; ++t) dst[t] = src[RS - 1 - t];
      }
  WideConv cv;
  cv.x = dy, cv.w = wt.data(), cv.b = nullptr, cv.y = dx, cv.relu_mask = relu_y;
  cv.pooled = pooled;
  cv.N = p.N, cv.C = p.K, cv.H = p.P, cv.W = p.Q, cv.K = p.C, cv.R = p.R, cv.S = p.S;
  cv.groups = p.groups, cv.dil_h = p.dil_h, cv.dil_w = p.dil_w;
  cv.pad_top = (p.R - 1) * p.dil_h - p.pad_top, cv.pad_bottom = (p.R - 1) * p.dil_h - p.pad_bottom;
  cv.pad_left = (p.S - 1) * p.dil_w - p.pad_left, cv.pad_right = (p.S - 1) * p.dil_w - p.pad_right;
  cv.imgs = imgs;
  wide_correlate(cv, 0);
}

// dW = dy . im2col(x)^T as a split-K GEMM on the packed driver (any geometry)
void backward_weights_gemm(const float* dy, const float* x, float* dw, const Conv2dParams& p) {
  const int64_t Cg = p.Cg(), Kg = p.Kg(), CRSg = p.CRSg(), HW = p.H * p.W, PQ = p.P * p.Q;
  const int64_t RS = p.R * p.S;
  GemmProblem prob;
  prob.G = p.groups, prob.M = Kg, prob.N = CRSg, prob.K = p.N * PQ, prob.split_k = true;
  const TransposeFn transpose = kernels().transpose;
  prob.pack_a = [&](int64_t grp, int64_t i0, int64_t mc, int64_t k0, int64_t kc, float* dst,
                    int mr) {
    // A[i, k] = dy[n, grp*Kg + i, pq] with k = n*PQ + pq: per image, a block transpose
    for (int64_t q0 = 0; q0 < mc; q0 += mr) {
      const int64_t rows = std::min<int64_t>(mr, mc - q0);
      float* d = dst + (q0 / mr) * kc * mr;
      int64_t k = 0;
      while (k < kc) {
        const int64_t n = (k0 + k) / PQ, pq = (k0 + k) % PQ;
        const int64_t len = std::min(PQ - pq, kc - k);
        transpose(dy + (n * p.K + grp * Kg + i0 + q0) * PQ + pq, PQ, rows, len, d + k * mr, mr);
        k += len;
      }
      for (int64_t rr = rows; rr < mr; ++rr)
        for (int64_t kk = 0; kk < kc; ++kk) d[kk * mr + rr] = 0.0f;
    }
  };
  const Conv2dIm2colWgradFn conv2d_im2col_wgrad = kernels().conv2d_im2col_wgrad;
  prob.pack_b = [&](int64_t grp, int64_t k0, int64_t kc, int64_t j0, int64_t nc, float* dst,
                    int nr, float* scratch) {
    // B[k, j] = x[n, grp*Cg + c, p*sh - pt + r*dh, q*sw - pl + s*dw], k = (n, p, q), j = (c, r, s):
    // the nr im2col rows of a panel, transposed into it (the ISA's conv2d_im2col_wgrad).
    Rows rows;
    for (int64_t q0 = 0; q0 < nc; q0 += nr) {
      const int64_t cols = std::min<int64_t>(nr, nc - q0);
      float* d = dst + (q0 / nr) * kc * nr;
      for (int64_t col = 0; col < cols; ++col) {
        const int64_t j = j0 + q0 + col;
        const int64_t c = j / RS, r = (j / p.S) % p.R, s = j % p.S;
        rows.plane[col] = x + (grp * Cg + c) * HW;
        rows.bh[col] = r * p.dil_h - p.pad_top;
        rows.bw[col] = s * p.dil_w - p.pad_left;
      }
      conv2d_im2col_wgrad(rows.plane, rows.bh, rows.bw, cols, p.C * HW, k0, kc, p.P, p.Q, p.H, p.W,
                          p.stride_h, p.stride_w, d, nr, scratch);
    }
  };
  const StoreTileFn store = kernels().store_tile;
  prob.store = [&](int64_t grp, int64_t i0, int64_t mc, int64_t j0, int64_t nc, const float* src,
                   int64_t lds) {
    store(dw + (grp * Kg + i0) * CRSg + j0, CRSg, src, lds, mc, nc, nullptr, nullptr, 0, 0);
  };
  gemm(prob);
}

}  // namespace

void conv2d_backward(const float* dy, const float* relu_y, const PooledGrad* pooled,
                     const float* x, const float* w, float* dx, float* dw, float* db,
                     const Conv2dParams& p) {
  // The gradient of the convolution's output: dy, or dy routed back through the pooling, then
  // through the ReLU. The wide and blocked passes build it plane by plane / image by image in
  // their own scratch from those; it is materialised only for a path that can't (the GEMM
  // forms, a bias gradient without the blocked weight gradient).
  Buffer dz;
  auto plain_dy = [&]() -> const float* {
    if (!relu_y && !pooled) return dy;
    if (!dz) {
      const int64_t n = p.N * p.K * p.P * p.Q;
      dz = alloc_floats(n);
      const float* g = dy;
      if (pooled) {
        max_pool2d_backward(dy, pooled->idx, dz.get(), pooled->pp);
        g = dz.get();
      }
      if (relu_y) relu_backward(g, relu_y, dz.get(), n);
    }
    return dz.get();
  };
  // the blocked passes build a fused gradient image by image in their scratch (BlockedDy)
  BlockedDy bdy;
  bdy.dy = dy, bdy.relu_y = relu_y, bdy.pooled = pooled;
  if (dx) {
    // the wide form multiplies the padding's zeros by every weight: finite weights only
    const bool w_finite = all_finite(w, p.K * p.Cg() * p.R * p.S);
    const ConvRoute route = route_backward_data(p, w_finite);
    if (route.blocked && (p.stride_h > 1 || p.stride_w > 1))
      conv2d_blocked_backward_data_strided(bdy, w, dx, p);
    else if (route.blocked && bdy.fused()) conv2d_blocked_backward_data_fused(bdy, w, dx, p);
    else if (route.blocked) conv2d_blocked_backward_data(dy, w, dx, p);
    else if (route.wide) backward_data_wide_run(dy, relu_y, pooled, w, dx, p, route.imgs);
    else backward_data_col2im(plain_dy(), w, dx, p, route.imgs);
  }
  bool db_done = false;
  if (dw) {
    if (route_wgrad_smallc(p))
      db_done = conv2d_smallc_weight_grad(pooled ? plain_dy() : dy, pooled ? nullptr : relu_y, x,
                                          dw, db, p);
    else if (route_wgrad_blocked(p)) {
      conv2d_blocked_weight_grad(bdy, x, dw, db, p);  // db from the same reads of dy
      db_done = true;
    } else if (route_wgrad_wide(p) && wide_weight_grad(p, dy, relu_y, pooled, x, dw, db))
      db_done = true;
    else
      backward_weights_gemm(plain_dy(), x, dw, p);
  }
  if (db && !db_done) conv2d_backward_bias(plain_dy(), db, p.N, p.K, p.P * p.Q);
}

void conv2d_backward_bias(const float* dy, float* db, int64_t N, int64_t K, int64_t L) {
  const SumFn sum = kernels().sum;
  parallel_for(K, [&](int, int64_t begin, int64_t end) {
    for (int64_t k = begin; k < end; ++k) {
      float s = 0.0f;
      for (int64_t n = 0; n < N; ++n) s += sum(dy + (n * K + k) * L, L);
      db[k] = s;
    }
  }, threads_for(double(N) * double(K) * double(L), 1 << 15));
}

}  // namespace fastcnn::cpu
