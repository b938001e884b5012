// linear.cu -- the dense (fully connected) layer, forward and backward, on the shared tiled SGEMM
// core (gemm_core.cuh; its split-K reduction is gemm.cu).
//   forward   y (N, out)   = x (N, in) . w^T + b, ReLU fused     M = N,   N = out, K = in
//   data      dx (N, in)   = dy (N, out) . w                     M = N,   N = in,  K = out
//   weights   dw (out, in) = dy^T . x                            M = out, N = in,  K = N
//   bias      db (out,)    = column sums of dy (reduce.cu's two-stage grid reduction)
// Operands are read in place through strides (no transposed copies); each product picks the
// thread-to-element mapping that makes its loads coalesced (k-contiguous or m/n-contiguous),
// with 32-bit offsets whenever the operands have fewer than 2^31 elements (run_linear); operands
// whose rows run along m / n (dx's w, dw's dy and x) are copied 16 bytes at a time when their
// leading dimensions are multiples of 4 and their pointers 16-byte aligned (the forward's x and
// w are both k-contiguous: 4-byte copies); outputs leave as 128-bit stores on aligned rows.
// A reduction long enough and a grid too small to fill a GPU (e.g. 9216 -> 128 at batch 64:
// one 64 x 128 tile, K 9216; or its backward-data, 144 tiles of K 128: gemm_rule.h) is split
// into a fixed number of chunks chosen from the shapes only;
// each chunk goes to its own workspace slice and splitk_reduce sums the slices in order, then
// adds the bias and applies ReLU: deterministic on every GPU, no atomics.
// Napkin: 9216 -> 128 at batch 64 is 2*64*128*9216 = 151 MFLOP; 36 splits of 256 -> 72 blocks
// of 64 x 64, 4.7 MB of w read once (~2 us of HBM) and a 36 x 8192 float reduction.
#include <vector>

#include "cuda/common.cuh"

namespace fastcnn::cuda {
namespace {

using gemm::BK;

// A[m, k] = A[m*sam + k*sak], B[k, n] = B[k*sbk + n*sbn], C (M, N) row-major (+ bias[n], ReLU).
// Row states m*sam / n*sbn, k states k*sak / k*sbk stepped by BK*stride: one add per step.
// V: 16-byte copies of the operands whose rows are contiguous along m / n (!AK: A, !BKc: B;
// the launcher checked sam / sbn == 1, sak / sbk % 4 == 0 and 16-byte aligned pointers).
template <bool AK, bool BKc, typename I, bool V = false>
struct LinearOp {
  using Idx = I;
  static constexpr bool kAContigK = AK;
  static constexpr bool kBContigK = BKc;
  static constexpr bool kAVec = V && !AK, kBVec = V && !BKc;
  static constexpr bool kStore128 = true;
  int64_t G = 1, splits = 1, chunk = BK, M = 0, N = 0, K = 0;
  const float* A = nullptr;
  const float* B = nullptr;
  Idx sam = 0, sak = 0, sbk = 0, sbn = 0;
  float* C = nullptr;
  float* ws = nullptr;
  const float* bias = nullptr;
  int relu = 0;

  FASTCNN_D void bind(int64_t) {}
  using ARow = Idx;
  using KA = Idx;
  using BRow = Idx;
  using KB = Idx;
  FASTCNN_D ARow a_row(Idx m) const { return m * sam; }
  FASTCNN_D KA a_k(Idx k) const { return k * sak; }
  FASTCNN_D void a_step(KA& k) const { k += BK * sak; }
  FASTCNN_D const float* a_ptr(ARow r, KA k) const { return A + (r + k); }
  FASTCNN_D bool a_ok(ARow, KA) const { return true; }
  FASTCNN_D BRow b_row(Idx n) const { return n * sbn; }
  FASTCNN_D KB b_k(Idx k) const { return k * sbk; }
  FASTCNN_D void b_step(KB& k) const { k += BK * sbk; }
  FASTCNN_D const float* b_ptr(BRow r, KB k) const { return B + (r + k); }
  FASTCNN_D bool b_ok(BRow, KB) const { return true; }
  struct ERow {
    float* c;
  };
  FASTCNN_D ERow e_row(int64_t split, int64_t m) const {
    return ERow{(splits > 1 ? ws + split * M * N : C) + m * N};
  }
  FASTCNN_D float e_val(const ERow&, int64_t n, float v) const {
    if (splits > 1) return v;  // a partial sum: splitk_reduce applies the epilogue
    if (bias) v += bias[n];
    if (relu) v = relu_keep_nan(v);
    return v;
  }
};

// Runs the product on the 32-bit main loop when every operand offset (plus one k step past the
// end) fits in 31 bits, else on the 64-bit one. set(op) fills the pointers and strides.
// vec: the m / n-contiguous operands (A when !AK, B when !BKc) have k strides that are multiples
// of 4 floats and 16-byte aligned pointers, so the 32-bit path copies them 16 bytes at a time.
template <bool AK, bool BKc, class Set>
void run_linear(const char* what, int64_t M, int64_t N, int64_t K, gemm::Split sp,
                int64_t a_numel, int64_t b_numel, int64_t a_kstride, int64_t b_kstride,
                bool vec, Set&& set, Stream stream) {
  auto go = [&](auto op) {
    op.M = M, op.N = N, op.K = K, op.splits = sp.splits, op.chunk = sp.chunk;
    set(op);
    gemm::run(what, op, M, N, stream);
  };
  const bool fits = fits31({a_numel + 2 * BK * a_kstride, b_numel + 2 * BK * b_kstride, M * N});
  if constexpr (!AK || !BKc) {
    if (fits && vec) return go(LinearOp<AK, BKc, int32_t, true>{});
  }
  if (fits)
    go(LinearOp<AK, BKc, int32_t>{});
  else
    go(LinearOp<AK, BKc, int64_t>{});
}

// The GEMM of each pass as its launcher runs it (and the tile report prints it: linear_gemms).
gemm::GemmLaunch gemm_of(const char* what, int64_t M, int64_t N, int64_t K) {
  gemm::GemmLaunch g;
  g.what = what;
  g.G = 1, g.M = M, g.N = N, g.K = K;
  g.split = gemm::choose_split(1, M, N, K, true);
  return g;
}
gemm::GemmLaunch fwd_gemm(int64_t N, int64_t in, int64_t out) {
  return gemm_of("linear", N, out, in);
}
gemm::GemmLaunch data_gemm(int64_t N, int64_t in, int64_t out) {
  return gemm_of("linear_backward (dx)", N, in, out);
}
gemm::GemmLaunch wgt_gemm(int64_t N, int64_t in, int64_t out) {
  return gemm_of("linear_backward (dw)", out, in, N);
}
gemm::Split fwd_split(int64_t N, int64_t in, int64_t out) { return fwd_gemm(N, in, out).split; }
gemm::Split data_split(int64_t N, int64_t in, int64_t out) {
  return data_gemm(N, in, out).split;
}
gemm::Split wgt_split(int64_t N, int64_t in, int64_t out) { return wgt_gemm(N, in, out).split; }

}  // namespace

int64_t linear_forward_workspace(int64_t N, int64_t in, int64_t out) {
  const gemm::Split s = fwd_split(N, in, out);
  return s.splits > 1 ? s.splits * N * out : 0;
}

int64_t linear_backward_data_workspace(int64_t N, int64_t in, int64_t out) {
  const gemm::Split s = data_split(N, in, out);
  return s.splits > 1 ? s.splits * N * in : 0;
}

int64_t linear_backward_weights_workspace(int64_t N, int64_t in, int64_t out) {
  const gemm::Split s = wgt_split(N, in, out);
  return s.splits > 1 ? s.splits * out * in : 0;
}

void linear_forward(const float* x, const float* w, const float* b, float* y, float* ws,
                    int64_t N, int64_t in, int64_t out, bool relu, Stream stream) {
  if (N * out == 0) return;
  const gemm::Split sp = fwd_split(N, in, out);
  // A = x (k contiguous), B[k, n] = w[n, k]
  run_linear<true, true>("linear", N, out, in, sp, N * in, out * in, 1, 1, false, [&](auto& op) {
    op.A = x, op.sam = in, op.sak = 1;
    op.B = w, op.sbk = 1, op.sbn = in;
    op.C = y, op.ws = ws, op.bias = b, op.relu = relu ? 1 : 0;
  }, stream);
  if (sp.splits > 1) splitk_reduce(ws, sp.splits, N * out, y, b, 1, out, relu, stream);
}

void linear_backward_data(const float* dy, const float* w, float* dx, float* ws, int64_t N,
                          int64_t in, int64_t out, Stream stream) {
  if (N * in == 0) return;
  const gemm::Split sp = data_split(N, in, out);
  run_linear<true, false>("linear_backward (dx)", N, in, out, sp, N * out, out * in, 1, in,
                          in % 4 == 0 && gemm::aligned16(w), [&](auto& op) {
                            op.A = dy, op.sam = out, op.sak = 1;  // dy (N, out)
                            op.B = w, op.sbk = in, op.sbn = 1;    // w (out, in): B[k, n] = w[k, n]
                            op.C = dx, op.ws = ws;
                          }, stream);  // out = 0 writes zeros
  if (sp.splits > 1) splitk_reduce(ws, sp.splits, N * in, dx, nullptr, 1, 1, false, stream);
}

void linear_backward_weights(const float* dy, const float* x, float* dw, float* ws, int64_t N,
                             int64_t in, int64_t out, Stream stream) {
  if (out * in == 0) return;
  const gemm::Split sp = wgt_split(N, in, out);
  run_linear<false, false>("linear_backward (dw)", out, in, N, sp, N * out, N * in, out, in,
                           out % 4 == 0 && in % 4 == 0 && gemm::aligned16(dy) && gemm::aligned16(x),
                           [&](auto& op) {
                             op.A = dy, op.sam = 1, op.sak = out;  // A[m, k] = dy[k, m]
                             op.B = x, op.sbk = in, op.sbn = 1;    // B[k, n] = x[k, n]
                             op.C = dw, op.ws = ws;
                           }, stream);  // N = 0 writes zeros
  if (sp.splits > 1) splitk_reduce(ws, sp.splits, out * in, dw, nullptr, 1, 1, false, stream);
}

namespace gemm {
std::vector<GemmLaunch> linear_gemms(int64_t N, int64_t in, int64_t out, Pass pass) {
  if (pass == Pass::forward) return {fwd_gemm(N, in, out)};
  if (pass == Pass::data) return {data_gemm(N, in, out)};
  return {wgt_gemm(N, in, out)};
}
}  // namespace gemm

}  // namespace fastcnn::cuda
