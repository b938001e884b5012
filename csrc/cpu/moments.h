// moments.h -- a sample's (count, mean, M2) record, two records merged (Chan, Golub & LeVeque:
// exact in the mean's shift, no cancellation when |mean| >> std), and the records of a range
// combined in a fixed pairwise tree (the same order, so the same bits, whatever the thread
// count). batch_norm.cpp's statistics and conv2d_stats.cpp's (a convolution's output's) share
// them. float64 throughout: a record per chunk of ~1K floats, a few thousand per channel.
#pragma once

#include <cstdint>

namespace fastcnn::cpu {

struct Moments {
  double n = 0, mean = 0, m2 = 0;
};

inline Moments merge_moments(const Moments& a, const Moments& b) {
  const double n = a.n + b.n;
  const double delta = b.mean - a.mean;
  return {n, a.mean + delta * (b.n / n), a.m2 + b.m2 + delta * delta * (a.n * (b.n / n))};
}

// leaf(i) -> Moments for i in [lo, hi), hi > lo: halves split at lo + (hi - lo) / 2
template <typename Leaf>
Moments tree_moments(int64_t lo, int64_t hi, const Leaf& leaf) {
  if (hi - lo == 1) return leaf(lo);
  const int64_t mid = lo + (hi - lo) / 2;
  return merge_moments(tree_moments(lo, mid, leaf), tree_moments(mid, hi, leaf));
}

}  // namespace fastcnn::cpu
