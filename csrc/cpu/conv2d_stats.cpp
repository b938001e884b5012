// conv2d_stats.cpp -- per-channel batch statistics of a convolution's output, chunk by chunk
// (conv2d_stats.h has the contract): the records of the chunks, and their fixed combine.
// Shapes: y (N, K, P, Q); a chunk is rows x Q floats of one plane, rows = clamp(ceil(1024 / Q),
// 1, P) (planes up to 32x32: the whole plane), one (count, mean, M2) record in double each.
// Napkin maths, ResNet-20 batch 128 (16 @32x32, 32 @16x16, 64 @8x8): 2048, 4096 and 8192 records
// (<= 128 KiB), 2 reads of each chunk from L1 / L2 (bn_stats' two passes) right after the
// convolution wrote it, against batch_norm's own pass over y from memory. The chunk size trades
// bn_stats' per-call cost (its horizontal sums and divisions, ~100 cycles a call) against the
// blocked form's bands, which become whole chunks (for N < 4 * threads its smaller bands are
// rounded up). Measured (1 thread, batch 128, interleaved CPU time on a loaded 2-core machine):
// the gathering costs 0.3-0.8 ms a ResNet-20 layer, batch_norm's own statistics pass 0.5-0.8 ms;
// for 8x8 planes (64-float chunks) it does not pay, and the layers do not plan it there.
#include "cpu/conv2d_stats.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "cpu/kernels.h"
#include "cpu/moments.h"
#include "cpu/parallel.h"

namespace fastcnn::cpu {
namespace {

constexpr int64_t kConvStatsChunk = 1024;  // floats a chunk, about (whole rows): 4 KiB, in L1

}  // namespace

int64_t conv_stats_rows(int64_t P, int64_t Q) {
  if (P <= 0 || Q <= 0) return 1;
  return std::clamp<int64_t>((kConvStatsChunk + Q - 1) / Q, 1, P);
}

ConvStatsPlan conv_stats_plan(const Conv2dParams& p) {
  ConvStatsPlan s;
  s.N = p.N, s.K = p.K, s.P = p.P, s.Q = p.Q;
  s.rows = conv_stats_rows(p.P, p.Q);
  s.chunks = p.P > 0 ? (p.P + s.rows - 1) / s.rows : 0;
  const size_t n = static_cast<size_t>(p.K * p.N * s.chunks);
  s.mean.assign(n, 0.0);
  s.m2.assign(n, 0.0);
  return s;
}

void conv_stats_gather(ConvStatsPlan& s, const float* y, int64_t n, int64_t k0, int64_t k1,
                       int64_t p0, int64_t p1) {
  const BnStatsFn stats = kernels().bn_stats;
  const int64_t PQ = s.P * s.Q;
  for (int64_t k = k0; k < k1; ++k) {
    const float* plane = y + (n * s.K + k) * PQ;
    const int64_t rec = (k * s.N + n) * s.chunks;
    for (int64_t r = p0; r < p1; r += s.rows) {
      const int64_t len = (std::min(p1, r + s.rows) - r) * s.Q;
      const size_t i = static_cast<size_t>(rec + r / s.rows);
      const float* c = plane + r * s.Q;
      if (len <= kBnTileElems) {
        stats(c, 1, len, len, &s.mean[i], &s.m2[i]);
        continue;
      }
      Moments m;  // a row longer than a kernel tile: its pieces merged in order
      for (int64_t o = 0; o < len; o += kBnTileElems) {
        const int64_t l = std::min(kBnTileElems, len - o);
        Moments q{static_cast<double>(l), 0.0, 0.0};
        stats(c + o, 1, l, l, &q.mean, &q.m2);
        m = o == 0 ? q : merge_moments(m, q);
      }
      s.mean[i] = m.mean, s.m2[i] = m.m2;
    }
  }
}

void conv_stats_gather_all(ConvStatsPlan& s, const float* y) {
  const int64_t planes = s.N * s.K;
  parallel_for(planes, [&](int, int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) conv_stats_gather(s, y, i / s.K, i % s.K, i % s.K + 1, 0, s.P);
  }, threads_for(double(planes) * double(s.P * s.Q), 1 << 15));
}

void conv_stats_finish(const ConvStatsPlan& s, const ConvBatchStats& out) {
  const int64_t G = s.N * s.chunks;  // records a channel, in (n, chunk) order
  if (G == 0 || s.Q == 0) {
    std::fill_n(out.mean, s.K, std::numeric_limits<double>::quiet_NaN());
    std::fill_n(out.var, s.K, std::numeric_limits<double>::quiet_NaN());
    return;
  }
  auto count = [&](int64_t g) {
    const int64_t r = (g % s.chunks) * s.rows;
    return static_cast<double>((std::min(s.P, r + s.rows) - r) * s.Q);
  };
  const double M = static_cast<double>(s.N * s.P * s.Q);
  parallel_for(s.K, [&](int, int64_t b, int64_t e) {
    for (int64_t k = b; k < e; ++k) {
      const size_t base = static_cast<size_t>(k * G);
      const Moments m = tree_moments(0, G, [&](int64_t g) {
        return Moments{count(g), s.mean[base + static_cast<size_t>(g)],
                       s.m2[base + static_cast<size_t>(g)]};
      });
      out.mean[k] = m.mean;
      const double v = m.m2 / M;
      out.var[k] = v < 0.0 ? 0.0 : v;  // rounding can leave a tiny negative; NaN stays NaN
    }
  }, threads_for(double(s.K) * double(G), 4096));
}

}  // namespace fastcnn::cpu
