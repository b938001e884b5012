// reduce.cpp (generic) -- sum and in-place add of float vectors, portable C++.
//   sum(x, n) -> float: the fixed-order sum of x[0:n]
//   add(acc, x, n):     acc[i] += x[i] for i < n (acc == x allowed)
// The order of sum is the contract shared by all three ISAs, so generic, avx2 and avx512 return
// the same bits for the same x (NaN payloads aside) and nothing but n changes the order:
//   64 lane accumulators, all +0:  lane[i % 64] += x[i]  for i = 0, 1, ..., n-1 in turn
//   then a fixed halving tree:     for s = 32, 16, 8, 4, 2, 1: lane[j] += lane[j + s] (j < s)
//   result lane[0].
// (The SIMD files add +0 to the lanes past the tail; that is exact here: a lane that starts at +0
// can never become -0 under round-to-nearest, and v + (+0) == v for every other v.)
// Approach: plain loops over a 64-float array; without fast-math flags the compiler keeps the order
// and still vectorises the lane loop (16 SSE adds per 64 floats).
// Napkin: 4 bytes read per element and one add; memory bound on big arrays.
#include "cpu/kernels.h"

namespace fastcnn::cpu::generic {

float sum(const float* x, int64_t n) {
  float lane[64];
  for (int j = 0; j < 64; ++j) lane[j] = 0.0f;
  int64_t i = 0;
  for (; i + 64 <= n; i += 64)
    for (int j = 0; j < 64; ++j) lane[j] += x[i + j];
  for (int j = 0; i + j < n; ++j) lane[j] += x[i + j];
  for (int s = 32; s >= 1; s /= 2)
    for (int j = 0; j < s; ++j) lane[j] += lane[j + s];
  return lane[0];
}

void add(float* acc, const float* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) acc[i] += x[i];
}

}  // namespace fastcnn::cpu::generic
