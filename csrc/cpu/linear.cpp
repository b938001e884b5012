// linear.cpp -- dense layer forward/backward on the packed GEMM driver.
//   forward   y (N, out)   = x (N, in) . w^T          M = N,   N = out, K = in
//   data      dx (N, in)   = dy (N, out) . w          M = N,   N = in,  K = out
//   weights   dw (out, in) = dy^T . x                 M = out, N = in,  K = N (fixed order)
//   bias      db (out,)    = column sums of dy, rows added in order
// Napkin maths: 9216 -> 128 at batch 64 is 2*64*128*9216 = 151 MFLOP per pass, 4.7 MB of w.
#include <algorithm>

#include "cpu/gemm.h"
#include "cpu/kernels.h"
#include "cpu/ops.h"
#include "cpu/parallel.h"

namespace fastcnn::cpu {

namespace {

// One strided matrix as a GEMM operand: element (i, j) at base[i*rs + j*cs].
struct Strided {
  const float* base;
  int64_t rs, cs;
};

// c (M x N, row-major) = a (M x K) . b (K x N), then + bias[j] and ReLU when given.
void strided_gemm(Strided a, Strided b, float* c, int64_t M, int64_t N, int64_t K, bool split_k,
                  const float* bias = nullptr, int relu = 0) {
  GemmProblem prob;
  prob.M = M, prob.N = N, prob.K = K, prob.split_k = split_k;
  prob.pack_a = [&](int64_t, int64_t i0, int64_t mc, int64_t k0, int64_t kc, float* dst, int mr) {
    pack_a_strided(a.base, a.rs, a.cs, i0, mc, k0, kc, dst, mr);
  };
  prob.pack_b = [&](int64_t, int64_t k0, int64_t kc, int64_t j0, int64_t nc, float* dst, int nr,
                    float*) { pack_b_strided(b.base, b.rs, b.cs, k0, kc, j0, nc, dst, nr); };
  const StoreTileFn store = kernels().store_tile;
  prob.store = [&](int64_t, int64_t i0, int64_t mc, int64_t j0, int64_t nc, const float* src,
                   int64_t lds) {
    store(c + i0 * N + j0, N, src, lds, mc, nc, nullptr, bias ? bias + j0 : nullptr, relu, 0);
  };
  gemm(prob);
}

}  // namespace

void linear_forward(const float* x, const float* w, const float* b, float* y, const LinearParams& p,
                    int relu) {
  // A long reduction into a small output (9216 -> 128 at batch 64): split K in shape-fixed chunks
  // rather than the output, so threads don't each pack the whole of x or w again.
  const bool split_k = p.in >= 1024 && p.N * p.out <= 65536;
  strided_gemm({x, p.in, 1}, {w, 1, p.in}, y, p.N, p.out, p.in, split_k, b, relu);
}

void linear_backward_data(const float* dy, const float* w, float* dx, const LinearParams& p) {
  strided_gemm({dy, p.out, 1}, {w, p.in, 1}, dx, p.N, p.in, p.out, false);
}

void linear_backward_weights(const float* dy, const float* x, float* dw, const LinearParams& p) {
  strided_gemm({dy, 1, p.out}, {x, p.in, 1}, dw, p.out, p.in, p.N, true);
}

void linear_backward_bias(const float* dy, float* db, const LinearParams& p) {
  constexpr int64_t kCols = 256;
  const AddFn add = kernels().add;
  parallel_for((p.out + kCols - 1) / kCols, [&](int, int64_t b, int64_t e) {
    for (int64_t blk = b; blk < e; ++blk) {
      const int64_t c0 = blk * kCols, len = std::min(kCols, p.out - c0);
      std::fill(db + c0, db + c0 + len, 0.0f);
      for (int64_t i = 0; i < p.N; ++i) add(db + c0, dy + i * p.out + c0, len);
    }
  }, threads_for(double(p.N) * double(p.out), 1 << 15));
}

}  // namespace fastcnn::cpu
