// conv2d_wide.cpp -- convolution as a "wide-grid" direct convolution: no im2col.
//
// For stride 1 the im2col row of tap (c, r, s) is the zero-padded image plane c read at
//   xp[c][(p + r*dh) * Wp + q + s*dw]           (Wp = padded width)
// and if the outputs are numbered on the padded grid, j = p*Wp + q, that is xp[c] + off + j with
// off = r*dh*Wp + s*dw: a *contiguous* run of j for every tap. So a GEMM micro-kernel can read its
// B rows straight from the padded image at per-tap offsets (the ISA's conv2d_ukernel) instead of
// from packed im2col panels. Columns with q >= Q (the last (S-1)*dw of every padded row) read
// the next row's data and are computed and discarded: a waste of (S-1)*dw / Wp (2/26 for the
// seeds' conv2, 2/58 for a 56x56 layer), against the whole im2col gather saved.
//
//   y[n, g*Kg + i, p, q] = bias + sum_{c, r, s} W[g*Kg + i, c, r, s] * xp[n, g, c][off(c,r,s) + j]
//
// Work items are (image, group, band of output rows); an item copies its band of the input
// (plus the (R-1)*dh halo rows) into the thread's zero-padded scratch, then runs MR x NR tiles
// over it: for each NR-column strip, every MR-row weight panel (prepacked once per call), the B
// data of the strip staying in L1/L2. Each output is reduced by one micro-kernel call over all
// Cg*R*S taps in tap order, so results do not depend on the thread count or the banding.
//
// Backward-data of a stride-1 convolution is itself a stride-1 correlation: dx = dy padded by
// (R-1)*dh - pad (a crop when negative) correlated with the weights flipped in r, s and
// transposed in (k, c) per group, so it runs on the same code. That form multiplies zeros of the
// padding with every weight, so it is used only when the weights are all finite (a NaN or inf
// weight must stay local, as in PyTorch: conv2d.cpp's col2im form handles that case).
// The weight gradient runs on the same padded grid as an outer product per pixel:
//   dw[g*Kg + k, tap] = sum_n sum_j xp[n, g, c(tap)][off(tap) + j] * dyw[n, g*Kg + k][j]
// with dyw = dy on the padded grid (zeros in the discarded columns), transposed to pixel-major
// per image. The ISA's conv2d_wgrad_ukernel keeps a 12-tap x 32-channel tile in registers:
// per pixel 12 broadcast input values (at the taps' offsets) times two vectors of dy, summed
// over all of an image's pixels before touching memory. Tiles are the parallel work (the batch
// is also cut into a shape-fixed number of ranges when tiles are few), so a given element's sum
// order never depends on the thread count. Multiplying the discarded columns' x by zeros would
// turn an inf or NaN of x into NaN where the im2col form (PyTorch's) keeps it local, so an input
// that holds one goes to conv2d.cpp's GEMM form instead.
// Fused backward inputs: the backward passes read dy only through the band copy and the
// per-image transposition, so dy can be given as the gradient of a ReLU's output (relu_y:
// masked while copied) and of a max pooling of it (pooled: each plane rebuilt with the ISA's
// maxpool2d_bwd kernel into the thread's scratch as it is needed), never materialised in full.
// Strides: with stride s the tap (c, r, s) of output (p, q) reads padded element
// (p*sh + r*dh, q*sw + s*dw) = phase plane (r*dh % sh, s*dw % sw) of channel c at (p + r*dh/sh,
// q + s*dw/sw), where phase plane (a, b) holds the padded elements (i*sh + a, j*sw + b) at (i, j):
// a stride-1 read again, on a grid of Wg = ceil(Wp / sw) columns. So the forward pass and the
// weight gradient of a strided convolution run on the same code over the input's sh*sw phase
// planes (the band copy / image copy splits them, phase_split), with the taps' offsets into
// them; the forward only where windows span two strides or more (several taps per phase plane:
// a 3x3 / 2 measured faster through the GEMM form), the weight gradient wherever they overlap.
// Small planes (WideConv::imgs > 1, stride 1): B images side by side in one grid, a grid row
// being pad_left zeros, then per image its W columns and max(pad_left, pad_right) zeros (the
// neighbours share their padding), image b's output q at grid column b*(W + sep) + q; a strip
// then straddles images and the store splits it image by image. Each output's taps are the same
// chunks in the same order as with one image per grid: bit-identical results. 64->64 3x3 on
// 8x8: 80 grid columns per image in 4 strips of 24 (67 % kept) become, for 8 images, 584
// columns in 25 strips (85 % kept; conv2d_route.cpp chooses B).
// Napkin maths (seeds' conv2, 32->64 3x3 on 26x26, batch 64): 1.36 GFLOP per pass; the band copy
// moves 32*26*26 floats per image (86 KB) against 21 MFLOP of micro-kernel work.
#include "cpu/conv2d_wide.h"

#include <emmintrin.h>  // SSE2 (baseline x86-64): the stride-2 row gather

#include <algorithm>
#include <cstring>
#include <vector>

#include "common/check.h"
#include "cpu/buffer.h"
#include "cpu/gemm.h"
#include "cpu/kernels.h"
#include "cpu/parallel.h"

namespace fastcnn::cpu {
namespace {

constexpr int64_t kScratchFloats = int64_t{1} << 16;  // 256 KiB band per thread when possible

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
// floor / ceil of a / b for any sign of a, b > 0
int64_t floor_div_signed(int64_t a, int64_t b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }
int64_t ceil_div_signed(int64_t a, int64_t b) { return a >= 0 ? (a + b - 1) / b : -((-a) / b); }

// The band copies move short rows (often 24-64 floats): a call to memcpy per row costs more than
// the copy, so these loops must stay loops (GCC would otherwise turn them back into calls).
#if defined(__GNUC__) && !defined(__clang__)
#define FASTCNN_NO_LIBCALL __attribute__((optimize("no-tree-loop-distribute-patterns")))
#else
#define FASTCNN_NO_LIBCALL
#endif

FASTCNN_NO_LIBCALL inline void copy_row(float* dst, const float* src, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dst[i] = src[i];
}
FASTCNN_NO_LIBCALL inline void zero_row(float* dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dst[i] = 0.0f;
}
// copy_row through a ReLU's backward: src where the ReLU's output y is > 0 or NaN, else 0
// (relu_backward's rule, PyTorch's threshold_backward)
FASTCNN_NO_LIBCALL inline void copy_row_relu(float* dst, const float* src, const float* y,
                                             int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const float v = src[i];  // loaded unconditionally: a select, so the loop vectorises
    dst[i] = y[i] <= 0.0f ? 0.0f : v;
  }
}
// copy_row that also reports whether any value was NaN or infinite
FASTCNN_NO_LIBCALL inline uint32_t copy_row_check(float* dst, const float* src, int64_t n) {
  uint32_t bad = 0;
  for (int64_t i = 0; i < n; ++i) {
    uint32_t bits;
    std::memcpy(&bits, src + i, 4);
    bad |= static_cast<uint32_t>((bits & 0x7f800000u) == 0x7f800000u);
    dst[i] = src[i];
  }
  return bad;
}

// Rows h0 .. h0+n of one zero-padded plane into dst (n rows of Wp floats): padded row r is
// input row r - top, padded column q input column q - left (a negative pad crops); what lies
// outside the H x W input is zero. copy(d, h, w0, len) writes input row h, columns w0 ..
// w0+len, to d (plainly, through a ReLU mask, or checking finiteness).
template <class Copy>
void pad_rows(float* dst, int64_t Wp, int64_t h0, int64_t n, int64_t top, int64_t left, int64_t H,
              int64_t W, Copy copy) {
  const int64_t lo = std::max<int64_t>(left, 0), skip = std::max<int64_t>(-left, 0);
  const int64_t len = std::max<int64_t>(std::min(W - skip, Wp - lo), 0);
  for (int64_t r = 0; r < n; ++r, dst += Wp) {
    const int64_t h = h0 + r - top;
    if (h < 0 || h >= H || len == 0) {
      zero_row(dst, Wp);
      continue;
    }
    zero_row(dst, lo);
    copy(dst + lo, h, skip, len);
    zero_row(dst + lo + len, Wp - lo - len);
  }
}

// d[j] = s[j * sw] for j < n, and whether any was NaN or infinite (kCheck). Stride 2 (the
// usual one) as SSE2 shuffles of two loaded vectors, reading no element past s[2*(n-1)].
template <bool kCheck>
FASTCNN_NO_LIBCALL inline uint32_t gather_row(float* d, const float* s, int64_t n, int64_t sw) {
  if (sw == 1) {  // a stride-(s, 1) convolution's rows: plain copies
    if constexpr (kCheck) return copy_row_check(d, s, n);
    copy_row(d, s, n);
    return 0;
  }
  uint32_t bad = 0;
  int64_t j = 0;
  if (sw == 2) {
    const __m128i expo = _mm_set1_epi32(0x7f800000);
    __m128i acc = _mm_setzero_si128();
    for (; j + 5 <= n; j += 4) {  // reads s[2j .. 2j+7], all <= 2*(n-1)
      const __m128 v = _mm_shuffle_ps(_mm_loadu_ps(s + 2 * j), _mm_loadu_ps(s + 2 * j + 4),
                                      _MM_SHUFFLE(2, 0, 2, 0));
      if constexpr (kCheck) {
        const __m128i e = _mm_and_si128(_mm_castps_si128(v), expo);
        acc = _mm_or_si128(acc, _mm_cmpeq_epi32(e, expo));
      }
      _mm_storeu_ps(d + j, v);
    }
    if constexpr (kCheck) bad = static_cast<uint32_t>(_mm_movemask_epi8(acc) != 0);
  }
  for (; j < n; ++j) {
    const float v = s[j * sw];
    if constexpr (kCheck) {
      uint32_t bits;
      std::memcpy(&bits, &v, 4);
      bad |= static_cast<uint32_t>((bits & 0x7f800000u) == 0x7f800000u);
    }
    d[j] = v;
  }
  return bad;
}

// Rows i0 .. i0+n of the sh*sw phase planes of one zero-padded plane (stride > 1): phase (a, b)
// at dst + (a*sw + b)*n*Wg holds padded element (i*sh + a, j*sw + b) at [(i - i0)*Wg + j], zero
// where that lies in the padding or past the padded image. Returns whether an input value was
// NaN or infinite (kCheck; else 0).
template <bool kCheck>
uint32_t phase_split(float* dst, const float* src, int64_t H, int64_t W, int64_t top, int64_t left,
                     int64_t sh, int64_t sw, int64_t i0, int64_t n, int64_t Wg) {
  uint32_t bad = 0;
  const int64_t plane = n * Wg;
  for (int64_t a = 0; a < sh; ++a) {
    for (int64_t i = i0; i < i0 + n; ++i) {
      const int64_t h = i * sh + a - top;
      for (int64_t b = 0; b < sw; ++b) {
        float* d = dst + (a * sw + b) * plane + (i - i0) * Wg;
        if (h < 0 || h >= H) {
          zero_row(d, Wg);
          continue;
        }
        const float* row = src + h * W;
        // columns j with 0 <= j*sw + b - left < W
        const int64_t j0 = std::min(Wg, ceil_div(std::max<int64_t>(left - b, 0), sw));
        const int64_t j1 = std::max(j0, std::min(Wg, ceil_div(W + left - b, sw)));
        zero_row(d, j0);
        if (j1 > j0) bad |= gather_row<kCheck>(d + j0, row + j0 * sw + b - left, j1 - j0, sw);
        zero_row(d + j1, Wg - j1);
      }
    }
  }
  return bad;
}

}  // namespace

void pooled_grad_plane(const PooledGrad& pg, const float* dy, int64_t pl, float* dst) {
  const int64_t PQ = pg.pp.P * pg.pp.Q;
  kernels().maxpool2d_bwd(dy + pl * PQ, pg.idx + pl * PQ, dst, pg.pp);  // indices checked before
}

namespace {
// At most half of each grid row (ceil(Wp / sw) columns, Q of them kept) wasted on discarded
// columns (stride 1: (S-1)*dw <= Q).
bool grid_waste_ok(const Conv2dParams& p) {
  return ceil_div(p.W + p.pad_left + p.pad_right, p.stride_w) - p.Q <= p.Q;
}
bool stride1(const Conv2dParams& p) { return p.stride_h == 1 && p.stride_w == 1; }
}  // namespace

bool wide_conv_applicable(const Conv2dParams& p) { return stride1(p) && grid_waste_ok(p); }

bool wide_fwd_applicable(const Conv2dParams& p) {
  // strided: on the phase planes when windows span at least two strides each way (every phase
  // plane read by several taps: 5x5 / 2, the 7x7 / 2 stem; a 3x3 / 2 measured faster through the
  // GEMM form)
  const bool wide = (p.R - 1) * p.dil_h >= 2 * p.stride_h && (p.S - 1) * p.dil_w >= 2 * p.stride_w;
  return grid_waste_ok(p) && (stride1(p) || wide);
}

bool wide_wgrad_applicable(const Conv2dParams& p) {
  // strided: the phase planes pay off only when windows overlap in both directions (several
  // taps read each phase plane; a 1x1 / 2 or 3x3 / 3 convolution would build sh*sw planes for
  // one tap each: the GEMM form measured faster there)
  const bool overlap = (p.R - 1) * p.dil_h + 1 > p.stride_h && (p.S - 1) * p.dil_w + 1 > p.stride_w;
  return grid_waste_ok(p) && (stride1(p) || overlap);
}

void wide_correlate(const WideConv& cv, int relu) {
  const KernelTable& kt = kernels();
  const int64_t mr = kt.mr, nr = kt.nr;
  const int64_t G = cv.groups, Cg = cv.C / G, Kg = cv.K / G, RS = cv.R * cv.S, CRS = Cg * RS;
  const int64_t sh = cv.stride_h, sw = cv.stride_w, nph = sh * sw;
  const int64_t Hp = cv.H + cv.pad_top + cv.pad_bottom, Wp = cv.W + cv.pad_left + cv.pad_right;
  const int64_t Hr = Hp - (cv.R - 1) * cv.dil_h, Wr = Wp - (cv.S - 1) * cv.dil_w;
  if (cv.N == 0 || Hr <= 0 || Wr <= 0) return;
  const int64_t P = (Hr - 1) / sh + 1, Q = (Wr - 1) / sw + 1;
  // the grid: rows of Wg = ceil(Wp / sw) (stride 1: the padded width), on phase planes when
  // strided; a band of output rows reads halo more (phase) rows
  const int64_t Wg = ceil_div(Wp, sw);
  const int64_t HW = cv.H * cv.W, PQ = P * Q;
  const int64_t halo = (cv.R - 1) * cv.dil_h / sh;
  // Images side by side (stride 1, cv.imgs > 1, pads >= 0, Q <= W + sep): a grid row holds
  // pad_left zeros, then per image its W input columns and sep = max(pad_left, pad_right)
  // zeros; image b's output q sits at grid column b*Ws + q (Ws = W + sep) and its taps read only
  // its own columns or zeros. B = 1: one image per grid, Ws = Wt = Wg (padded as before).
  const int64_t sep = std::max(cv.pad_left, cv.pad_right);
  const bool side = nph == 1 && cv.imgs > 1 && cv.pad_left >= 0 && cv.pad_right >= 0 &&
                    Q <= cv.W + sep;
  const int64_t B = side ? std::min(cv.imgs, cv.N) : 1, Ws = B > 1 ? cv.W + sep : Wg;
  const int64_t Wt_max = B > 1 ? cv.pad_left + B * Ws : Wg;
  const int64_t nblk = ceil_div(cv.N, B);

  // Taps in the order (r, c, s): k = r*CS + c*S + s, so that the taps of one kernel row form a
  // contiguous range (a strip whose rows all read zero padding through kernel row r skips it).
  // Weights as MR-row panels over all CRS taps in that order, per group: panel ip of group g at
  // apack[(g * mpan + ip) * CRS * mr], element (row i, tap k) at [k * mr + i].
  const int64_t CS = Cg * cv.S;
  const int64_t mpan = ceil_div(Kg, mr);
  std::vector<float> apack(static_cast<size_t>(checked_mul(G * mpan * mr, CRS, "conv2d weights")));
  for (int64_t g = 0; g < G; ++g)
    for (int64_t ip = 0; ip < mpan; ++ip) {
      float* d = apack.data() + (g * mpan + ip) * CRS * mr;
      for (int64_t k = 0; k < CRS; ++k) {
        const int64_t r = k / CS, c = (k / cv.S) % Cg, s = k % cv.S;
        for (int64_t i = 0; i < mr; ++i) {
          const int64_t row = ip * mr + i;
          d[k * mr + i] = row < Kg ? cv.w[((g * Kg + row) * Cg + c) * RS + r * cv.S + s] : 0.0f;
        }
      }
    }
  // Skipping taps that read only padding drops products 0 * w: exact (x + 0 = x) unless a weight
  // is inf or NaN (0 * inf = NaN must stay, as in the im2col form).
  const bool skip_ok = all_finite(cv.w, cv.K * CRS);

  // Bands of output rows: as tall as a ~256 KiB scratch allows (the band stays in L2 next to
  // the weights while the output streams out), then shorter until every thread
  // has work (the band never changes a result, only which thread computes it).
  const double flops = 2.0 * double(cv.N) * double(cv.K) * double(PQ) * double(CRS);
  const int nt = threads_for(flops, 2e6);
  int64_t band = P;
  while (band > 1 && Cg * nph * (band + halo) * Wt_max > kScratchFloats) band = ceil_div(band, 2);
  while (band > 1 && nblk * G * ceil_div(P, band) < 2 * int64_t{nt}) band = ceil_div(band, 2);
  const int64_t nbands = ceil_div(P, band);
  const int64_t items = nblk * G * nbands;
  const int use_threads = static_cast<int>(std::min<int64_t>(nt, items));

  // Per thread: the band (Cg planes of (band + halo) x Wp, then a zero tail that the last strip's
  // discarded columns may read), the tap offsets and an MR x NR tile per weight panel.
  const int64_t tail = (cv.S - 1) * cv.dil_w + nr + 16;
  const int64_t scr_size = checked_mul(Cg * nph, (band + halo) * Wt_max, "conv2d band") + tail;
  const int64_t uplane = cv.pooled ? B * HW : 0;  // one unpooled input plane per image
  const int64_t per_thread = ceil_div(scr_size + mpan * mr * nr + uplane, 16) * 16;
  Buffer work = alloc_floats(checked_mul(per_thread, use_threads, "conv2d work"));
  std::vector<int64_t> offs(static_cast<size_t>(CRS * use_threads));

  // Tap chunks: runs of whole (channel, kernel row) pairs whose windows for one strip (NR
  // columns + (S-1)*dw each) fit in ~16 KB, balanced over all the taps (fixed by the shape:
  // part of the sum order); one chunk when everything fits (a first layer's taps).
  const int64_t win = std::min(cv.S, sw) * nr + (cv.S - 1) * cv.dil_w / sw;
  const int64_t cmax = std::max<int64_t>(1, 4096 / win);  // (channel, kernel row) pairs
  const int64_t per = ceil_div(cv.R * Cg, ceil_div(cv.R * Cg, cmax));  // pairs per chunk
  const Conv2dUkernelFn ukernel = kt.conv2d_ukernel;
  const StoreTileFn store = kt.store_tile;
  parallel_for(items, [&](int t, int64_t begin, int64_t end) {
    float* scr = work.get() + t * per_thread;
    float* tile = scr + scr_size;
    float* up = tile + mpan * mr * nr;  // cv.pooled: the channel's unpooled plane
    int64_t* off = offs.data() + t * CRS;
    for (int64_t item = begin; item < end; ++item) {
      const int64_t n = (item / (G * nbands)) * B, g = (item / nbands) % G, bi = item % nbands;
      const int64_t nb = std::min(B, cv.N - n);  // images of the item: n .. n + nb
      const int64_t Wt = B > 1 ? cv.pad_left + nb * Ws : Wg;  // the grid's row width
      const int64_t p0 = bi * band, rows = std::min(band, P - p0), in_rows = rows + halo;
      const int64_t plane = in_rows * Wt;
      // the band: padded rows p0 .. p0 + in_rows of every channel of the group (strided: rows
      // p0 .. p0 + in_rows of each of the channel's phase planes; side by side: of each image)
      for (int64_t c = 0; c < Cg && B > 1; ++c) {
        if (cv.pooled)
          for (int64_t b = 0; b < nb; ++b)
            pooled_grad_plane(*cv.pooled, cv.x, (n + b) * cv.C + g * Cg + c, up + b * HW);
        float* d = scr + c * plane;
        for (int64_t r = 0; r < in_rows; ++r, d += Wt) {
          const int64_t h = p0 + r - cv.pad_top;
          if (h < 0 || h >= cv.H) {
            zero_row(d, Wt);
            continue;
          }
          zero_row(d, cv.pad_left);
          for (int64_t b = 0; b < nb; ++b) {
            const int64_t at = ((n + b) * cv.C + g * Cg + c) * HW + h * cv.W;
            const float* src = cv.pooled ? up + b * HW + h * cv.W : cv.x + at;
            float* db = d + cv.pad_left + b * Ws;
            if (cv.relu_mask) copy_row_relu(db, src, cv.relu_mask + at, cv.W);
            else copy_row(db, src, cv.W);
            zero_row(db + cv.W, sep);
          }
        }
      }
      for (int64_t c = 0; c < Cg && B == 1; ++c) {
        const float* src = cv.x + (n * cv.C + g * Cg + c) * HW;
        if (nph > 1) {
          phase_split<false>(scr + c * nph * plane, src, cv.H, cv.W, cv.pad_top, cv.pad_left, sh,
                             sw, p0, in_rows, Wg);
          continue;
        }
        const float* mask = cv.relu_mask ? cv.relu_mask + (n * cv.C + g * Cg + c) * HW : nullptr;
        if (cv.pooled) {
          pooled_grad_plane(*cv.pooled, cv.x, n * cv.C + g * Cg + c, up);
          src = up;
        }
        pad_rows(scr + c * plane, Wp, p0, in_rows, cv.pad_top, cv.pad_left, cv.H, cv.W,
                 [&](float* d, int64_t h, int64_t w0, int64_t len) {
                   if (mask) copy_row_relu(d, src + h * cv.W + w0, mask + h * cv.W + w0, len);
                   else copy_row(d, src + h * cv.W + w0, len);
                 });
      }
      std::memset(scr + Cg * nph * plane, 0, sizeof(float) * static_cast<size_t>(tail));
      for (int64_t k = 0; k < CRS; ++k) {
        const int64_t r = k / CS, c = (k / cv.S) % Cg, s = k % cv.S;
        const int64_t rh = r * cv.dil_h, sv = s * cv.dil_w;
        off[k] = (c * nph + (rh % sh) * sw + sv % sw) * plane + (rh / sh) * Wt + sv / sw;
      }
      const float* ag = apack.data() + g * mpan * mr * CRS;
      const int64_t J = rows * Wt;  // grid outputs of the band
      for (int64_t j0 = 0; j0 < J; j0 += nr) {
        const int64_t jn = std::min(nr, J - j0);
        // kernel rows that read real input for some row of the strip (the others read only the
        // zero padding of every output row the strip holds), then taps in chunks whose B rows
        // (the strip's window of cch channels) stay in L1, each chunk run for every weight panel
        int64_t r_lo = 0, r_hi = cv.R - 1;
        if (skip_ok) {  // kernel row r reads padded rows oh*sh + r*dh of output rows oh
          const int64_t oh_a = p0 + j0 / Wt, oh_b = p0 + (j0 + jn - 1) / Wt;
          r_lo = std::max<int64_t>(0, ceil_div_signed(cv.pad_top - oh_b * sh, cv.dil_h));
          r_hi = std::min<int64_t>(cv.R - 1,
                                   floor_div_signed(cv.H - 1 + cv.pad_top - oh_a * sh, cv.dil_h));
        }
        // the taps of kernel rows r_lo..r_hi are one contiguous range of (channel, kernel row)
        // pairs (r-major order), run through the fixed chunks it meets: a chunk cut short by
        // the range only drops exact zeros, so any banding sums every output the same way
        const int64_t lo_pair = r_lo * Cg, hi_pair = (r_hi + 1) * Cg;
        bool first = true;
        for (int64_t q0 = lo_pair / per * per; q0 < hi_pair; q0 += per) {
          const int64_t a = std::max(q0, lo_pair), e = std::min(q0 + per, hi_pair);
          const int64_t k0 = a * cv.S, kc = (e - a) * cv.S;
          for (int64_t ip = 0; ip < mpan; ++ip)
            ukernel(kc, ag + ip * CRS * mr + k0 * mr, scr + j0, off + k0, tile + ip * mr * nr, nr,
                    !first);
          first = false;
        }
        if (first)  // no kernel row reads input: the strip is all padding (bias only)
          for (int64_t ip = 0; ip < mpan; ++ip) ukernel(0, ag, scr + j0, off, tile + ip * mr * nr, nr, 0);
        for (int64_t ip = 0; ip < mpan; ++ip) {
          const int64_t i0 = ip * mr, m = std::min(mr, Kg - i0);
          const float* bias = cv.b ? cv.b + g * Kg + i0 : nullptr;
          const float* tp = tile + ip * mr * nr;
          // the strip's kept columns, one output row of one image at a time
          for (int64_t j = j0; j < j0 + jn;) {
            const int64_t pr = j / Wt, col = j % Wt, b = col / Ws, q = col % Ws;
            const int64_t row_end = std::min(j0 + jn, (pr + 1) * Wt);
            if (b < nb && q < Q) {
              const int64_t cnt = std::min(row_end - j, Q - q);
              float* yb = cv.y + ((n + b) * cv.K + g * Kg + i0) * PQ + (p0 + pr) * Q + q;
              store(yb, PQ, tp + (j - j0), nr, m, cnt, bias, nullptr, relu, 0);
              j += cnt;
            } else {
              j = std::min(row_end, pr * Wt + (b + 1) * Ws);
            }
          }
        }
      }
    }
  }, use_threads);
}

bool wide_weight_grad(const Conv2dParams& p, const float* dy, const float* relu_y,
                      const PooledGrad* pooled, const float* x, float* dw, float* db) {
  const KernelTable& kt = kernels();
  const int64_t G = p.groups, Cg = p.Cg(), Kg = p.Kg(), RS = p.R * p.S, CRS = Cg * RS;
  if (p.N == 0) {
    std::memset(dw, 0, sizeof(float) * static_cast<size_t>(p.K * CRS));
    if (db) std::memset(db, 0, sizeof(float) * static_cast<size_t>(p.K));
    return true;
  }
  constexpr int64_t kTaps = 12, kCh = 32;  // the micro-kernel's tile
  const int64_t sh = p.stride_h, sw = p.stride_w, nph = sh * sw;
  const int64_t Hp = p.H + p.pad_top + p.pad_bottom, Wp = p.W + p.pad_left + p.pad_right;
  // the grid: phase planes of Hg x Wg (stride 1: the padded image itself, Hg x Wg = Hp x Wp)
  const int64_t Hg = ceil_div(Hp, sh), Wg = ceil_div(Wp, sw);
  const int64_t J = p.P * Wg, PQ = p.P * p.Q, HW = p.H * p.W, plane = Hg * Wg;
  // x reads reach (Cg*nph - 1)*plane + ((R-1)*dh/sh)*Wg + (S-1)*dw/sw + J - 1, and
  // P + (R-1)*dh/sh <= Hg, so they end before Cg*nph*plane + tail
  const int64_t x_is = ceil_div(Cg * nph * plane + (p.S - 1) * p.dil_w + 16, 16) * 16;
  const int64_t ntb = ceil_div(CRS, kTaps), nkb = ceil_div(Kg, kCh), ldT = nkb * kCh;
  const int64_t kPix = std::max<int64_t>(64, 65536 / ldT);  // pixels per chunk: <= 256 KiB of dy
  const int64_t T = G * ntb * nkb;  // (group, 12-tap block, 32-channel block) tiles
  const int64_t tile = kTaps * kCh;
  // The batch is split too, into NS image ranges summed in order at the end (at least two, so
  // that two threads take one range each instead of both preparing every image; more when
  // tiles are few): fixed by the shape (part of every element's sum order), never by threads.
  const int64_t NS = std::min<int64_t>(p.N, std::max<int64_t>(2, ceil_div(16, T)));
  const int64_t items = NS * T;
  const double flops = 2.0 * double(p.N) * double(p.K) * double(CRS) * double(PQ);
  const int use_threads = static_cast<int>(std::min<int64_t>(threads_for(flops, 2e6), items));
  const int64_t dyt_size = ceil_div(J * ldT, 16) * 16, rows_size = ceil_div(Kg * p.Q, 16) * 16;
  const int64_t up_size = pooled ? ceil_div(Kg * PQ, 16) * 16 : 0;  // the group's unpooled dy
  const int64_t per_thread = x_is + dyt_size + rows_size + up_size;
  Buffer work = alloc_floats(checked_mul(per_thread, use_threads, "conv2d dw work"));
  Buffer part = alloc_floats(items * (tile + kCh));  // each item's tile, then its bias sums
  std::vector<uint32_t> bad_x(static_cast<size_t>(use_threads), 0);
  // tap offsets in the phase planes (past CRS: tap 0 again, computed and dropped): tap (c, r, s)
  // reads padded row p*sh + r*dh = (p + r*dh/sh)*sh + r*dh%sh, i.e. phase row p + r*dh/sh of
  // the phase (r*dh%sh, s*dw%sw) of channel c
  std::vector<int64_t> off(static_cast<size_t>(ntb * kTaps));
  for (int64_t k = 0; k < ntb * kTaps; ++k) {
    const int64_t kk = k < CRS ? k : 0;
    const int64_t c = kk / RS, r = (kk / p.S) % p.R, s = kk % p.S;
    const int64_t rh = r * p.dil_h, sv = s * p.dil_w;
    off[k] = (c * nph + (rh % sh) * sw + sv % sw) * plane + (rh / sh) * Wg + sv / sw;
  }
  const Conv2dWgradUkernelFn ukernel = kt.conv2d_wgrad_ukernel;
  const TransposeFn transpose = kt.transpose;
  parallel_for(items, [&](int t, int64_t begin, int64_t end) {
    float* xp = work.get() + t * per_thread;
    float* dyt = xp + x_is;            // (J, ldT): dy of one image and group, pixel-major
    float* rows = dyt + dyt_size;      // (Kg, Q): one output row of dy through the ReLU
    float* up = rows + rows_size;      // (Kg, P*Q): pooled: the image's dy for the group
    uint32_t bad = 0;
    // channels past Kg stay zero (computed and dropped)
    for (int64_t j = 0; j < J && Kg < ldT; ++j) zero_row(dyt + j * ldT + Kg, ldT - Kg);
    for (int64_t it = begin; it < end;) {
      const int64_t sp = it / T, run_end = std::min(end, (sp + 1) * T);
      const int64_t n0 = p.N * sp / NS, n1 = p.N * (sp + 1) / NS;
      for (int64_t n = n0; n < n1; ++n) {
        for (int64_t i0 = it; i0 < run_end;) {
          const int64_t g = (i0 % T) / (ntb * nkb);
          const int64_t i1 = std::min(run_end, sp * T + (g + 1) * ntb * nkb);
          // the group's padded image (stride > 1: split into its phase planes)
          for (int64_t c = 0; c < Cg; ++c) {
            const float* src = x + (n * p.C + g * Cg + c) * HW;
            if (nph == 1) {
              pad_rows(xp + c * plane, Wp, 0, Hp, p.pad_top, p.pad_left, p.H, p.W,
                       [&](float* d, int64_t h, int64_t w0, int64_t len) {
                         bad |= copy_row_check(d, src + h * p.W + w0, len);
                       });
            } else {
              bad |= phase_split<true>(xp + c * nph * plane, src, p.H, p.W, p.pad_top,
                                       p.pad_left, sh, sw, 0, Hg, Wg);
            }
          }
          zero_row(xp + Cg * nph * plane, x_is - Cg * nph * plane);
          // dy of the group on the grid, transposed: dyt[pr*Wg + q][k]; zero for q >= Q
          const int64_t at = (n * p.K + g * Kg) * PQ;
          const float* dyg = dy + at;
          if (pooled) {
            for (int64_t k = 0; k < Kg; ++k)
              pooled_grad_plane(*pooled, dy, n * p.K + g * Kg + k, up + k * PQ);
            dyg = up;
          }
          for (int64_t pr = 0; pr < p.P; ++pr) {
            const float* src = dyg + pr * p.Q;
            int64_t lds = PQ;
            if (relu_y) {
              for (int64_t k = 0; k < Kg; ++k)
                copy_row_relu(rows + k * p.Q, src + k * lds, relu_y + at + k * PQ + pr * p.Q, p.Q);
              src = rows, lds = p.Q;
            }
            transpose(src, lds, Kg, p.Q, dyt + pr * Wg * ldT, ldT);
            for (int64_t q = p.Q; q < Wg; ++q) zero_row(dyt + (pr * Wg + q) * ldT, Kg);
          }
          // pixels in chunks whose dy rows (kPix x ldT) stay in L2 across the tiles
          for (int64_t j0 = 0; j0 < J; j0 += kPix)
            for (int64_t i = i0; i < i1; ++i) {
              const int64_t tb = (i / nkb) % ntb, kb = i % nkb;
              ukernel(std::min(kPix, J - j0), xp + j0, off.data() + tb * kTaps,
                      dyt + j0 * ldT + kb * kCh, ldT, part.get() + i * (tile + kCh), kCh,
                      n > n0 || j0 > 0);
            }
          for (int64_t i = i0; i < i1; ++i) {
            const int64_t tb = (i / nkb) % ntb, kb = i % nkb;
            float* pt = part.get() + i * (tile + kCh);
            if (db && tb == 0) {  // the block's bias gradient, image by image in order
              float acc[kCh] = {};
              for (int64_t j = 0; j < J; ++j)
                for (int64_t k = 0; k < kCh; ++k) acc[k] += dyt[j * ldT + kb * kCh + k];
              for (int64_t k = 0; k < kCh; ++k) pt[tile + k] = n > n0 ? pt[tile + k] + acc[k] : acc[k];
            }
          }
          i0 = i1;
        }
      }
      it = run_end;
    }
    bad_x[static_cast<size_t>(t)] = bad;
  }, use_threads);
  // the image ranges' partial tiles summed in order, transposed into dw (K, Cg*R*S)
  for (int64_t i = 0; i < T; ++i) {
    const int64_t g = i / (ntb * nkb), tb = (i / nkb) % ntb, kb = i % nkb;
    float* pt = part.get() + i * (tile + kCh);
    const int64_t len = db && tb == 0 ? tile + kCh : tile;  // bias sums only where computed
    for (int64_t sp = 1; sp < NS; ++sp) kt.add(pt, pt + sp * T * (tile + kCh), len);
    for (int64_t jj = 0; jj < kCh && kb * kCh + jj < Kg; ++jj) {
      for (int64_t ti = 0; ti < kTaps && tb * kTaps + ti < CRS; ++ti)
        dw[(g * Kg + kb * kCh + jj) * CRS + tb * kTaps + ti] = pt[ti * kCh + jj];
      if (db && tb == 0) db[g * Kg + kb * kCh + jj] = pt[tile + jj];
    }
  }
  for (uint32_t b : bad_x)
    if (b) return false;
  return true;
}

bool all_finite(const float* v, int64_t n) {
  uint32_t bad = 0;
  for (int64_t i = 0; i < n; ++i) {
    uint32_t bits;
    std::memcpy(&bits, v + i, 4);
    bad |= static_cast<uint32_t>((bits & 0x7f800000u) == 0x7f800000u);
  }
  return bad == 0;
}

}  // namespace fastcnn::cpu
