// batch_norm.cpp (generic) -- batch normalisation's tile kernels, portable C++ (kernels.h, the
// Bn*Fn entries; csrc/cpu/batch_norm.cpp cuts x into the tiles and combines their results).
//   A tile: rows r < rows, each of `cols` contiguous floats at x + r*ld (<= kBnTileElems floats,
//   so the second pass of bn_stats reads it from L1/L2, not from memory).
//   bn_stats       one group per tile: mean and centred sum of squares (two passes in the tile)
//   bn_col_stats   the same per column j < cols <= kBnColTile (each column its own group)
//   bn_bwd_sums    sum dy, sum dy * (x - m) of a tile (bn_bwd_col_sums: per column)
//   bn_apply       y  = (x - m) * a + b                (bn_apply_cols: m, a, b per column)
//   bn_bwd_apply   dx = (dy - p) * s - (x - m) * q     (bn_bwd_apply_cols: per column)
// Approach: the portable twin of the SIMD files; sums are accumulated in double here (the SIMD
// files use float lanes within a tile and double across), which is exact enough that the
// three ISAs agree to a few float ulps; each ISA is deterministic on its own.
// Napkin: memory bound (~1 flop per byte at most); a tile of 4096 floats is 16 KiB.
#include "cpu/kernels.h"

namespace fastcnn::cpu::generic {

void bn_stats(const float* x, int64_t rows, int64_t cols, int64_t ld, double* mean, double* m2) {
  const double n = static_cast<double>(rows * cols);
  double s = 0.0;
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < cols; ++j) s += x[r * ld + j];
  const float m0 = static_cast<float>(s / n);
  double sd = 0.0, sq = 0.0;
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < cols; ++j) {
      const double d = static_cast<double>(x[r * ld + j] - m0);
      sd += d;
      sq += d * d;
    }
  *mean = m0 + sd / n;
  *m2 = sq - sd * sd / n;
}

void bn_col_stats(const float* x, int64_t rows, int64_t cols, int64_t ld, double* mean,
                  double* m2) {
  double s[kBnColTile], sd[kBnColTile], sq[kBnColTile];
  float m0[kBnColTile];
  for (int64_t j = 0; j < cols; ++j) s[j] = sd[j] = sq[j] = 0.0;
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < cols; ++j) s[j] += x[r * ld + j];
  const double n = static_cast<double>(rows);
  for (int64_t j = 0; j < cols; ++j) m0[j] = static_cast<float>(s[j] / n);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < cols; ++j) {
      const double d = static_cast<double>(x[r * ld + j] - m0[j]);
      sd[j] += d;
      sq[j] += d * d;
    }
  for (int64_t j = 0; j < cols; ++j) {
    mean[j] = m0[j] + sd[j] / n;
    m2[j] = sq[j] - sd[j] * sd[j] / n;
  }
}

void bn_bwd_sums(const float* dy, const float* x, int64_t rows, int64_t cols, int64_t ld, float m,
                 double* sdy, double* sdxm) {
  double a = 0.0, b = 0.0;
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < cols; ++j) {
      const float g = dy[r * ld + j];
      a += g;
      b += static_cast<double>(g * (x[r * ld + j] - m));
    }
  *sdy = a;
  *sdxm = b;
}

void bn_bwd_col_sums(const float* dy, const float* x, int64_t rows, int64_t cols, int64_t ld,
                     const float* m, double* sdy, double* sdxm) {
  for (int64_t j = 0; j < cols; ++j) sdy[j] = sdxm[j] = 0.0;
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < cols; ++j) {
      const float g = dy[r * ld + j];
      sdy[j] += g;
      sdxm[j] += static_cast<double>(g * (x[r * ld + j] - m[j]));
    }
}

void bn_apply(const float* x, float* y, int64_t rows, int64_t cols, int64_t ld, float m, float a,
              float b) {
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < cols; ++j) y[r * ld + j] = (x[r * ld + j] - m) * a + b;
}

void bn_apply_cols(const float* x, float* y, int64_t rows, int64_t cols, int64_t ld,
                   const float* m, const float* a, const float* b) {
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < cols; ++j) y[r * ld + j] = (x[r * ld + j] - m[j]) * a[j] + b[j];
}

void bn_bwd_apply(const float* dy, const float* x, float* dx, int64_t rows, int64_t cols,
                  int64_t ld, float m, float p, float s, float q) {
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < cols; ++j) {
      const int64_t i = r * ld + j;
      dx[i] = (dy[i] - p) * s - (x[i] - m) * q;
    }
}

void bn_bwd_apply_cols(const float* dy, const float* x, float* dx, int64_t rows, int64_t cols,
                       int64_t ld, const float* m, const float* p, const float* s,
                       const float* q) {
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < cols; ++j) {
      const int64_t i = r * ld + j;
      dx[i] = (dy[i] - p[j]) * s[j] - (x[i] - m[j]) * q[j];
    }
}

}  // namespace fastcnn::cpu::generic
