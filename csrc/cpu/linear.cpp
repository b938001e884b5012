// linear.cpp -- dense layer forward/backward on the packed GEMM driver.
//   forward   y (N, out)   = x (N, in) . w^T          M = N,   N = out, K = in
//        or   y^T (out, N) = w (out, in) . x^T        M = out, N = N,   K = in   (when out > N)
//   data      dx (N, in)   = dy (N, out) . w          M = N,   N = in,  K = out
//   weights   dw (out, in) = dy^T . x                 M = out, N = in,  K = N (fixed order)
//   bias      db (out,)    = column sums of dy, rows added in order
// Every GEMM reads its A operand in place (GemmProblem::a_base): x and dy rows, w rows, dy's
// columns; only B is packed. The forward picks the orientation whose A is the larger of x and
// w, so only the smaller one is ever packed (a transpose): at 9216 -> 128, batch 64, that is
// x's 2.4 MB instead of w's 4.7 MB (plus x's 2.4 MB, as before this rule), unless that leaves
// the micro-kernel a thin last column panel the other orientation avoids (see linear_forward).
// Napkin maths: 9216 -> 128 at batch 64 is 2*64*128*9216 = 151 MFLOP per pass, 4.7 MB of w:
// about 2 ms at the 78 GFLOP/s of one AVX2 core, against ~0.5 ms to read w from DRAM once.
#include <algorithm>
#include <cstdlib>
#include <cstring>

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

// c = a (M x K) . b (K x N), A read in place, B packed (shared by the row blocks when
// b_shared); c row-major (M x N) then + bias[j] and ReLU when given, or, when transposed_c,
// c holds the transpose (N x M, row-major) and the bias is per row i of the product.
void strided_gemm(Strided a, Strided b, float* c, int64_t M, int64_t N, int64_t K, bool split_k,
                  bool b_shared, const float* bias = nullptr, int relu = 0,
                  bool transposed_c = false) {
  GemmProblem prob;
  prob.M = M, prob.N = N, prob.K = K, prob.split_k = split_k, prob.b_shared = b_shared;
  prob.a_base = a.base, prob.a_rs = a.rs, prob.a_cs = a.cs;
  prob.pack_a = [&](int64_t, int64_t i0, int64_t mc, int64_t k0, int64_t kc, float* dst, int mr) {
    pack_a_strided(a.base, a.rs, a.cs, i0, mc, k0, kc, dst, mr);
  };
  prob.pack_b = [&](int64_t, int64_t k0, int64_t kc, int64_t j0, int64_t nc, float* dst, int nr,
                    float*) { pack_b_strided(b.base, b.rs, b.cs, k0, kc, j0, nc, dst, nr); };
  const KernelTable& kt = kernels();
  if (transposed_c) {
    prob.store = [&](int64_t, int64_t i0, int64_t mc, int64_t j0, int64_t nc, const float* src,
                     int64_t lds) {
      float* dst = c + j0 * M + i0;  // c^T block: nc rows (j) of mc values (i)
      kt.transpose(src, lds, mc, nc, dst, M);
      kt.store_tile(dst, M, dst, M, nc, mc, nullptr, bias ? bias + i0 : nullptr, relu, 0);
    };
  } else {
    prob.store = [&](int64_t, int64_t i0, int64_t mc, int64_t j0, int64_t nc, const float* src,
                     int64_t lds) {
      kt.store_tile(c + i0 * N + j0, N, src, lds, mc, nc, nullptr, bias ? bias + j0 : nullptr,
                    relu, 0);
    };
  }
  gemm(prob);
}

}  // namespace

void linear_forward(const float* x, const float* w, const float* b, float* y, const LinearParams& p,
                    int relu) {
  // A long reduction into a small output (9216 -> 128 at batch 64 and 256): split K in
  // shape-fixed chunks rather than the output, so threads don't each read all of the packed
  // operand again. Larger outputs (4096 -> 1000 at batch 64) split the output: no partial sums
  // to write and add (measured 10 % faster on 1 thread, 25 % on 2).
  const bool split_k = p.in >= 1024 && p.N * p.out <= 32768;
  // w is the larger operand: y^T = w . x^T, w read in place, x packed. Except when that leaves
  // the micro-kernel a thin last column panel (<= nr/3 columns: AVX2's 4 x 8 edge kernel has 4
  // accumulators, FMA-latency-bound at half speed) and the other orientation does not: 9216 ->
  // 128 at batch 256 is 5 panels + 8 columns as x . w^T, 10 + 16 as w . x^T (measured 3-5 %
  // faster at 1 thread on the AVX2 machine, though x, the larger operand, is then packed).
  // Either orientation sums every output in the same order, so the choice never changes bits.
  // (Where both last panels are thin, or in dx / dw, the driver's tall edge kernel runs them at
  // full FMA speed, unless the in-place rows alias in L1: gemm.cpp. With in = 9216 they do, so
  // the rule above still decides.) FASTCNN_LINEAR_ORIENT=x|w (private, read on every call: the
  // A/B benchmarks and tests) forces y = x w^T or y^T = w x^T.
  const int nr = kernels().nr;
  const auto thin = [nr](int64_t n) { return nr > 8 && n % nr != 0 && 3 * (n % nr) <= nr; };
  bool transposed = p.out > p.N;
  if (thin(transposed ? p.N : p.out) && !thin(transposed ? p.out : p.N)) transposed = !transposed;
  if (const char* o = std::getenv("FASTCNN_LINEAR_ORIENT")) {  // private: A/B benchmarks, tests
    if (std::strcmp(o, "x") == 0) transposed = false;
    if (std::strcmp(o, "w") == 0) transposed = true;
  }
  if (transposed)
    strided_gemm({w, p.in, 1}, {x, 1, p.in}, y, p.out, p.N, p.in, split_k, true, b, relu, true);
  else
    strided_gemm({x, p.in, 1}, {w, 1, p.in}, y, p.N, p.out, p.in, split_k, true, b, relu);
}

void linear_backward_data(const float* dy, const float* w, float* dx, const LinearParams& p) {
  strided_gemm({dy, p.out, 1}, {w, p.in, 1}, dx, p.N, p.in, p.out, false, false);
}

void linear_backward_weights(const float* dy, const float* x, float* dw, const LinearParams& p) {
  strided_gemm({dy, 1, p.out}, {x, p.in, 1}, dw, p.out, p.in, p.N, true, true);
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
