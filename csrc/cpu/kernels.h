// kernels.h -- the per-ISA kernel table. Every ISA (generic, avx2, avx512) implements every entry
// with the same signature, in its own namespace (fastcnn::cpu::<isa>) so that no inline helper of
// an ISA file can be merged into baseline code. dispatch.cpp builds one table per ISA and selects
// one at import: the best the CPU/OS supports, capped by FASTCNN_ISA.
//
// Kernels take validated, contiguous float32 buffers (any alignment of float), never allocate,
// never throw and never touch Python. Threading is done by the op drivers (conv2d.cpp, ...),
// which call these on disjoint pieces of work.
#pragma once
#include <cstdint>

#include "common/cpu_features.h"
#include "common/params.h"

namespace fastcnn::cpu {

// GEMM micro-kernel on packed panels:
//   C[i, j] = (accumulate ? C[i, j] : 0) + sum_{k < kc} a[k*MR + i] * b[k*NR + j],  i < MR, j < NR
// C is row-major with row stride ldc and always a full MR x NR tile (the driver's own buffer).
using GemmUkernelFn = void (*)(int64_t kc, const float* a, const float* b, float* c, int64_t ldc,
                               int accumulate);
// The same with A read in place (no packed panel): a[k*MR + i] above becomes a[i*ars + k*acs].
// Only columns j < ncols (1..NR) are wanted: the kernel may skip whole vectors past them (a
// tile's last panel), leaving those C columns unwritten.
using GemmUkernelSaFn = void (*)(int64_t kc, const float* a, int64_t ars, int64_t acs,
                                 const float* b, float* c, int64_t ldc, int accumulate,
                                 int64_t ncols);
// gemm_ukernel_sa_tall: the same for three row panels at once, i < 3*MR (a[i*ars + k*acs]),
// C[i*ldc + j] for j < ncols <= NR/3 only (the driver's thin last panel: the narrow kernel's few
// accumulators wait on the FMA latency; three panels' worth keep the FMA ports busy). Every
// element is the sum gemm_ukernel_sa computes, in the same order: bit-identical to 3 calls of it.

// Micro-kernel of the wide-grid direct convolution (conv2d_wide.cpp): the GEMM micro-kernel whose
// B row k is read at an offset instead of from a packed panel,
//   C[i, j] = (accumulate ? C[i, j] : 0) + sum_{k < kc} a[k*MR + i] * src[off[k] + j],
// i < MR, j < NR (src[off[k] .. off[k] + NR) must be readable).
using Conv2dUkernelFn = void (*)(int64_t kc, const float* a, const float* src, const int64_t* off,
                                 float* c, int64_t ldc, int accumulate);

// Micro-kernel of the wide-grid weight gradient (conv2d_wide.cpp), an outer product per pixel:
//   C[i*ldc + j] = (accumulate ? C[i*ldc + j] : 0) + sum_{k < kc} src[off[i] + k] * b[k*ldb + j]
// for i < 12 taps, j < 32 output channels (b: dy transposed to pixel-major, ldb >= 32).
using Conv2dWgradUkernelFn = void (*)(int64_t kc, const float* src, const int64_t* off,
                                      const float* b, int64_t ldb, float* c, int64_t ldc,
                                      int accumulate);

// Tile epilogue from the driver's buffer to the destination, m x n (any m, n >= 0; masked tails):
//   v = src[i*lds + j] + (bias_row ? bias_row[i] : 0) + (bias_col ? bias_col[j] : 0)
//   v = relu ? max(v, 0) (NaN kept) : v
//   dst[i*ldd + j] = accumulate ? dst[i*ldd + j] + v : v
using StoreTileFn = void (*)(float* dst, int64_t ldd, const float* src, int64_t lds, int64_t m,
                             int64_t n, const float* bias_row, const float* bias_col, int relu,
                             int accumulate);

// y[i] = relu(x[i]) for i < n; NaN propagates (PyTorch). x may equal y (in place).
using ReluFwdFn = void (*)(const float* x, float* y, int64_t n);
// dx[i] = y[i] <= 0 ? 0 : dy[i] for i < n (y is the forward output; PyTorch's
// threshold_backward, so a NaN y passes dy through). dx may equal dy.
using ReluBwdFn = void (*)(const float* dy, const float* y, float* dx, int64_t n);

// Max pooling forward on one (n, c) plane: x (H, W) -> y (P, Q) and, when idx is not null,
// idx (P, Q) = flat index h*W + w of the chosen element. PyTorch's semantics: padding is
// never chosen; ties go to the first maximum in row-major window order; a NaN wins over any
// number (the last NaN in the window is chosen); an all -inf window gives -inf and the index of
// its first in-bounds element.
using MaxPool2dFwdFn = void (*)(const float* x, float* y, int64_t* idx, const Pool2dParams& p);
// Max pooling backward on one plane of p: dx (H, W) = 0, then dx[idx[i]] += dy[i] for
// i < P*Q in order (deterministic for overlapping windows); indices outside [0, H*W) are
// skipped, and the call then returns false (true: every index was in range).
using MaxPool2dBwdFn = bool (*)(const float* dy, const int64_t* idx, float* dx,
                                const Pool2dParams& p);

// Sum of x[0:n] in a fixed order (lane-wise partial sums, then a fixed tree): the same result
// for the same n whatever the thread count.
using SumFn = float (*)(const float* x, int64_t n);
// acc[i] += x[i] for i < n.
using AddFn = void (*)(float* acc, const float* x, int64_t n);

// Block transpose for the GEMM packers: dst[j*ldd + i] = src[i*lds + j], i < rows, j < cols.
// Reads only the rows x cols block of src and writes only the cols x rows block of dst.
using TransposeFn = void (*)(const float* src, int64_t lds, int64_t rows, int64_t cols, float* dst,
                             int64_t ldd);

// Implicit im2col (see conv2d_im2col_impl.h for the exact layouts): B panels whose row k reads
// planes[k] at (jp*a_h + bh[k], jq*a_w + bw[k]) for outputs j = jp*Qo + jq in [j0, j0+nc) ...
using Conv2dIm2colFn = void (*)(const float* const* planes, const int64_t* bh, const int64_t* bw,
                                int64_t kc, int64_t j0, int64_t nc, int64_t Qo, int64_t Hs,
                                int64_t Ws, int64_t a_h, int64_t a_w, float* dst, int64_t nr);
// The same over a batch of images (conv2d_im2col_impl.h, im2col_batch_impl): output
// j = (n*P + jp)*Q + jq reads planes[k] + n*img_stride, so the GEMM's columns span images
// (conv2d.cpp's batched forms for small planes).
using Conv2dIm2colBatchFn = void (*)(const float* const* planes, const int64_t* bh,
                                     const int64_t* bw, int64_t kc, int64_t img_stride,
                                     int64_t j0, int64_t nc, int64_t P, int64_t Q, int64_t Hs,
                                     int64_t Ws, int64_t a_h, int64_t a_w, float* dst,
                                     int64_t nr);
// Weight-gradient B panel (see conv2d_im2col_impl.h, im2col_rows_impl, for the im2col rows):
// element (k, col) = im2col row col (planes[col] of image 0, next image img_stride further;
// bh[col], bw[col]) at pixel k0 + k of the flattened (image, p, q) grid, written as
// dst[k*nr + col] for col < cols, zeros for cols <= col < nr. `scratch` holds >= nr*kc floats.
using Conv2dIm2colWgradFn = void (*)(const float* const* planes, const int64_t* bh,
                                     const int64_t* bw, int64_t cols, int64_t img_stride,
                                     int64_t k0, int64_t kc, int64_t P, int64_t Q, int64_t Hs,
                                     int64_t Ws, int64_t a_h, int64_t a_w, float* dst, int64_t nr,
                                     float* scratch);

// Peak-probe: `iters` steps of independent FMA chains that fill the ISA's FMA ports; returns a
// value derived from the accumulators (so the work can't be optimised away). The flops done are
// iters * fma_probe_flops_per_iter (table entry below).
using FmaProbeFn = float (*)(int64_t iters);

// ---- normalization family (batch_norm; csrc/cpu/batch_norm.cpp drives these) ----------------
// A "group" is a tile of rows r < rows, each of `cols` contiguous floats at x + r*ld (rows,
// cols >= 1); the driver keeps tiles <= 4096 floats (column form: 32 Ki) so that a second pass
// over one hits L1/L2. Column forms: each column j < cols (cols <= kBnColTile) of a tile is its own
// group, and per-column coefficient arrays replace the scalars.
constexpr int64_t kBnTileElems = 4096;
constexpr int64_t kBnColTile = 512;
// Statistics of one group of n = rows*cols values, two passes over the tile: its mean m0 (float
// lanes, summed in double), then sd = sum(x - m0), sq = sum((x - m0)^2) in float lanes;
// *mean = m0 + sd/n, *m2 = sq - sd*sd/n (double), the centred sum of squares.
using BnStatsFn = void (*)(const float* x, int64_t rows, int64_t cols, int64_t ld, double* mean,
                           double* m2);
// The same for every column j < cols: mean[j], m2[j] of x[r*ld + j], r < rows.
using BnColStatsFn = void (*)(const float* x, int64_t rows, int64_t cols, int64_t ld,
                              double* mean, double* m2);
// Backward sums of one group: *sdy = sum dy, *sdxm = sum dy * (x - m).
using BnBwdSumsFn = void (*)(const float* dy, const float* x, int64_t rows, int64_t cols,
                             int64_t ld, float m, double* sdy, double* sdxm);
// The same per column (m[j] per column): sdy[j], sdxm[j].
using BnBwdColSumsFn = void (*)(const float* dy, const float* x, int64_t rows, int64_t cols,
                                int64_t ld, const float* m, double* sdy, double* sdxm);
// y = (x - m) * a + b over the tile (y has x's layout; y may equal x).
using BnApplyFn = void (*)(const float* x, float* y, int64_t rows, int64_t cols, int64_t ld,
                           float m, float a, float b);
using BnApplyColsFn = void (*)(const float* x, float* y, int64_t rows, int64_t cols, int64_t ld,
                               const float* m, const float* a, const float* b);
// dx = (dy - p) * s - (x - m) * q over the tile (dx may equal dy).
using BnBwdApplyFn = void (*)(const float* dy, const float* x, float* dx, int64_t rows,
                              int64_t cols, int64_t ld, float m, float p, float s, float q);
using BnBwdApplyColsFn = void (*)(const float* dy, const float* x, float* dx, int64_t rows,
                                  int64_t cols, int64_t ld, const float* m, const float* p,
                                  const float* s, const float* q);
// ---- pooling family: average and global pooling (issue 17) ------------------------------------
// Average pooling forward on `planes` consecutive (n, c) planes: x (planes, H, W) -> y (planes,
// P, Q), y[p, q] = 0 + (sum of the window's input elements in row-major order, from 0) /
// div[p, q]; div (P, Q) is the driver's table of PyTorch's divisors as float.
using AvgPool2dFwdFn = void (*)(const float* x, float* y, const float* div, const Pool2dParams& p,
                                int64_t planes);
// Its backward: dx[h, w] = 0 + sum of dy[p, q] / div[p, q] over the windows containing (h, w) in
// increasing (p, q) order (0 when none); scratch: P*Q floats of the caller's.
using AvgPool2dBwdFn = void (*)(const float* dy, float* dx, const float* div, float* scratch,
                                const Pool2dParams& p, int64_t planes);
// Global average over `planes` planes of HW floats: y[pl] = sum (the fixed 32-lane order of
// generic/global_pool2d.cpp, the same on every ISA) / float(HW); backward dx = dy / float(HW).
using GlobalAvgPool2dFwdFn = void (*)(const float* x, float* y, int64_t planes, int64_t HW);
using GlobalAvgPool2dBwdFn = void (*)(const float* dy, float* dx, int64_t planes, int64_t HW);
// Global max: max_pool2d's rule over each plane (idx may be null); backward: dx = 0 but
// 0 + dy[pl] at idx[pl]; false when an index lies outside [0, HW) (skipped).
using GlobalMaxPool2dFwdFn = void (*)(const float* x, float* y, int64_t* idx, int64_t planes,
                                      int64_t HW);
using GlobalMaxPool2dBwdFn = bool (*)(const float* dy, const int64_t* idx, float* dx,
                                      int64_t planes, int64_t HW);
// ---- activation family (issue 17; activation_*.cpp, vmath_*.h) ----------------------------------
// Elementwise over n contiguous floats, any alignment; dx may equal dy or the forward tensor and
// y may equal x (in place). Maximum errors against the float64 reference: the header comment of
// each ISA's activation file (PyTorch's special values: NaN, +-inf, -0.0).
//   fwd: y[i] = f(x[i]) for sigmoid, tanh, gelu (exact erf form), gelu_tanh, silu
using ActFwdFn = void (*)(const float* x, float* y, int64_t n);
//   bwd: dx[i] = dy[i] * f'(.) from t = the forward OUTPUT y (sigmoid, tanh) or INPUT x (gelu,
//   gelu_tanh, silu)
using ActBwdFn = void (*)(const float* dy, const float* t, float* dx, int64_t n);
// leaky_relu: y = x > 0 ? x : x * slope; backward dx = x > 0 ? dy : dy * slope (x: the input)
using LeakyReluFwdFn = void (*)(const float* x, float* y, int64_t n, float slope);
using LeakyReluBwdFn = void (*)(const float* dy, const float* x, float* dx, int64_t n,
                                float slope);

// ---- blocked direct convolution (conv2d_blocked.cpp drives it; issue 16) ----------------------
// Activations in channel blocks of VL (kBlockedVL: generic 8, avx2 8, avx512 16): an input plane
// is (cblocks, rows, cols, VL) with the padding written as zeros; weights (kb, cb, tap, c, k),
// VL x VL per (kb, cb, tap). One call computes a tile of `nc` consecutive output pixels (of the
// flattened p*Q + q numbering: a tile may wrap to the next output row) by `ocb` output-channel
// blocks of VL:
//   acc[o][j][k] = sum over cb < cblocks, t < taps, c < VL (in that order, one FMA each, from 0)
//                  of w[o*w_ob_stride + (cb*taps + t)*VL*VL + c*VL + k]
//                   * in[j][cb*in_cb_stride + tap_off[t] + c]
//   v = acc + (bias ? bias[o*VL + k] : 0); v = relu ? max(v, 0) (NaN kept) : v
//   y[(o*VL + k)*y_ch_stride + j] = v   for o*VL + k < kvalid, j < nc
// 1 <= ocb <= kBlockedMaxOCB; nc >= 1 (the kernel splits nc above its register budget).
constexpr int kBlockedMaxNC = 16;
struct Conv2dBlockedArgs {
  const float* in[kBlockedMaxNC];  // per output column: its input window's first element
  int64_t nc = 0, ocb = 0;
  const float* w = nullptr;        // the first oc block's weights
  int64_t w_ob_stride = 0;         // floats from one oc block's weights to the next
  int64_t cblocks = 0, in_cb_stride = 0;
  const int64_t* tap_off = nullptr;  // taps offsets (floats) inside a channel block
  int64_t taps = 0;
  const float* bias = nullptr;     // ocb*VL values (zero-padded) or null
  int relu = 0;
  float* y = nullptr;              // output channel 0 of the tile, pixel 0
  int64_t y_ch_stride = 0, kvalid = 0;
};
using Conv2dBlockedFn = void (*)(const Conv2dBlockedArgs& a);

// The weight gradient's tile (conv2d_blocked_wgrad.cpp drives it): `ocb` blocks of VL output
// channels k (dy vectors) x `nc` columns j, each column one (tap, input channel) pair read
// through its own pointer x[j] (the blocked input band, window origin of output pixel 0):
//   acc[o][j][k] = (accumulate ? out[o*out_ob_stride + j*VL + k] : 0)
//                  + sum over b < imgs, i < rows, q < cols (in that order, one FMA each)
//                    of dy[o*dy_ob_stride + ((b*rows + i)*cols + q)*VL + k]
//                     * x[j][b*x_img_stride + i*x_row_stride + q*x_col_stride]
//   out[o*out_ob_stride + j*VL + k] = acc[o][j][k]   for every o < ocb, j < nc, k < VL
// 1 <= ocb <= kBlockedMaxOCB; nc >= 1 (the kernel splits nc above its register budget); the
// same register budget as the forward tile (blocked_max_ocb / _nc / _acc).
struct Conv2dBlockedWgradArgs {
  const float* x[kBlockedMaxNC];  // per column: its input element for output pixel (0, 0)
  int64_t nc = 0, ocb = 0;
  const float* dy = nullptr;      // the first k block's dy band, pixel-major lines of VL
  int64_t dy_ob_stride = 0;       // floats from one k block's dy band to the next
  int64_t imgs = 1, rows = 0, cols = 0;  // images x output rows of the band x columns (Q)
  int64_t x_img_stride = 0, x_row_stride = 0, x_col_stride = 0;  // floats per image / row / col
  float* out = nullptr;           // the tile's accumulators: [o][j][k]
  int64_t out_ob_stride = 0;
  int accumulate = 0;
};
using Conv2dBlockedWgradFn = void (*)(const Conv2dBlockedWgradArgs& a);

// ---- small-channel direct convolution (conv2d_smallc.cpp drives it; issue 16) ----------------
// First layers (C*R*S <= 32): vectors along the output row q. The input is the driver's padded,
// phase-split copy of an image (conv2d_smallc.cpp), in which tap t of output row i, column q is
// x[i*x_row_stride + off[t] + q] for every stride and dilation; a kernel may read every column
// up to round_up(Q, smallc_vl) - 1 of a tap's row (the driver makes them readable).
// Forward, one call: `rows` output rows x `kt` output channels, tiles of tile_k channels x
// tile_v vectors (kernels ignore tiles they have no registers for: generic):
//   acc = sum over t < taps (in order, one FMA each, from 0) of w[t*ldw + k] * x(t, i, q)
//   v = bias ? acc + bias[k] : acc; v = relu ? max(v, 0) (NaN kept) : v
//   y[k*y_ch_stride + i*y_row_stride + q] = v   for k < kt, i < rows, q < Q
// Tile caps every ISA instantiates (the driver's rule, conv2d_smallc.cpp, stays inside them):
constexpr int kSmallcMaxTileK = 16, kSmallcMaxTileV = 4;      // forward: channels x vectors
constexpr int kSmallcMaxWgradK = 4, kSmallcMaxWgradT = 14;    // weight gradient: channels x taps
struct Conv2dSmallcArgs {
  const float* x = nullptr;
  int64_t x_row_stride = 0;
  const int64_t* off = nullptr;
  int64_t taps = 0;
  const float* w = nullptr;  // [t][k]: w[t*ldw + k]
  int64_t ldw = 0;
  const float* bias = nullptr;
  int relu = 0;
  float* y = nullptr;
  int64_t y_ch_stride = 0, y_row_stride = 0;
  int64_t kt = 0, rows = 0, Q = 0;
  int64_t tile_k = 1, tile_v = 1;
};
using Conv2dSmallcFn = void (*)(const Conv2dSmallcArgs& a);
// Weight gradient, one call (same input layout): vector partial sums, lane l = q mod VL
// (VL = smallc_vl), per (k, t, l) in row, then column order, one FMA each:
//   acc[k*acc_ld + t*VL + l] += sum over i < rows, q < Q with q mod VL = l of
//       g(k, i, q) * x(t, i, q),   g = dy[k*dy_ch_stride + i*dy_row_stride + q], or 0 where
//       relu_y is given and relu_y[same index] <= 0 (ReLU's backward fused; a NaN y passes dy)
// for k < kt, t < taps; tiles of tile_k channels x tile_t taps. Lanes past Q read nothing (both
// operands masked to zero), so a NaN in an unused input column stays out, as in the reference.
struct Conv2dSmallcWgradArgs {
  const float* x = nullptr;
  int64_t x_row_stride = 0;
  const int64_t* off = nullptr;
  int64_t taps = 0;
  const float* dy = nullptr;
  const float* relu_y = nullptr;  // the forward's ReLU output, dy's layout, or null
  int64_t dy_ch_stride = 0, dy_row_stride = 0;
  float* acc = nullptr;
  int64_t acc_ld = 0;
  int64_t kt = 0, rows = 0, Q = 0;
  int64_t tile_k = 1, tile_t = 1;
};
using Conv2dSmallcWgradFn = void (*)(const Conv2dSmallcWgradArgs& a);

struct KernelTable {
  Isa isa;
  int mr, nr;  // micro-tile of gemm_ukernel
  GemmUkernelFn gemm_ukernel;
  GemmUkernelSaFn gemm_ukernel_sa;
  GemmUkernelSaFn gemm_ukernel_sa_tall;
  Conv2dUkernelFn conv2d_ukernel;
  Conv2dWgradUkernelFn conv2d_wgrad_ukernel;
  StoreTileFn store_tile;
  ReluFwdFn relu_fwd;
  ReluBwdFn relu_bwd;
  MaxPool2dFwdFn maxpool2d_fwd;
  MaxPool2dBwdFn maxpool2d_bwd;
  SumFn sum;
  AddFn add;
  FmaProbeFn fma_probe;
  int64_t fma_probe_flops_per_iter;
  TransposeFn transpose;
  Conv2dIm2colFn conv2d_im2col;
  Conv2dIm2colWgradFn conv2d_im2col_wgrad;
  Conv2dIm2colBatchFn conv2d_im2col_batch;
  // normalization family
  BnStatsFn bn_stats;
  BnColStatsFn bn_col_stats;
  BnBwdSumsFn bn_bwd_sums;
  BnBwdColSumsFn bn_bwd_col_sums;
  BnApplyFn bn_apply;
  BnApplyColsFn bn_apply_cols;
  BnBwdApplyFn bn_bwd_apply;
  BnBwdApplyColsFn bn_bwd_apply_cols;
  // pooling family (issue 17)
  AvgPool2dFwdFn avgpool2d_fwd;
  AvgPool2dBwdFn avgpool2d_bwd;
  GlobalAvgPool2dFwdFn global_avgpool2d_fwd;
  GlobalAvgPool2dBwdFn global_avgpool2d_bwd;
  GlobalMaxPool2dFwdFn global_maxpool2d_fwd;
  GlobalMaxPool2dBwdFn global_maxpool2d_bwd;
  // activation family (issue 17)
  ActFwdFn sigmoid_fwd;
  ActBwdFn sigmoid_bwd;
  ActFwdFn tanh_fwd;
  ActBwdFn tanh_bwd;
  LeakyReluFwdFn leaky_relu_fwd;
  LeakyReluBwdFn leaky_relu_bwd;
  ActFwdFn gelu_fwd;
  ActBwdFn gelu_bwd;
  ActFwdFn gelu_tanh_fwd;
  ActBwdFn gelu_tanh_bwd;
  ActFwdFn silu_fwd;
  ActBwdFn silu_bwd;
  // blocked direct convolution (issue 16): the tile kernel, VL, and the register budget
  // (ocb <= blocked_max_ocb, nc <= blocked_max_nc, ocb*nc <= blocked_max_acc per call)
  Conv2dBlockedFn conv2d_blocked;
  int blocked_vl, blocked_max_ocb, blocked_max_nc, blocked_max_acc;
  // its weight-gradient tile (conv2d_blocked_wgrad.cpp), under the same register budget
  Conv2dBlockedWgradFn conv2d_blocked_wgrad;
  // small-channel direct convolution (conv2d_smallc.cpp): forward, weight gradient, the vector
  // width and the vector registers the driver's tile rule may fill
  Conv2dSmallcFn conv2d_smallc;
  Conv2dSmallcWgradFn conv2d_smallc_wgrad;
  int smallc_vl, smallc_regs;
};

#define FASTCNN_DECLARE_ISA_KERNELS(ns)                                                         \
  namespace ns {                                                                                \
  extern const int kMR, kNR;                                                                    \
  void gemm_ukernel(int64_t kc, const float* a, const float* b, float* c, int64_t ldc,          \
                    int accumulate);                                                            \
  void gemm_ukernel_sa(int64_t kc, const float* a, int64_t ars, int64_t acs, const float* b,    \
                       float* c, int64_t ldc, int accumulate, int64_t ncols);                   \
  void gemm_ukernel_sa_tall(int64_t kc, const float* a, int64_t ars, int64_t acs,             \
                            const float* b, float* c, int64_t ldc, int accumulate,              \
                            int64_t ncols);                                                     \
  void conv2d_ukernel(int64_t kc, const float* a, const float* src, const int64_t* off,         \
                      float* c, int64_t ldc, int accumulate);                                   \
  void conv2d_wgrad_ukernel(int64_t kc, const float* src, const int64_t* off, const float* b,   \
                            int64_t ldb, float* c, int64_t ldc, int accumulate);                \
  void store_tile(float* dst, int64_t ldd, const float* src, int64_t lds, int64_t m, int64_t n, \
                  const float* bias_row, const float* bias_col, int relu, int accumulate);      \
  void relu_fwd(const float* x, float* y, int64_t n);                                           \
  void relu_bwd(const float* dy, const float* y, float* dx, int64_t n);                         \
  void maxpool2d_fwd(const float* x, float* y, int64_t* idx, const Pool2dParams& p);            \
  bool maxpool2d_bwd(const float* dy, const int64_t* idx, float* dx, const Pool2dParams& p);    \
  float sum(const float* x, int64_t n);                                                         \
  void add(float* acc, const float* x, int64_t n);                                              \
  float fma_probe(int64_t iters);                                                               \
  void transpose(const float* src, int64_t lds, int64_t rows, int64_t cols, float* dst,         \
                 int64_t ldd);                                                                  \
  void conv2d_im2col(const float* const* planes, const int64_t* bh, const int64_t* bw,          \
                     int64_t kc, int64_t j0, int64_t nc, int64_t Qo, int64_t Hs, int64_t Ws,    \
                     int64_t a_h, int64_t a_w, float* dst, int64_t nr);                         \
  void conv2d_im2col_wgrad(const float* const* planes, const int64_t* bh, const int64_t* bw,    \
                           int64_t cols, int64_t img_stride, int64_t k0, int64_t kc,            \
                           int64_t P, int64_t Q, int64_t Hs, int64_t Ws, int64_t a_h,           \
                           int64_t a_w, float* dst, int64_t nr, float* scratch);                \
  void conv2d_im2col_batch(const float* const* planes, const int64_t* bh, const int64_t* bw,    \
                           int64_t kc, int64_t img_stride, int64_t j0, int64_t nc, int64_t P,   \
                           int64_t Q, int64_t Hs, int64_t Ws, int64_t a_h, int64_t a_w,         \
                           float* dst, int64_t nr);                                             \
  extern const int64_t kFmaProbeFlopsPerIter;                                                   \
  /* normalization family */                                                                    \
  void bn_stats(const float* x, int64_t rows, int64_t cols, int64_t ld, double* mean,           \
                double* m2);                                                                    \
  void bn_col_stats(const float* x, int64_t rows, int64_t cols, int64_t ld, double* mean,       \
                    double* m2);                                                                \
  void bn_bwd_sums(const float* dy, const float* x, int64_t rows, int64_t cols, int64_t ld,     \
                   float m, double* sdy, double* sdxm);                                         \
  void bn_bwd_col_sums(const float* dy, const float* x, int64_t rows, int64_t cols, int64_t ld, \
                       const float* m, double* sdy, double* sdxm);                              \
  void bn_apply(const float* x, float* y, int64_t rows, int64_t cols, int64_t ld, float m,      \
                float a, float b);                                                              \
  void bn_apply_cols(const float* x, float* y, int64_t rows, int64_t cols, int64_t ld,          \
                     const float* m, const float* a, const float* b);                           \
  void bn_bwd_apply(const float* dy, const float* x, float* dx, int64_t rows, int64_t cols,     \
                    int64_t ld, float m, float p, float s, float q);                            \
  void bn_bwd_apply_cols(const float* dy, const float* x, float* dx, int64_t rows,              \
                         int64_t cols, int64_t ld, const float* m, const float* p,              \
                         const float* s, const float* q);                                       \
  /* pooling family (issue 17) */                                                               \
  void avgpool2d_fwd(const float* x, float* y, const float* div, const Pool2dParams& p,         \
                     int64_t planes);                                                           \
  void avgpool2d_bwd(const float* dy, float* dx, const float* div, float* scratch,              \
                     const Pool2dParams& p, int64_t planes);                                    \
  void global_avgpool2d_fwd(const float* x, float* y, int64_t planes, int64_t HW);              \
  void global_avgpool2d_bwd(const float* dy, float* dx, int64_t planes, int64_t HW);            \
  void global_maxpool2d_fwd(const float* x, float* y, int64_t* idx, int64_t planes,             \
                            int64_t HW);                                                        \
  bool global_maxpool2d_bwd(const float* dy, const int64_t* idx, float* dx, int64_t planes,     \
                            int64_t HW);                                                        \
  /* activation family (issue 17) */                                                            \
  void sigmoid_fwd(const float* x, float* y, int64_t n);                                        \
  void sigmoid_bwd(const float* dy, const float* y, float* dx, int64_t n);                      \
  void tanh_fwd(const float* x, float* y, int64_t n);                                           \
  void tanh_bwd(const float* dy, const float* y, float* dx, int64_t n);                         \
  void leaky_relu_fwd(const float* x, float* y, int64_t n, float slope);                        \
  void leaky_relu_bwd(const float* dy, const float* x, float* dx, int64_t n, float slope);      \
  void gelu_fwd(const float* x, float* y, int64_t n);                                           \
  void gelu_bwd(const float* dy, const float* x, float* dx, int64_t n);                         \
  void gelu_tanh_fwd(const float* x, float* y, int64_t n);                                      \
  void gelu_tanh_bwd(const float* dy, const float* x, float* dx, int64_t n);                    \
  void silu_fwd(const float* x, float* y, int64_t n);                                           \
  void silu_bwd(const float* dy, const float* x, float* dx, int64_t n);                         \
  /* blocked direct convolution (issue 16) */                                                   \
  void conv2d_blocked(const Conv2dBlockedArgs& a);                                              \
  extern const int kBlockedVL, kBlockedMaxOCB, kBlockedMaxNC, kBlockedMaxAcc;                  \
  void conv2d_blocked_wgrad(const Conv2dBlockedWgradArgs& a);                                  \
  /* small-channel direct convolution (issue 16) */                                             \
  void conv2d_smallc(const Conv2dSmallcArgs& a);                                                \
  void conv2d_smallc_wgrad(const Conv2dSmallcWgradArgs& a);                                     \
  extern const int kSmallcVL, kSmallcRegs;                                                      \
                                                                                                \
                                                                                                \
  }

FASTCNN_DECLARE_ISA_KERNELS(generic)
FASTCNN_DECLARE_ISA_KERNELS(avx2)
FASTCNN_DECLARE_ISA_KERNELS(avx512)

// The active table (set at import; re-selectable by tests through set_isa).
const KernelTable& kernels();
// Selects min(requested, best supported); returns the ISA now active. Thread-safe.
Isa set_isa(Isa requested);
Isa active_isa();
Isa best_isa();

}  // namespace fastcnn::cpu
