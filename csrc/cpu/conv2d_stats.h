// conv2d_stats.h -- per-channel batch statistics of a convolution's output y (N, K, P, Q),
// gathered by the forward's drivers chunk by chunk while the chunk is still in cache
// (conv2d_stats.cpp; conv2d_forward's `stats` argument, ops.h).
//
// A chunk is `rows` consecutive output rows of one (image n, channel k) plane: rows*Q
// contiguous floats of NCHW, the last chunk of a plane shorter. `rows` comes from the shape
// alone (conv_stats_rows), so the chunks -- and the fixed combine over them -- are the same
// for any thread count, band or form. Each chunk keeps one (count, mean, M2) record (the
// kernel table's bn_stats: its own mean, then the centred sum of squares from L1), stored
// channel-major (record (k, n, chunk)); conv_stats_finish merges a channel's records in a
// fixed pairwise tree in double (Chan, Golub & LeVeque), as batch_norm.cpp does its tiles.
// Why (count, mean, M2) and not (sum, sum of squares): a chunk's values are centred on the
// chunk's own mean before squaring, so |mean| >> std costs no float32 accuracy (E[x^2] - E[x]^2
// cancels catastrophically there), and no pivot has to be known before y exists.
#pragma once
#include <cstdint>
#include <vector>

#include "common/params.h"
#include "cpu/ops.h"  // ConvBatchStats

namespace fastcnn::cpu {

// The chunk records of one forward call.
struct ConvStatsPlan {
  int64_t N = 0, K = 0, P = 0, Q = 0;
  int64_t rows = 1;    // output rows a chunk (conv_stats_rows)
  int64_t chunks = 0;  // chunks a plane, ceil(P / rows)
  std::vector<double> mean, m2;  // (K, N, chunks): a channel's records contiguous
};

// Output rows a chunk for planes P x Q: about kConvStatsChunk floats, whole rows, <= P.
int64_t conv_stats_rows(int64_t P, int64_t Q);
ConvStatsPlan conv_stats_plan(const Conv2dParams& p);
// The records of image n, channels [k0, k1), output rows [p0, p1) of y (N, K, P, Q): p0 a
// multiple of s.rows, p1 a multiple of it or P (the caller's band is made of whole chunks).
void conv_stats_gather(ConvStatsPlan& s, const float* y, int64_t n, int64_t k0, int64_t k1,
                       int64_t p0, int64_t p1);
// Every record, in parallel over the (n, k) planes (the forms that do not gather as they go).
void conv_stats_gather_all(ConvStatsPlan& s, const float* y);
// mean[k] and the biased variance var[k] (>= 0; NaN stays NaN) from the records.
void conv_stats_finish(const ConvStatsPlan& s, const ConvBatchStats& out);

}  // namespace fastcnn::cpu
