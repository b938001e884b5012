// batch_norm.cpp -- batch normalisation forward / backward drivers (per channel over N and the
// spatial axes). x is seen as (N, C, S), S = L or H*W (1 for (N, C)); M = N*S values a channel.
//
// Tiling (fixed by the shape alone, never by the thread count):
//  * "row" form, S >= kRowMin: a channel's values are N runs of S contiguous floats (stride
//    C*S); a tile is R consecutive runs (R = 4096 / S) or, for S >= 4096, a 4096-float piece
//    of one run. Kernels are vectorised along S.
//  * "column" form, S < kRowMin (incl. (N, C) inputs, and planes up to 22x22): x is an
//    (N, C*S) matrix and a tile is R rows x J <= 512 columns (R*J <= 32 Ki floats, 128 KiB: the
//    second pass hits L2); each column (a (channel, position) pair) is vectorised across, i.e.
//    across channels for (N, C), across 512 / S channels' planes for small planes. Its runs
//    are 2 KiB (the row form's are S floats, >= 2 KiB too): 256-byte runs (8x8 planes in the
//    row form, as before) or 1 KiB ones (256 columns) are too short for the prefetchers.
//  Tiles are numbered in memory order, so a thread's contiguous range of tiles is a contiguous
//  stretch of x: small C with large N*S and large C with small S both keep every thread busy.
//  The elementwise passes (y, dx) need no groups, so they sweep x in memory order instead
//  ("sweeps", make_sweep): x as an (N, C*S) matrix, whole rows at a time with per-column
//  coefficient arrays (CS <= kSweepMatrixMax: the arrays stay in L2), else plane by plane; a
//  task is >= 16 Ki contiguous floats (or one piece of a longer row). The reductions' tiles
//  read short runs (S floats, or <= 256 columns) far apart, which the prefetchers follow badly.
// Forward (training): pass 1 reads x once: each tile's statistics (bn_stats: its own mean, then
// the centred sum of squares from L1 -- a chunked two-pass, no E[x^2] - E[x]^2 cancellation),
// one (count, mean, M2) record per group; the records of a channel are combined in double in a
// fixed pairwise tree (Chan et al.'s parallel variance formula), so the statistics are the same
// bits for any thread count. Pass 2 reads x again and writes y = (x - mean_hi) * a + b' with
// a = invstd * weight, b' = bias - mean_lo * a (mean split in two floats: x - mean_hi is exact
// near the mean, so a large mean costs no accuracy). Inference skips pass 1, and so does a
// training call given the statistics (`given`: gathered in the convolution that wrote x,
// conv2d_stats.h); the running statistics are then updated from those, as from pass 1's.
// Backward: pass 1 reads dy and x (sum dy, sum dy * (x - mean) per group, tree-summed in
// double), pass 2 reads them again and writes dx = (dy - p) * s - (x - mean) * q; inference
// (dx = dy * invstd * weight) reads dy only and needs pass 1 only for dweight / dbias.
// Bytes: forward 2 reads + 1 write of x (12 B/element), backward 2 x (dy, x) + dx (20 B/elt).
// Fused ReLU (p.relu / relu_y): the forward runs relu_fwd on each tile of y right after its
// apply, while the tile is in L1/L2 (no pass over memory; the bits of relu_forward on the
// unfused y). The backward masks dy with relu_bwd into dx tile by tile in pass 1 (into a
// scratch when dx is not wanted), the sums read that tile back from cache, and pass 2 reads
// the masked dy from dx in place: 2 x (dy, x, relu_y -> dx) + 2 x (dx, x) -> dx ~ 28 B/elt,
// against 12 + 20 = 32 B/elt (plus an intermediate array) for relu_backward then BN's.
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "cpu/kernels.h"
#include "cpu/moments.h"
#include "cpu/ops.h"
#include "cpu/parallel.h"

namespace fastcnn::cpu {
namespace {

constexpr int64_t kRowMin = 512;        // S at which a plane's runs are long enough to stream
constexpr double kGrainElems = 1 << 15;  // elements per thread worth a parallel region
constexpr int64_t kBnColTileElems = 1 << 15;  // column-form tile: 128 KiB, re-read from L2

struct Tiling {
  bool cols = false;
  int64_t N = 0, C = 0, S = 1, CS = 0;
  int64_t R = 1, J = 1, nb = 0, jb = 0, tiles = 0;
};

struct Tile {
  int64_t off = 0, rows = 0, cols = 0, c = 0, j0 = 0, ib = 0, b = 0;
};

// An elementwise pass in memory order: `nrows` rows of `len` floats (the matrix view: N rows of
// CS; the plane view: N*C planes of S), cut into tasks of rows_per whole rows or, for rows of
// more than kSweepElems floats, one piece of one row.
constexpr int64_t kSweepElems = 1 << 14;
constexpr int64_t kSweepMatrixMax = 1 << 14;  // CS up to this: per-column arrays (L2-resident)

struct Sweep {
  bool planes = false;
  int64_t len = 0, nrows = 0, rows_per = 1, piece = 0, pieces = 1, tasks = 0;
};

Sweep make_sweep(const BatchNormParams& p) {
  Sweep w;
  const int64_t CS = p.C * p.S;
  w.planes = p.S >= kRowMin && CS > kSweepMatrixMax;
  w.len = w.planes ? p.S : CS;
  w.nrows = w.planes ? p.N * p.C : p.N;
  if (w.len == 0 || w.nrows == 0) return w;
  if (w.len >= kSweepElems) {
    w.piece = kSweepElems;
    w.pieces = (w.len + w.piece - 1) / w.piece;
  } else {
    w.piece = w.len;
    w.rows_per = kSweepElems / w.len;
  }
  w.tasks = (w.nrows + w.rows_per - 1) / w.rows_per * w.pieces;
  return w;
}

// Task i of a sweep as a tile: rows (of len floats, len apart) from row (plane) `ib`, columns
// j0 .. j0 + cols of each.
Tile sweep_at(const Sweep& w, int64_t i) {
  Tile u;
  const int64_t rb = i / w.pieces, b = i - rb * w.pieces;
  u.ib = rb * w.rows_per;
  u.rows = std::min(w.rows_per, w.nrows - u.ib);
  u.j0 = b * w.piece;
  u.cols = std::min(w.piece, w.len - u.j0);
  u.off = u.ib * w.len + u.j0;
  return u;
}

Tiling make_tiling(const BatchNormParams& p) {
  Tiling t;
  t.N = p.N, t.C = p.C, t.S = p.S, t.CS = p.C * p.S;
  if (t.CS == 0 || p.N == 0) return t;
  auto cdiv = [](int64_t a, int64_t b) { return (a + b - 1) / b; };
  if (p.S >= kRowMin) {
    t.J = std::min(p.S, kBnTileElems);
    t.jb = cdiv(p.S, t.J);
    t.R = p.S >= kBnTileElems ? 1 : kBnTileElems / p.S;
    t.nb = cdiv(p.N, t.R);
    t.tiles = p.C * t.nb * t.jb;
  } else {
    t.cols = true;
    t.J = std::min(t.CS, kBnColTile);
    t.jb = cdiv(t.CS, t.J);
    t.R = std::max<int64_t>(1, kBnColTileElems / t.J);
    t.nb = cdiv(p.N, t.R);
    t.tiles = t.nb * t.jb;
  }
  return t;
}

// Tiles are numbered in memory order: row form (row block ib, channel c, piece b), column form
// (row block ib, column block): a thread's contiguous range of tiles is a contiguous stretch of
// memory, whatever C is.
Tile tile_at(const Tiling& t, int64_t i) {
  Tile u;
  if (!t.cols) {
    const int64_t per_ib = t.C * t.jb;
    u.ib = i / per_ib;
    const int64_t r = i - u.ib * per_ib;
    u.c = r / t.jb;
    u.b = r - u.c * t.jb;
    u.off = (u.ib * t.R * t.C + u.c) * t.S + u.b * t.J;
    u.rows = std::min(t.R, t.N - u.ib * t.R);
    u.cols = std::min(t.J, t.S - u.b * t.J);
  } else {
    u.ib = i / t.jb;
    u.j0 = (i % t.jb) * t.J;
    u.off = u.ib * t.R * t.CS + u.j0;
    u.rows = std::min(t.R, t.N - u.ib * t.R);
    u.cols = std::min(t.J, t.CS - u.j0);
  }
  return u;
}

int tile_threads(const Tiling& t) {
  return threads_for(static_cast<double>(t.N) * static_cast<double>(t.CS), kGrainElems);
}

// The rows of tile u: f(offset of the row, its length); both forms' rows are CS apart.
template <typename F>
void for_rows(const Tiling& t, const Tile& u, F&& f) {
  for (int64_t r = 0; r < u.rows; ++r) f(u.off + r * t.CS, u.cols);
}

// Runs f(tile index, tile) over every tile, in parallel over the fixed tiles.
template <typename F>
void for_tiles(const Tiling& t, F&& f) {
  parallel_for(
      t.tiles,
      [&](int, int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i) f(i, tile_at(t, i));
      },
      tile_threads(t));
}

// Runs f(task) over every task of the sweep, in parallel.
template <typename F>
void for_sweep(const Tiling& t, const Sweep& w, F&& f) {
  parallel_for(
      w.tasks,
      [&](int, int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i) f(sweep_at(w, i));
      },
      tile_threads(t));
}

// Groups of channel c: count, and the index of its record.
int64_t groups_of(const Tiling& t) { return t.cols ? t.nb * t.S : t.nb * t.jb; }

// Row form: the records (one per tile) are stored channel by channel, so that the per-channel
// combine reads them contiguously: group g = ib * jb + b of channel c is record c * G + g.
int64_t record_of(const Tiling& t, int64_t c, int64_t g) { return c * groups_of(t) + g; }
int64_t tile_record(const Tiling& t, const Tile& u) { return (u.c * t.nb + u.ib) * t.jb + u.b; }

double count_of(const Tiling& t, int64_t c, int64_t g) {
  const int64_t ib = g / t.jb, b = g % t.jb;
  return static_cast<double>(std::min(t.R, t.N - ib * t.R) * std::min(t.J, t.S - b * t.J));
}

template <typename Leaf>
double tree_sum(int64_t lo, int64_t hi, const Leaf& leaf) {
  if (hi - lo == 1) return leaf(lo);
  const int64_t mid = lo + (hi - lo) / 2;
  return tree_sum(lo, mid, leaf) + tree_sum(mid, hi, leaf);
}

template <typename F>
void for_channels(const Tiling& t, F&& f) {
  const double work = static_cast<double>(t.C) * static_cast<double>(std::max<int64_t>(1, groups_of(t)));
  parallel_for(
      t.C,
      [&](int, int64_t b, int64_t e) {
        for (int64_t c = b; c < e; ++c) f(c);
      },
      threads_for(work, 4096));
}

// Per-column copies of per-channel coefficients (the (N, C*S) matrix: column j is channel j / S).
std::vector<float> expand(const std::vector<float>& v, const Tiling& t) {
  std::vector<float> out(static_cast<size_t>(t.CS));
  for (int64_t c = 0; c < t.C; ++c) std::fill_n(out.begin() + c * t.S, t.S, v[c]);
  return out;
}

// Column form: the records are rows of C*S values, one row per row block (rec[ib * CS + j],
// written contiguously by the tiles). They are merged down the row blocks in a fixed pairwise
// tree, level by level (row ib absorbs row ib + step), each level a contiguous sweep over the
// rows, split over threads by column ranges; row 0 then holds every column's result.
template <typename MergeRow>
void merge_row_blocks(const Tiling& t, MergeRow&& merge_row) {
  const int64_t chunk = 1024;  // columns per work item
  const int64_t items = (t.CS + chunk - 1) / chunk;
  parallel_for(
      items,
      [&](int, int64_t b, int64_t e) {
        const int64_t j0 = b * chunk, j1 = std::min(t.CS, e * chunk);
        for (int64_t step = 1; step < t.nb; step *= 2)
          for (int64_t ib = 0; ib + step < t.nb; ib += 2 * step) merge_row(ib, ib + step, j0, j1, step);
      },
      threads_for(static_cast<double>(t.nb) * static_cast<double>(t.CS), 1 << 16));
}

// Rows merged in a tree of `step` below ib hold the count of those row blocks' rows.
double rows_below(const Tiling& t, int64_t ib, int64_t step) {
  const int64_t last = std::min(t.nb, ib + step);
  return static_cast<double>(std::min(t.N, last * t.R) - ib * t.R);
}

}  // namespace

void batch_norm_forward(const float* x, const float* weight, const float* bias,
                        float* running_mean, float* running_var, float* y, float* mean,
                        float* invstd, const BatchNormParams& p, const ConvBatchStats* given) {
  const Tiling t = make_tiling(p);
  const KernelTable& k = kernels();
  const int64_t C = p.C, M = p.M();
  std::vector<double> mean_d(C), var_d(C);
  if (p.training) {
    if (M == 0) {
      const float nan = std::numeric_limits<float>::quiet_NaN();
      std::fill_n(mean, C, nan);
      std::fill_n(invstd, C, nan);
      return;  // PyTorch leaves the running statistics alone for an empty batch
    }
    if (given) {  // gathered by the convolution that wrote x: pass 1 is done
      for (int64_t c = 0; c < C; ++c) mean_d[c] = given->mean[c], var_d[c] = given->var[c];
    } else {
      const int64_t nrec = t.cols ? t.nb * t.CS : C * groups_of(t);
      std::vector<double> rmean(nrec), rm2(nrec);
      for_tiles(t, [&](int64_t, const Tile& u) {
        if (t.cols) {
          const int64_t r = u.ib * t.CS + u.j0;
          k.bn_col_stats(x + u.off, u.rows, u.cols, t.CS, rmean.data() + r, rm2.data() + r);
        } else {
          const int64_t r = tile_record(t, u);
          k.bn_stats(x + u.off, u.rows, u.cols, t.CS, &rmean[r], &rm2[r]);
        }
      });
      if (t.cols) {
        merge_row_blocks(t, [&](int64_t ia, int64_t ib, int64_t j0, int64_t j1, int64_t step) {
          const double na = rows_below(t, ia, step), nb = rows_below(t, ib, step);
          const double fb = nb / (na + nb), fab = na * fb;
          double* ma = rmean.data() + ia * t.CS;
          double* qa = rm2.data() + ia * t.CS;
          const double* mb = rmean.data() + ib * t.CS;
          const double* qb = rm2.data() + ib * t.CS;
          for (int64_t j = j0; j < j1; ++j) {  // merge(a, b) of Moments, one column each
            const double delta = mb[j] - ma[j];
            ma[j] += delta * fb;
            qa[j] += qb[j] + delta * delta * fab;
          }
        });
    }
    const int64_t G = t.cols ? t.S : groups_of(t);
    for_channels(t, [&](int64_t c) {
      const Moments m = tree_moments(0, G, [&](int64_t g) {
        if (t.cols) {  // the S columns of channel c, each over all N rows (row 0 of the merge)
          const int64_t j = c * t.S + g;
          return Moments{static_cast<double>(t.N), rmean[j], rm2[j]};
        }
        const int64_t r = record_of(t, c, g);
        return Moments{count_of(t, c, g), rmean[r], rm2[r]};
      });
      mean_d[c] = m.mean;
      const double v = m.m2 / static_cast<double>(M);
      var_d[c] = v < 0.0 ? 0.0 : v;  // rounding can leave a tiny negative; NaN stays NaN
    });
    }
    if (running_mean) {
      const double mo = p.momentum, keep = 1.0 - p.momentum;
      const double unbias = static_cast<double>(M) / static_cast<double>(M - 1);
      for (int64_t c = 0; c < C; ++c) {
        running_mean[c] = static_cast<float>(keep * running_mean[c] + mo * mean_d[c]);
        running_var[c] = static_cast<float>(keep * running_var[c] + mo * var_d[c] * unbias);
      }
    }
  } else {
    for (int64_t c = 0; c < C; ++c) mean_d[c] = running_mean[c], var_d[c] = running_var[c];
  }
  std::vector<float> vm(C), va(C), vb(C);
  for (int64_t c = 0; c < C; ++c) {
    const double is = 1.0 / std::sqrt(var_d[c] + p.eps);
    mean[c] = static_cast<float>(mean_d[c]);
    invstd[c] = static_cast<float>(is);
    const double a = is * (weight ? weight[c] : 1.0f);
    const float af = static_cast<float>(a);
    vm[c] = mean[c];
    va[c] = af;
    const double lo = mean_d[c] - static_cast<double>(mean[c]);  // mean = hi + lo
    vb[c] = static_cast<float>((bias ? bias[c] : 0.0f) - (std::isfinite(lo) ? lo * af : 0.0));
  }
  if (t.tiles == 0) return;
  const Sweep w = make_sweep(p);
  auto relu_task = [&](const Tile& u) {  // the fused ReLU, on the task just written (in cache)
    if (!p.relu) return;
    for (int64_t r = 0; r < u.rows; ++r) k.relu_fwd(y + u.off + r * w.len, y + u.off + r * w.len, u.cols);
  };
  if (!w.planes) {
    const std::vector<float> cm = expand(vm, t), ca = expand(va, t), cb = expand(vb, t);
    for_sweep(t, w, [&](const Tile& u) {
      k.bn_apply_cols(x + u.off, y + u.off, u.rows, u.cols, w.len, cm.data() + u.j0,
                      ca.data() + u.j0, cb.data() + u.j0);
      relu_task(u);
    });
  } else {
    for_sweep(t, w, [&](const Tile& u) {
      for (int64_t r = 0; r < u.rows; ++r) {
        const int64_t c = (u.ib + r) % C, o = u.off + r * w.len;
        k.bn_apply(x + o, y + o, 1, u.cols, w.len, vm[c], va[c], vb[c]);
      }
      relu_task(u);
    });
  }
}

void batch_norm_backward(const float* dy, const float* x, const float* weight, const float* mean,
                         const float* invstd, float* dx, float* dweight, float* dbias,
                         const BatchNormParams& p, const float* relu_y) {
  const Tiling t = make_tiling(p);
  const KernelTable& k = kernels();
  const int64_t C = p.C, M = p.M();
  const bool sums = p.training ? (dx || dweight || dbias) : (dweight || dbias);
  std::vector<double> sdy(C, 0.0), sdxm(C, 0.0);
  std::vector<float> vm(mean, mean + C);
  std::vector<float> cm;
  if (t.cols && t.tiles) cm = expand(vm, t);
  // With relu_y the passes see gy = relu_backward(dy, relu_y), written tile by tile into dx
  // (or, when dx is not wanted, a scratch) by whichever pass reads the tile first.
  std::vector<float> scratch;
  float* gm = nullptr;
  if (relu_y && t.tiles && (dx || sums)) {
    if (!dx) scratch.resize(static_cast<size_t>(t.N * t.CS));
    gm = dx ? dx : scratch.data();
  }
  const float* gy = gm ? gm : dy;
  auto mask_tile = [&](const Tile& u) {
    if (gm) for_rows(t, u, [&](int64_t o, int64_t n) { k.relu_bwd(dy + o, relu_y + o, gm + o, n); });
  };
  const bool masked_in_sums = sums && t.tiles;  // else the apply pass masks
  if (sums && t.tiles) {
    const int64_t nrec = t.cols ? t.nb * t.CS : C * groups_of(t);
    std::vector<double> rg(nrec), rh(nrec);
    for_tiles(t, [&](int64_t, const Tile& u) {
      mask_tile(u);
      if (t.cols) {
        const int64_t r = u.ib * t.CS + u.j0;
        k.bn_bwd_col_sums(gy + u.off, x + u.off, u.rows, u.cols, t.CS, cm.data() + u.j0,
                          rg.data() + r, rh.data() + r);
      } else {
        const int64_t r = tile_record(t, u);
        k.bn_bwd_sums(gy + u.off, x + u.off, u.rows, u.cols, t.CS, vm[u.c], &rg[r], &rh[r]);
      }
    });
    if (t.cols) {
      merge_row_blocks(t, [&](int64_t ia, int64_t ib, int64_t j0, int64_t j1, int64_t) {
        double* ga = rg.data() + ia * t.CS;
        double* ha = rh.data() + ia * t.CS;
        const double* gb = rg.data() + ib * t.CS;
        const double* hb = rh.data() + ib * t.CS;
        for (int64_t j = j0; j < j1; ++j) ga[j] += gb[j], ha[j] += hb[j];
      });
    }
    const int64_t G = t.cols ? t.S : groups_of(t);
    auto rec = [&](int64_t c, int64_t g) { return t.cols ? c * t.S + g : record_of(t, c, g); };
    for_channels(t, [&](int64_t c) {
      sdy[c] = tree_sum(0, G, [&](int64_t g) { return rg[rec(c, g)]; });
      sdxm[c] = tree_sum(0, G, [&](int64_t g) { return rh[rec(c, g)]; });
    });
  }
  if (dweight)
    for (int64_t c = 0; c < C; ++c) dweight[c] = static_cast<float>(sdxm[c] * invstd[c]);
  if (dbias)
    for (int64_t c = 0; c < C; ++c) dbias[c] = static_cast<float>(sdy[c]);
  if (!dx || t.tiles == 0) return;
  std::vector<float> vp(C), vs(C), vq(C);
  for (int64_t c = 0; c < C; ++c) {
    const double is = invstd[c];
    const double s = is * (weight ? weight[c] : 1.0f);
    vs[c] = static_cast<float>(s);
    vp[c] = static_cast<float>(sdy[c] / static_cast<double>(M));
    vq[c] = static_cast<float>(is * is * (sdxm[c] / static_cast<double>(M)) * s);
  }
  const Sweep w = make_sweep(p);
  if (!p.training) {  // dx = dy * invstd * weight: dy only
    auto mask_task = [&](const Tile& u) {  // relu_y without the sums pass: masked here
      if (masked_in_sums || !gm) return;
      for (int64_t r = 0; r < u.rows; ++r) {
        const int64_t o = u.off + r * w.len;
        k.relu_bwd(dy + o, relu_y + o, gm + o, u.cols);
      }
    };
    if (!w.planes) {
      const std::vector<float> zero(static_cast<size_t>(t.CS), 0.0f), cs = expand(vs, t);
      for_sweep(t, w, [&](const Tile& u) {
        mask_task(u);
        k.bn_apply_cols(gy + u.off, dx + u.off, u.rows, u.cols, w.len, zero.data(),
                        cs.data() + u.j0, zero.data());
      });
    } else {
      for_sweep(t, w, [&](const Tile& u) {
        mask_task(u);
        for (int64_t r = 0; r < u.rows; ++r) {
          const int64_t o = u.off + r * w.len;
          k.bn_apply(gy + o, dx + o, 1, u.cols, w.len, 0.0f, vs[(u.ib + r) % C], 0.0f);
        }
      });
    }
    return;
  }
  // training: pass 1 has masked every tile (sums is true with dx)
  if (!w.planes) {
    if (cm.empty()) cm = expand(vm, t);
    const std::vector<float> cp = expand(vp, t), cs = expand(vs, t), cq = expand(vq, t);
    for_sweep(t, w, [&](const Tile& u) {
      k.bn_bwd_apply_cols(gy + u.off, x + u.off, dx + u.off, u.rows, u.cols, w.len,
                          cm.data() + u.j0, cp.data() + u.j0, cs.data() + u.j0,
                          cq.data() + u.j0);
    });
  } else {
    for_sweep(t, w, [&](const Tile& u) {
      for (int64_t r = 0; r < u.rows; ++r) {
        const int64_t c = (u.ib + r) % C, o = u.off + r * w.len;
        k.bn_bwd_apply(gy + o, x + o, dx + o, 1, u.cols, w.len, vm[c], vp[c], vs[c], vq[c]);
      }
    });
  }
}

}  // namespace fastcnn::cpu
