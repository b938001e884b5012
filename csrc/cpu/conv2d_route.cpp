// conv2d_route.cpp -- the shape rule that picks each convolution pass's form (conv2d_route.h).
//
// The wide grid and the GEMM run the ISA's MR x NR register tile (avx2 4 x 24, avx512 8 x 48, generic 4 x 8)
// over the same multiply-adds; they differ in how many columns of that tile are wasted and in
// what feeds it. Costs are "columns computed per useful column + packing", in flops per flop:
//  * wide grid (conv2d_wide.cpp): the outputs of a plane are numbered on the padded grid and
//    run in NR-wide strips; no packing (B rows are read at tap offsets from a band copy).
//    One image per grid: P rows of Wp = W + pl + pr columns, Q kept:
//      cost = round_up(P*Wp, NR) / (P*Q)              (8x8 "same": round_up(80, 24) / 64 = 1.5)
//    B images side by side (stride 1, pads >= 0): a grid row is pl zeros, then per image W
//    columns and sep = max(pl, pr) zeros, so neighbours share their padding:
//      cost = round_up(P*(pl + B*(W + sep)), NR) / (P*B*Q)   (8x8, B = 8: 600 / 512 = 1.17)
//    B: the cheapest up to min(16, ceil(N / 16)) (>= 16 work items a batch, for the threads)
//    whose band (Cin*(P + R - 1)*(pl + B*(W + sep)) floats) fits the 256 KiB scratch, taken
//    when it saves >= 4 % (kSideGain; the wider band costs a little in copies and stores).
//  * implicit GEMM (conv2d.cpp): columns are (image, pixel) pairs over imgs images, so a small
//    plane no longer leaves tile columns empty; but each column's Cg*R*S im2col values are
//    gathered (forward) or its dcol values scattered back (backward-data, col2im) once per Kg
//    rows of the tile:
//      cost = round_up(imgs*P*Q, NR) / (imgs*P*Q) + kPackCost / (2*Kg)
//    kPackCost = 48: one gathered element costs ~1.5 cycles (short masked segments), against
//    32 flops / cycle of FMA peak (2 ports x 8 lanes x 2); fitted to the 1-thread forward
//    timings below (16->16 @32: GEMM 2.1x the wide form's time, 32->32 @16: 1.3x, 64->64 @8: 1.0x
//    against one image per grid). imgs = min(480 / PQ, ceil(N / 16)): the driver's 480-column
//    block (gemm.cpp kNCMax), >= 16 problems a batch (col2im runs each on one thread), 1 for a
//    plane of >= 240 pixels (the per-image GEMM as before).
// A pass takes the cheaper estimate (the wide form on a tie). Only the shape and the ISA's NR,
// MR decide, never a timing, and every output is one reduction in a fixed order whatever the
// form's image count, blocking or thread count (the wide grid sums each output's taps in its
// fixed chunks, the GEMM in its fixed KC slices; col2im adds each dx element's taps in row
// order): results are bit-identical for any thread count.
//
// Napkin maths, avx2 (NR = 24, MR = 4), 3x3, batch 128 (64 for the seeds' CNN):
//   shape                        wide: 1 image / chosen B     GEMM (imgs)     form
//   64->64 @ 8x8  "same"         1.500 / 1.172 (B = 8)        1.393 (7)       wide, B = 8
//   32->32 @16x16 "same"         1.125 / 1.078 (B = 4)        1.781 (1)       wide, B = 4
//   16->16 @32x32 "same"         1.078 / -    (B = 1)         2.508 (1)       wide, B = 1
//   seeds 32->64 26x26 -> 24x24  1.083 / -    (B = 1)         1.375 (1)       wide, B = 1
//   seeds 1->32  28x28 -> 26x26  1.101 / -    (B = 1: B = 3 saves only 2 %)   wide, B = 1
// Backward-data: the wide form of the transposed correlation (dy padded by (R-1)*dh - pad: for
// "same" the same grid as the forward, so the same B) against the batched col2im GEMM (the
// same cost formula): wide for all of the above, col2im where the weights hold a NaN / inf.
// Strided 3x3 / 2 and 1x1 / 2 have no wide forward or backward-data (wide_fwd_applicable): the
// GEMM, batched where the output plane is small (32->64 @16->8: imgs = 7, 448 columns a
// problem instead of 64 padded to 72).
// Weight gradient: the wide form's 12-tap x 32-channel tile wastes round_up(Kg, 32) / Kg and
// Wg / Q; the GEMM form (M = Kg, N = Cg*R*S, K = N*P*Q, already batched) wastes
// round_up(Kg, MR) / Kg and round_up(CgRS, NR) / CgRS and packs both operands (im2col rows +
// transpose: 2*kPackCost / (2*Kg), dy's transpose kPackCost / (2*CgRS)): the wide form for
// every shape above (64->64 @8x8: 1.25 against 1.79); the GEMM only where the wide tile is
// mostly empty and the grid wasteful (4 output channels on a 4x4 plane: 16 against 14.7).
//
// The blocked direct convolution (conv2d_blocked.cpp: channel blocks of VL = 8 / 16, the
// padding and channel tail as real zeros, accumulators stored straight into NCHW) runs the
// forward, and stride-1 backward-data as the forward of the transposed problem (finite weights
// only, as the wide form), before both forms above wherever blocked_fwd_wins(p):
//   groups = 1 and pads >= 0 (for backward-data: (R-1)*dil - pad >= 0); not 1x1 / 1 (a plain
//   GEMM with no gather: 1x1 64->64 @8 measured 0.97x); channel blocks padded by at most 8x on
//   both sides (the worst case measured, 1->32 @28, still wins on AVX2); >= 4 MFLOP (below, calls
//   of <= ~0.1 ms where it measured 1.02-1.16x and its per-call weight reorder and scratch
//   weigh most; ResNet-20's smallest 3x3 layer at batch 1 is 4.7 MFLOP); not the generic ISA
//   (its scalar tile kernel can't keep the tile in SSE registers: 3-4x slower than the wide form).
// Its tile (ocb x nc) comes from its own cost rule (conv2d_blocked.cpp). Measured on AVX2 (AMD
// EPYC, 1 thread, CPU time, interleaved medians, a machine loaded ~6x), blocked against the
// better of wide / GEMM (benchmarks/run_conv_blocked_ab.py; batch 128, seeds 64):
//   forward    16->16 @32 1.37x, 32->32 @16 1.46x, 64->64 @8 1.37x, 16->32 @32/2 2.16x,
//              32->64 @16/2 1.70x, seeds 32->64 @26 1.36x; 8->8 @32 1.35x, 3->16 @32 1.23x,
//              1->32 @28 1.29x, 1x1 16->32 /2 1.05x
//   bwd-data   16->16 @32 1.38x, 32->32 @16 1.35x, 64->64 @8 1.49x, seeds 1.15x
// The blocked backward passes (conv2d_blocked_bwd.h), before the wide and GEMM forms:
//   weight gradient (conv2d_blocked_wgrad.cpp)  blocked_wgrad_wins: the forward's conditions
//     (groups = 1, pads >= 0, not 1x1 / 1, tails <= 8x, >= 4 MFLOP, not generic). Its tile has
//     no discarded columns (the wide grid's Wg / Q) and no 32-channel tile for 16 channels (the
//     wide form's round_up(K, 32) / K = 2 at K = 16), so it needs no finite-x fallback either.
//   backward-data of stride > 1 (conv2d_blocked_bwd.cpp, phase sub-convolutions): the
//     forward's rule on p, finite weights, and every output phase has a tap (not 1x1 / 2).
// Measured on AVX2 (AMD EPYC, 1 thread, CPU time, interleaved medians, batch 128 / seeds 64,
// the machine loaded 7-24 on 2 cores: +-10 %), blocked against the routing before it
// (benchmarks/run_conv_blocked_ab.py --pass wgrad / dgrad --routes unblocked,blocked), ranges
// over 2-3 runs:
//   wgrad      16->16 @32 2.0-2.45x, 32->32 @16 0.92-1.09x, 64->64 @8 0.97-1.05x,
//              16->32 @32/2 1.25-1.40x, 32->64 @16/2 0.99-1.09x, seeds 1.09-1.28x,
//              3->16 @32 0.98-1.44x, 1x1 16->32 /2 1.26-1.40x, 1x1 32->64 /2 0.78-0.90x: for
//              1x1 / 2 the rule now compares costs (blocked_wgrad_wins): 1x1 / 2, batch 128,
//              blocked / GEMM 16->32 @32 1.18-1.31x, 32->64 @32 1.32-1.38x, 8->16 @32 1.47x
//              (blocked); 32->64 @16 0.68-0.86x, 64->128 @16 0.68-0.70x, @8 0.68x (GEMM);
//              64->128 @32 1.08x (GEMM by the rule: a marginal miss)
//   dgrad /2   16->32 @32/2 1.31x, 32->64 @16/2 1.35x (1x1 /2: 0.63x, 0.79x: not routed)
//   ResNet-20 training step, batch 128, 1 thread: 1.14-1.15x (FASTCNN_CONV_ROUTE=nobwd vs
//              the rule, interleaved, CPU time)
// Every output is still one fixed-order sum whatever the thread count (the rule reads only the
// shape and the ISA), so results stay bit-identical for any thread count.
//
// FASTCNN_CONV_ROUTE (private, for A/B benchmarks and tests; read on every call): "legacy" the
// routing before this rule (wide wherever applicable, one image per GEMM problem), "wide" the
// wide form wherever applicable, "gemm" the GEMM form everywhere, "blocked" the blocked form
// wherever it applies (forward; backward-data of any stride with finite weights; the weight
// gradient), the rule elsewhere; "unblocked" the rule without the blocked forms (the routing
// before them, for A/B); "nobwd" the rule without this session's blocked weight gradient and
// strided backward-data (the routing before them, for A/B); "smallc" the small-channel form
// wherever it applies (forward and weight gradient; the rule elsewhere), "nosmallc" the rule
// without it (the routing before it, for A/B); unset: the rule.
//
// The small-channel direct convolution (conv2d_smallc.cpp: vectors along q, the C*R*S taps
// unrolled in one register tile) runs the forward and the weight gradient ahead of every form
// above wherever smallc_*_wins(p): groups = 1, pads >= 0, C <= 4 and C*R*S <= 32 (a first
// layer: the blocked form pads C to VL, 2x-8x the FMAs on AVX2, 4x-16x on AVX-512; the GEMM and
// wide tiles reduce over <= 32 steps, too few to carry their tile's load / store and packing),
// its own tile cost (conv2d_smallc.cpp's napkin maths, lanes past Q included) <= 1.6 (an
// AVX-512 row of Q = 8 fills half a vector: cost >= 2, left to the others), not the generic ISA
// (its scalar loops). The other forms' cost estimates above do not model so short a reduction
// (the wide form's 1.10 for 1->32 @28 measured 4.9 ms, 15x its FMA time), so the rule is the
// domain and the form's own cost, not a comparison with theirs. Measured on AVX2 (AMD EPYC,
// 1 thread, CPU time, interleaved medians of 21, load 5-15 on 2 cores: +-20 %; forward into a
// reused output with its bias, the seeds' with the fused ReLU; weight gradient with db, the
// seeds' through the fused ReLU's backward; benchmarks/run_conv_smallc_ab.py), against the
// routing before it (FASTCNN_CONV_ROUTE=nosmallc):
//   seeds 1->32 @28 (batch 64)   forward 1.3-1.7 ms (was 3.3-4.7: blocked), wgrad 2.1-2.9 ms
//                                (was 7.7-10.1: GEMM)
//   ResNet 3->16 @32 (batch 128) forward 3.3-3.4 ms (was 6.7-6.9), wgrad 4.4-4.8 ms (was 7.3-8.1)
#include "cpu/conv2d_route.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "cpu/conv2d_blocked.h"
#include "cpu/conv2d_blocked_bwd.h"
#include "cpu/conv2d_smallc.h"
#include "cpu/conv2d_wide.h"
#include "cpu/kernels.h"

namespace fastcnn::cpu {
namespace {

constexpr double kPackCost = 48.0;  // flops of FMA peak per gathered / scattered element
constexpr int64_t kBlockCols = 480;  // the GEMM driver's column block (gemm.cpp kNCMax)
constexpr int64_t kMinProblems = 16;  // batched problems a batch is cut into, at least
constexpr int64_t kMaxSide = 16;      // images side by side on one wide grid, at most
constexpr int64_t kWideScratch = int64_t{1} << 16;  // conv2d_wide.cpp's band scratch (floats)
constexpr double kSideGain = 1.04;    // batch the wide grid when that saves >= 4 % of its cost
// the blocked forward (conv2d_blocked.cpp): problems of at least kBlockedMinFlops, channel
// blocks padded by at most kBlockedMaxTail x (see the header)
constexpr double kBlockedMinFlops = 4.0e6;
constexpr int64_t kBlockedMaxTail = 8;
// the blocked weight gradient's fixed cost per output row, in pixel steps of its tile (1x1 only;
// fitted to the 1x1 / 2 timings in the header: 32->64 @16 GEMM, 16->32 @32 and 32->64 @32 blocked)
constexpr double kBlockedRowPixels = 16.0;
// the small-channel form: input channels at most, its tile cost at most (see the header)
constexpr int64_t kSmallcMaxC = 4;
constexpr double kSmallcMaxCost = 1.6;

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
int64_t round_up(int64_t a, int64_t b) { return ceil_div(a, b) * b; }

enum class Override { none, legacy, wide, gemm, blocked, unblocked, nobwd };

// FASTCNN_CONV_ROUTE: "legacy", "wide[:B]", "gemm[:B]" (B: images per grid / problem), else none
Override route_override(int64_t* imgs = nullptr) {
  const char* v = std::getenv("FASTCNN_CONV_ROUTE");
  if (!v) return Override::none;
  if (std::strcmp(v, "legacy") == 0) return Override::legacy;
  if (std::strcmp(v, "blocked") == 0) return Override::blocked;
  if (std::strcmp(v, "unblocked") == 0) return Override::unblocked;
  if (std::strcmp(v, "nobwd") == 0) return Override::nobwd;
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

// FASTCNN_CONV_ROUTE's small-channel settings: 1 "smallc", -1 "nosmallc", 0 anything else
int smallc_override() {
  const char* v = std::getenv("FASTCNN_CONV_ROUTE");
  if (!v) return 0;
  if (std::strcmp(v, "smallc") == 0) return 1;
  return std::strcmp(v, "nosmallc") == 0 ? -1 : 0;
}

bool smallc_domain(const Conv2dParams& p) {
  return smallc_applicable(p) && kernels().isa != Isa::generic && p.C <= kSmallcMaxC;
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
// and the B it runs with: the cheapest B that keeps the whole plane's band in the scratch,
// <= kMaxSide and <= ceil(N / kMinProblems), if it saves >= 4 % over one image per grid (a wider
// band costs a little more to copy and store; below that, one image per grid stays).
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
  const WideGrid one{cost(1), 1};
  WideGrid best = one;
  if (pl < 0 || pr < 0 || Q > W + sep) return one;
  const int64_t bmax = std::min({kMaxSide, ceil_div(N, kMinProblems), N});
  for (int64_t B = 2; B <= bmax; ++B) {
    if (Cin * (P + halo) * (pl + B * (W + sep)) > kWideScratch) break;
    const double c = cost(B);
    if (c < best.cost) best = {c, B};
  }
  return best.cost * kSideGain <= one.cost ? best : one;
}

// Whether the taps r*dil (r < R) reach every residue mod st: every output phase of a stride-st
// backward-data then has a tap (conv2d_blocked_bwd.cpp).
bool every_phase_has_a_tap(int64_t st, int64_t dil, int64_t R) {
  std::vector<bool> hit(static_cast<size_t>(st), false);
  int64_t n = 0;
  for (int64_t r = 0; r < R && n < st; ++r) {
    const size_t i = static_cast<size_t>((r * dil) % st);
    if (!hit[i]) hit[i] = true, ++n;
  }
  return n == st;
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

bool blocked_fwd_wins(const Conv2dParams& p) {
  if (!blocked_fwd_applicable(p) || kernels().isa == Isa::generic) return false;
  if (p.R == 1 && p.S == 1 && p.stride_h == 1 && p.stride_w == 1) return false;  // a plain GEMM
  const int64_t VL = kernels().blocked_vl;
  if (round_up(p.C, VL) > kBlockedMaxTail * p.C || round_up(p.K, VL) > kBlockedMaxTail * p.K)
    return false;
  const double flops = 2.0 * double(p.N) * double(p.K) * double(p.C) * double(p.R * p.S) *
                       double(p.P * p.Q);
  return flops >= kBlockedMinFlops;
}

bool smallc_fwd_wins(const Conv2dParams& p) {
  return smallc_domain(p) && smallc_fwd_tiling(p).cost <= kSmallcMaxCost;
}

bool smallc_wgrad_wins(const Conv2dParams& p) {
  return smallc_domain(p) && smallc_wgrad_tiling(p, true).cost <= kSmallcMaxCost;
}

bool route_wgrad_smallc(const Conv2dParams& p) {
  const int so = smallc_override();
  if (so != 0) return so > 0 && smallc_applicable(p);
  return route_override() == Override::none && smallc_wgrad_wins(p);
}

ConvRoute route_forward(const Conv2dParams& p) {
  int64_t forced = 0;
  const Override o = route_override(&forced);
  const int so = smallc_override();
  if (so > 0 ? smallc_applicable(p) : so == 0 && o == Override::none && smallc_fwd_wins(p))
    return {false, false, 1, true};
  const bool can_wide = wide_fwd_applicable(p);
  if (o == Override::legacy) return {can_wide, false, 1};
  if (o == Override::blocked && blocked_fwd_applicable(p)) return {false, true, 1};
  const int64_t imgs = forced ? forced : gemm_images(p);
  if ((o == Override::none || o == Override::nobwd) && blocked_fwd_wins(p)) return {false, true, 1};
  if (o == Override::gemm || !can_wide) return {false, false, imgs};
  if (o == Override::wide || wide_fwd_cost(p) <= gemm_fwd_cost(p, imgs))
    return {true, false, forced ? forced : wide_fwd_images(p)};
  return {false, false, imgs};
}

ConvRoute route_backward_data(const Conv2dParams& p, bool w_finite) {
  // the wide form's weight panels are Cg rows tall: not when padding them to MR rows would
  // waste over a third of the work (a first layer's few input channels)
  const int64_t Cg = p.Cg(), mr = kernels().mr, rows = round_up(Cg, mr);
  const bool can_wide = wide_conv_applicable(p) && 2 * rows <= 3 * Cg && w_finite;
  int64_t forced = 0;
  const Override o = route_override(&forced);
  if (o == Override::legacy) return {can_wide, false, 1};
  // the blocked form: the forward of the transposed problem, finite weights only (as the wide)
  const bool can_blocked = w_finite && blocked_bwd_data_applicable(p);
  if (can_blocked && (o == Override::blocked ||
                      ((o == Override::none || o == Override::nobwd) &&
                       blocked_fwd_wins(blocked_bwd_data_params(p)))))
    return {false, true, 1};
  // strided: the phase sub-convolutions (conv2d_blocked_bwd.cpp), under the forward's rule,
  // where every phase has a tap (1x1 / 2: three of four phases are zeros, measured 0.63-0.79x)
  const bool strided = p.stride_h > 1 || p.stride_w > 1;
  if (strided && w_finite && blocked_bwd_data_strided_applicable(p) &&
      (o == Override::blocked ||
       (o == Override::none && blocked_fwd_wins(p) &&
        every_phase_has_a_tap(p.stride_h, p.dil_h, p.R) &&
        every_phase_has_a_tap(p.stride_w, p.dil_w, p.S))))
    return {false, true, 1};
  const int64_t imgs = forced ? forced : gemm_images(p);
  if (o == Override::gemm || !can_wide) return {false, false, imgs};
  if (o == Override::wide || wide_bwd_data_cost(p) <= gemm_bwd_data_cost(p, imgs))
    return {true, false, forced ? forced : wide_bwd_data_images(p)};
  return {false, false, imgs};
}

bool blocked_wgrad_wins(const Conv2dParams& p) {
  if (!blocked_wgrad_applicable(p) || kernels().isa == Isa::generic) return false;
  if (p.R == 1 && p.S == 1 && p.stride_h == 1 && p.stride_w == 1) return false;  // a plain GEMM
  const int64_t VL = kernels().blocked_vl;
  if (round_up(p.C, VL) > kBlockedMaxTail * p.C || round_up(p.K, VL) > kBlockedMaxTail * p.K)
    return false;
  const double flops = 2.0 * double(p.N) * double(p.K) * double(p.C) * double(p.R * p.S) *
                       double(p.P * p.Q);
  if (flops < kBlockedMinFlops) return false;
  // 1x1 / 2 (projection shortcuts): one tap, so the GEMM form's only extra cost is its tile's
  // column waste and packing (gemm_wgrad_cost), while the blocked tile pays a fixed cost per
  // output row (the tile's row loop, the band's per-row reorder): kBlockedRowPixels pixel steps
  // a row of Q pixels. The cheaper estimate wins.
  if (p.R == 1 && p.S == 1)
    return blocked_wgrad_tiling(p).cost * (1.0 + kBlockedRowPixels / double(p.Q)) <=
           gemm_wgrad_cost(p);
  return true;
}

bool route_wgrad_blocked(const Conv2dParams& p) {
  const Override o = route_override();
  if (o == Override::blocked) return blocked_wgrad_applicable(p);
  return o == Override::none && blocked_wgrad_wins(p);
}

bool route_wgrad_wide(const Conv2dParams& p) {
  const bool can_wide = wide_wgrad_applicable(p);
  const Override o = route_override();
  if (o == Override::legacy || o == Override::wide) return can_wide;
  if (o == Override::gemm || !can_wide) return false;
  return wide_wgrad_cost(p) <= gemm_wgrad_cost(p);
}

}  // namespace fastcnn::cpu
