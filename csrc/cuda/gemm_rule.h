// gemm_rule.h -- the GEMM core's split and tile rule, host-only C++ (no CUDA): included by
// gemm_core.cuh (the launchers use it) and by the bindings, whose tile report
// (fastcnn._cuda.Conv2dPlan.gemms / LinearPlan.gemms, tools/cuda_tiles.py) prints what the
// launchers run from these very functions. No other copy of the rule exists.
//
// A GEMM problem: G groups of C_g (M x N) = A_g (M x K) . B_g (K x N), the reduction cut into
// `splits` chunks of `chunk` (a multiple of BK = 8) summed in order by splitk_reduce.
//
// Split-K (choose_split): a function of the shapes alone, never of the GPU, so every GPU gives
// the same bits. It aims at kTargetBlocks blocks (2 per SM of a 132-SM H100 / H200: the launch
// bound's 2 resident blocks per SM, a full wave):
//   * long reductions (K >= 2*kMinChunk): counted on the 64 x 128 tile, at least kMinChunk of
//     K per split, at most kMaxSplits splits (the reduction kernel sums the slices in order, one
//     thread per output: more slices make it latency-bound);
//   * short reductions (kMinChunk > K >= 2*kMinShortChunk): only when even the finest tile of
//     the shape (32 x 128 for M <= 32, else 64 x 64) leaves the grid short of a wave AND a split
//     of at most kMaxShortSplits chunks of >= kMinShortChunk reaches it (e.g. the seeds' dense
//     9216 -> 128 backward-data at batch 64: 144 tiles, K 128 -> 2 splits, 288 blocks); GEMMs
//     that no split brings to a wave (a dense 128 -> 10: 1 tile) are latency-bound and stay
//     whole: a split would only add the reduction's launch.
// Napkin: a split of s chunks writes s*M*N partial floats and reads them once more, against
// the M*N*K FMAs of the GEMM; the short tier splits only when K >= 128 (>= 32 FMAs per
// partial float moved).
//
// Tile (choose_tile): the tile shape never changes the bits (every output is one FMA chain in
// increasing k from its split's start, gemm_core.cuh), so it may use the GPU's SM count:
//   * M <= 32: 32 x 128 (half the 64-row tile would be padding);
//   * N <= 64: 64 x 64 (half the 128-column tile would be padding);
//   * else 64 x 128 when its grid fills a wave (G*splits*tiles >= kBlocksPerSm * sms), else
//     64 x 64 (twice the blocks: every SM gets its 2 resident blocks sooner).
#pragma once
#include <cstdint>
#include <vector>

#include "common/params.h"

namespace fastcnn::cuda::gemm {

namespace rule {
constexpr int64_t cdiv(int64_t a, int64_t b) { return (a + b - 1) / b; }  // a >= 0, b > 0
constexpr int64_t mx(int64_t a, int64_t b) { return a > b ? a : b; }
constexpr int64_t mn(int64_t a, int64_t b) { return a < b ? a : b; }
constexpr int64_t rup(int64_t a, int64_t b) { return cdiv(a, b) * b; }
}  // namespace rule

constexpr int kRuleBK = 8;  // gemm_core.cuh's BK (static_assert there)
constexpr int64_t kTargetBlocks = 264, kMinChunk = 256, kMaxSplits = 64;
constexpr int64_t kMinShortChunk = 64, kMaxShortSplits = 4;
constexpr int kBlocksPerSm = 2;  // every Cfg's __launch_bounds__ minimum (static_assert there)

struct Split {
  int64_t splits = 1, chunk = kRuleBK;
};

// The tile shapes gemm_core.cuh instantiates (its Cfg aliases; static_asserts there).
enum class TileKind { k64x128 = 0, k64x64 = 1, k32x128 = 2 };
struct TileDims {
  int bm, bn;
};
constexpr TileDims tile_dims(TileKind k) {
  return k == TileKind::k64x64 ? TileDims{64, 64}
         : k == TileKind::k32x128 ? TileDims{32, 128}
                                  : TileDims{64, 128};
}
inline const char* tile_name(TileKind k) {
  return k == TileKind::k64x64 ? "64x64" : k == TileKind::k32x128 ? "32x128" : "64x128";
}

inline int64_t tiles(int64_t G, int64_t M, int64_t N, int64_t bm = 64, int64_t bn = 128) {
  return G * rule::cdiv(rule::mx(M, 1), bm) * rule::cdiv(rule::mx(N, 1), bn);
}

// The finest tile of a shape (what a grid short of a wave runs on).
inline int64_t fine_tiles(int64_t G, int64_t M, int64_t N) {
  return M <= 32 ? tiles(G, M, N, 32, 128) : tiles(G, M, N, 64, 64);
}

// A fixed split of a reduction of length K (allow = false: never split).
inline Split choose_split(int64_t G, int64_t M, int64_t N, int64_t K, bool allow) {
  using namespace rule;
  Split s;
  s.chunk = rup(mx(K, 1), kRuleBK);
  if (!allow) return s;
  int64_t n = 1;
  if (K >= 2 * kMinChunk) {
    n = mn(mn(cdiv(kTargetBlocks, mx(tiles(G, M, N), 1)), K / kMinChunk), kMaxSplits);
  } else if (K >= 2 * kMinShortChunk) {
    const int64_t t = mx(fine_tiles(G, M, N), 1);
    const int64_t most = mn(K / kMinShortChunk, kMaxShortSplits);
    if (t < kTargetBlocks && t * most >= kTargetBlocks) n = mn(cdiv(kTargetBlocks, t), most);
  }
  if (n <= 1) return s;
  s.chunk = rup(cdiv(K, n), kRuleBK);
  s.splits = cdiv(K, s.chunk);
  if (s.splits <= 1) s = Split{1, rup(mx(K, 1), kRuleBK)};
  return s;
}

// The tile a problem of G groups of M x N in `splits` splits runs on, on a GPU of `sms` SMs.
inline TileKind choose_tile(int64_t G, int64_t M, int64_t N, int64_t splits, int sms) {
  const int64_t gs = G * rule::mx(splits, 1);
  if (M <= 32) return TileKind::k32x128;
  if (N <= 64) return TileKind::k64x64;
  if (gs * tiles(1, M, N, 64, 128) >= int64_t{kBlocksPerSm} * rule::mx(sms, 1))
    return TileKind::k64x128;
  return TileKind::k64x64;
}

// ---- the tile report ---------------------------------------------------------------------------
// One GEMM launch as the launchers make it (`count` identical launches: backward-data's chunks
// of images), with the rule's choice on a GPU of `sms` SMs.
struct GemmLaunch {
  const char* what = "";
  int64_t count = 1, G = 0, M = 0, N = 0, K = 0;
  Split split;
};
struct GemmChoice {
  GemmLaunch g;
  TileKind tile = TileKind::k64x128;
  int64_t blocks = 0;  // G*splits*ceil(M/bm)*ceil(N/bn): the grid's blocks per launch
};
inline GemmChoice choose(const GemmLaunch& g, int sms) {
  GemmChoice c;
  c.g = g;
  c.tile = choose_tile(g.G, g.M, g.N, g.split.splits, sms);
  const TileDims d = tile_dims(c.tile);
  c.blocks = g.M > 0 && g.N > 0 ? tiles(g.G * g.split.splits, g.M, g.N, d.bm, d.bn) : 0;
  return c;
}

// The GEMMs a pass launches, built by the same functions its launcher uses (conv2d.cu,
// linear.cu); backward-data of conv2d: its dcol GEMMs (one per chunk of images; col2im is a
// gather, not a GEMM). Empty problems give no launch (conv2d) or a launch with a zero extent.
enum class Pass { forward = 0, data = 1, weights = 2 };
std::vector<GemmLaunch> conv2d_gemms(const Conv2dParams& p, Pass pass);
std::vector<GemmLaunch> linear_gemms(int64_t N, int64_t in, int64_t out, Pass pass);

}  // namespace fastcnn::cuda::gemm
