// conv2d_route.cpp -- the shape rule that picks each convolution pass's form (conv2d_route.h).
//
// Both forms run the ISA's MR x NR register tile (avx2 4 x 24, avx512 8 x 48, generic 4 x 8)
// over the same multiply-adds; they differ in how many columns of that tile are wasted and in
// what feeds it:
//  * wide grid (conv2d_wide.cpp): the outputs of a plane are numbered on the padded grid,
//    P rows of Wg = ceil(Wp / sw) columns, Wg - Q of them computed and dropped, and the plane's
//    P*Wg grid columns run in NR-wide strips: computed / useful = round_up(P*Wg, NR) / (P*Q).
//    No packing (B rows are read at tap offsets straight from a band copy of the input).
//  * implicit GEMM (conv2d.cpp): columns are (image, pixel) pairs over a block of `imgs` images,
//    so a small plane no longer leaves a tile column empty: round_up(imgs*PQ, NR) / (imgs*PQ);
//    but each column's Cg*R*S im2col values are gathered (forward) or its dcol values scattered
//    back (backward-data, col2im) once per Kg rows of the tile: kPackCost / (2*Kg) flops of
//    overhead per useful flop, kPackCost = 16 the cost of gathering one element in flops of the
//    core's FMA peak (2 FMA ports x 8 lanes x 2 = 32 flops/cycle; a masked 8-float segment
//    copy costs ~4 cycles: 0.5 cycle = 16 flops per element).
// A pass takes the cheaper estimate (the wide form on a tie: it was the default before).
// imgs: the driver's column block is 480 floats (gemm.cpp kNCMax), so a problem spans
// imgs = 480 / PQ images (1 for a plane of >= 240 pixels: the per-image GEMM), but no more than
// ceil(N / 16), so that a batch gives >= 16 problems to spread over threads (the backward-data
// col2im form runs each problem on one thread). It depends on the shape only: with the driver's
// fixed K slices, every output's reduction order is the same for any imgs and thread count.
//
// Napkin maths, avx2 (NR = 24), 3x3 "same", batch 128:
//   shape                     wide fwd    GEMM fwd (imgs)         form
//   64->64 @ 8x8   (Kg 64)    96/64=1.50  1.00 + 16/128 = 1.13 (7)  GEMM
//   32->32 @16x16  (Kg 32)    288/256=1.13 1.00 + 16/64 = 1.25 (1)   wide
//   16->16 @32x32  (Kg 16)    1104/1024=1.08 1.00 + 16/32 = 1.50 (1) wide
//   seeds 32->64 26x26->24x24 624/576=1.08 1.00 + 16/128 = 1.13     wide
//   seeds 1->32 28x28->26x26  744/676=1.10 1.01 + 16/64 = 1.26      wide
// Strided 3x3 / 2 and 1x1 / 2 forwards have no wide form (wide_fwd_applicable): always GEMM,
// now batched where the output plane is small (32->64 @16->8: imgs = 7, 448 columns a problem
// instead of 64 padded to 72). Backward-data compares the wide form of the transposed
// correlation (dy padded by (R-1)*dh - pad: the same grid waste over the H x W input plane) with
// the batched col2im GEMM, whose scatter costs kPackCost / (2*Kg) per flop likewise.
// Weight gradient: the wide form's 12-tap x 32-channel tile wastes round_up(Kg, 32) / Kg and
// Wg / Q; the GEMM form (M = Kg, N = Cg*R*S, K = N*P*Q, already batched) wastes
// round_up(Kg, MR) / Kg and round_up(CgRS, NR) / CgRS and packs both operands (two passes for
// im2col rows + transpose: 2*kPackCost / (2*Kg), and dy's transpose kPackCost / (2*CgRS)).
//
// FASTCNN_CONV_ROUTE (private, for A/B benchmarks and tests; read on every call): "legacy" the
// routing before this rule (wide wherever applicable, one image per GEMM problem), "wide" the
// wide form wherever applicable, "gemm" the GEMM form everywhere; unset: the rule.
#include "cpu/conv2d_route.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "cpu/conv2d_wide.h"
#include "cpu/kernels.h"

namespace fastcnn::cpu {
namespace {

constexpr double kPackCost = 48.0;  // flops of FMA peak per gathered / scattered element
constexpr int64_t kBlockCols = 480;  // the GEMM driver's column block (gemm.cpp kNCMax)
constexpr int64_t kMinProblems = 16;  // batched problems a batch is cut into, at least
constexpr int64_t kMaxSide = 16;      // images side by side on one wide grid, at most
constexpr int64_t kWideScratch = int64_t{1} << 16;  // conv2d_wide.cpp's band scratch (floats)
constexpr double kSideFrom = 1.1;     // batch the wide grid when one image's cost exceeds this

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
int64_t round_up(int64_t a, int64_t b) { return ceil_div(a, b) * b; }

enum class Override { none, legacy, wide, gemm };

// FASTCNN_CONV_ROUTE: "legacy", "wide[:B]", "gemm[:B]" (B: images per grid / problem), else none
Override route_override(int64_t* imgs = nullptr) {
  const char* v = std::getenv("FASTCNN_CONV_ROUTE");
  if (!v) return Override::none;
  if (std::strcmp(v, "legacy") == 0) return Override::legacy;
  Override o = Override::none;
  if (std::strncmp(v, "wide", 4) == 0) o = Override::wide, v += 4;
  else if (std::strncmp(v, "gemm", 4) == 0) o = Override::gemm, v += 4;
  else return Override::none;
  if (*v == ':' && imgs) {
    const long b = std::strtol(v + 1, nullptr, 10);
    if (b >= 1 && b <= 64) *imgs = b;
  }
  return o;
}

// computed / useful columns of NR-wide strips over a plane of `rows` grid rows of `grid_w`
// columns, `keep_w` of each kept
double strip_waste(int64_t rows, int64_t grid_w, int64_t keep_w, int64_t nr) {
  return double(round_up(rows * grid_w, nr)) / double(rows * keep_w);
}

double gemm_cols_waste(int64_t cols, int64_t nr) {
  return double(round_up(cols, nr)) / double(cols);
}

// The wide grid of a stride-1 correlation of Cin-channel H x W planes padded by pl, pr (P x Q
// outputs, R kernel rows of dilation dh): computed / useful columns with B images side by side,
// and the B it runs with (1 unless one image wastes over kSideFrom - 1; then the cheapest B that
// keeps the whole plane's band in the scratch, <= kMaxSide and <= ceil(N / kMinProblems)).
struct WideGrid {
  double cost;
  int64_t imgs;
};

WideGrid wide_grid(int64_t N, int64_t Cin, int64_t H, int64_t W, int64_t pl, int64_t pr,
                   int64_t P, int64_t Q, int64_t halo) {
  const int64_t nr = kernels().nr, sep = std::max(pl, pr);
  auto cost = [&](int64_t B) {
    const int64_t Wt = B == 1 ? W + pl + pr : pl + B * (W + sep);
    return double(round_up(P * Wt, nr)) / double(P * B * Q);
  };
  WideGrid best{cost(1), 1};
  if (best.cost <= kSideFrom || pl < 0 || pr < 0 || Q > W + sep) return best;
  const int64_t bmax = std::min({kMaxSide, ceil_div(N, kMinProblems), N});
  for (int64_t B = 2; B <= bmax; ++B) {
    if (Cin * (P + halo) * (pl + B * (W + sep)) > kWideScratch) break;
    const double c = cost(B);
    if (c < best.cost) best = {c, B};
  }
  return best;
}

}  // namespace

int64_t gemm_images(const Conv2dParams& p) {
  const int64_t PQ = std::max<int64_t>(p.P * p.Q, 1);
  const int64_t by_block = std::max<int64_t>(kBlockCols / PQ, 1);
  const int64_t by_batch = std::max<int64_t>(ceil_div(p.N, kMinProblems), 1);
  return std::max<int64_t>(1, std::min(by_block, by_batch));
}

int64_t wide_fwd_images(const Conv2dParams& p) {
  if (p.stride_h != 1 || p.stride_w != 1) return 1;
  return wide_grid(p.N, p.Cg(), p.H, p.W, p.pad_left, p.pad_right, p.P, p.Q,
                   (p.R - 1) * p.dil_h).imgs;
}

double wide_fwd_cost(const Conv2dParams& p) {
  if (p.stride_h != 1 || p.stride_w != 1) {
    const int64_t Wg = ceil_div(p.W + p.pad_left + p.pad_right, p.stride_w);
    return strip_waste(p.P, Wg, p.Q, kernels().nr);
  }
  return wide_grid(p.N, p.Cg(), p.H, p.W, p.pad_left, p.pad_right, p.P, p.Q,
                   (p.R - 1) * p.dil_h).cost;
}

double gemm_fwd_cost(const Conv2dParams& p, int64_t imgs) {
  return gemm_cols_waste(imgs * p.P * p.Q, kernels().nr) + kPackCost / (2.0 * double(p.Kg()));
}

// the transposed correlation's grid: dy (Kg channels, P x Q) padded by (S-1)*dw - pad on each
// side, H x W outputs
int64_t wide_bwd_data_images(const Conv2dParams& p) {
  const int64_t ew = (p.S - 1) * p.dil_w;
  return wide_grid(p.N, p.Kg(), p.P, p.Q, ew - p.pad_left, ew - p.pad_right, p.H, p.W,
                   (p.R - 1) * p.dil_h).imgs;
}

double wide_bwd_data_cost(const Conv2dParams& p) {
  const int64_t ew = (p.S - 1) * p.dil_w;
  return wide_grid(p.N, p.Kg(), p.P, p.Q, ew - p.pad_left, ew - p.pad_right, p.H, p.W,
                   (p.R - 1) * p.dil_h).cost;
}

double gemm_bwd_data_cost(const Conv2dParams& p, int64_t imgs) {
  return gemm_cols_waste(imgs * p.P * p.Q, kernels().nr) + kPackCost / (2.0 * double(p.Kg()));
}

double wide_wgrad_cost(const Conv2dParams& p) {
  const int64_t CRS = p.CRSg(), Kg = p.Kg();
  const int64_t Wg = ceil_div(p.W + p.pad_left + p.pad_right, p.stride_w);
  return double(Wg) / double(p.Q) * double(round_up(CRS, 12)) / double(CRS) *
         double(round_up(Kg, 32)) / double(Kg);
}

double gemm_wgrad_cost(const Conv2dParams& p) {
  const KernelTable& kt = kernels();
  const int64_t CRS = p.CRSg(), Kg = p.Kg();
  return double(round_up(Kg, kt.mr)) / double(Kg) * gemm_cols_waste(CRS, kt.nr) +
         2.0 * kPackCost / (2.0 * double(Kg)) + kPackCost / (2.0 * double(CRS));
}

ConvRoute route_forward(const Conv2dParams& p) {
  int64_t forced = 0;
  const Override o = route_override(&forced);
  const bool can_wide = wide_fwd_applicable(p);
  if (o == Override::legacy) return {can_wide, 1};
  const int64_t imgs = forced ? forced : gemm_images(p);
  if (o == Override::gemm || !can_wide) return {false, imgs};
  if (o == Override::wide || wide_fwd_cost(p) <= gemm_fwd_cost(p, imgs))
    return {true, forced ? forced : wide_fwd_images(p)};
  return {false, imgs};
}

ConvRoute route_backward_data(const Conv2dParams& p, bool w_finite) {
  // the wide form's weight panels are Cg rows tall: not when padding them to MR rows would
  // waste over a third of the work (a first layer's few input channels)
  const int64_t Cg = p.Cg(), mr = kernels().mr, rows = round_up(Cg, mr);
  const bool can_wide = wide_conv_applicable(p) && 2 * rows <= 3 * Cg && w_finite;
  int64_t forced = 0;
  const Override o = route_override(&forced);
  if (o == Override::legacy) return {can_wide, 1};
  const int64_t imgs = forced ? forced : gemm_images(p);
  if (o == Override::gemm || !can_wide) return {false, imgs};
  if (o == Override::wide || wide_bwd_data_cost(p) <= gemm_bwd_data_cost(p, imgs))
    return {true, forced ? forced : wide_bwd_data_images(p)};
  return {false, imgs};
}

bool route_wgrad_wide(const Conv2dParams& p) {
  const bool can_wide = wide_wgrad_applicable(p);
  const Override o = route_override();
  if (o == Override::legacy || o == Override::wide) return can_wide;
  if (o == Override::gemm || !can_wide) return false;
  return wide_wgrad_cost(p) <= gemm_wgrad_cost(p);
}

}  // namespace fastcnn::cpu
