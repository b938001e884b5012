// softmax.cpp -- softmax / log-softmax over rows and the fused softmax cross-entropy.
// One portable implementation for every ISA: (rows x classes) is tiny next to the layers that
// produce it (10 x 64 for the seeds' CNN), and exp/log dominate. Numerically stable (max
// subtracted); the loss is summed over rows in double, in row order, so it is deterministic.
#include <cmath>
#include <limits>
#include <vector>

#include "cpu/ops.h"
#include "cpu/parallel.h"

namespace fastcnn::cpu {
namespace {

// max of the row (NaN if any NaN), and log(sum(exp(x - max)))
void row_stats(const float* x, int64_t L, float& mx, float& lse_shift) {
  mx = -std::numeric_limits<float>::infinity();
  bool nan = false;
  for (int64_t j = 0; j < L; ++j) {
    if (x[j] != x[j]) nan = true;
    mx = x[j] > mx ? x[j] : mx;
  }
  if (nan) {
    mx = std::numeric_limits<float>::quiet_NaN();
  } else if (std::isinf(mx)) {
    // all -inf (or a +inf): shift by 0 so that exp gives 0/NaN the way PyTorch does
    mx = mx > 0 ? mx : 0.0f;
  }
  float s = 0.0f;
  for (int64_t j = 0; j < L; ++j) s += std::exp(x[j] - mx);
  lse_shift = std::log(s);
}

// f(i, xi, mx, ls) for every row i of x (xi: the row, mx / ls: its row_stats), on the
// library's threads
template <class F>
void for_each_row(const float* x, int64_t rows, int64_t L, const F& f) {
  parallel_for(rows, [&](int, int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      const float* xi = x + i * L;
      float mx, ls;
      row_stats(xi, L, mx, ls);
      f(i, xi, mx, ls);
    }
  }, threads_for(double(rows) * double(L), 1 << 14));
}

}  // namespace

void softmax_forward(const float* x, float* y, int64_t rows, int64_t L, bool log) {
  for_each_row(x, rows, L, [&](int64_t i, const float* xi, float mx, float ls) {
    float* yi = y + i * L;
    if (log) {
      for (int64_t j = 0; j < L; ++j) yi[j] = (xi[j] - mx) - ls;
    } else {
      const float inv = 1.0f / std::exp(ls);
      for (int64_t j = 0; j < L; ++j) yi[j] = std::exp(xi[j] - mx) * inv;
    }
  });
}

void check_class_labels(const int64_t* labels, int64_t n, int64_t classes) {
  for (int64_t i = 0; i < n; ++i) {
    FASTCNN_CHECK(labels[i] >= 0 && labels[i] < classes, "cross_entropy: labels[", i, "] = ",
                  labels[i], " is not a class id in [0, ", classes, ")");
  }
}

double cross_entropy(const float* logits, const int64_t* labels, const float* targets,
                     float* dlogits, int64_t rows, int64_t L) {
  if (rows == 0) return 0.0;
  std::vector<double> row_loss(static_cast<size_t>(rows));
  const float inv_rows = 1.0f / static_cast<float>(rows);
  for_each_row(logits, rows, L, [&](int64_t i, const float* xi, float mx, float ls) {
    float* di = dlogits + i * L;
    const float inv = 1.0f / std::exp(ls);
    if (labels) {
      const int64_t t = labels[i];
      for (int64_t j = 0; j < L; ++j) di[j] = std::exp(xi[j] - mx) * inv * inv_rows;
      di[t] -= inv_rows;
      row_loss[static_cast<size_t>(i)] =
          static_cast<double>(ls) - (static_cast<double>(xi[t]) - mx);
    } else {
      const float* ti = targets + i * L;
      float tsum = 0.0f;
      double loss = 0.0;
      for (int64_t j = 0; j < L; ++j) {
        tsum += ti[j];
        const float logp = (xi[j] - mx) - ls;
        loss -= static_cast<double>(ti[j]) * static_cast<double>(logp);
      }
      for (int64_t j = 0; j < L; ++j)
        di[j] = (std::exp(xi[j] - mx) * inv * tsum - ti[j]) * inv_rows;
      row_loss[static_cast<size_t>(i)] = loss;
    }
  });
  double total = 0.0;
  for (double v : row_loss) total += v;
  return total / static_cast<double>(rows);
}

}  // namespace fastcnn::cpu
