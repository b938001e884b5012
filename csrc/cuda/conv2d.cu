// conv2d.cu -- 2-D convolution (cross-correlation), forward and backward, as implicit GEMMs on the
// shared tiled SGEMM core (common.cuh: 64 x 128 block tiles, BK 8, 4 x 8 register tiles).
// Shapes: x (N, C, H, W), w (K, C/groups, R, S), b (K,), y / dy (N, K, P, Q); every option of the
// CPU path: stride, padding (asymmetric, as "same" gives), dilation, groups, bias, fused ReLU.
//
//   forward          per (n, group): y (Kg x PQ) = W_g (Kg x CgRS) . col(x) (CgRS x PQ)
//                    G = N*groups; col() computed on the fly when the B tile is loaded (zero for
//                    padding); bias + ReLU in the epilogue. Split-K (fixed by the shapes) only
//                    when N*groups*tiles is too small to fill a GPU (then a second kernel sums
//                    the splits in order and applies the epilogue).
//   backward-data    gather, no atomics: dx rows h = ph + sh*i of stride phase (ph, pw) receive
//                    exactly the taps r with (ph + pad_top - r*dil_h) divisible by sh, an
//                    arithmetic progression r0 + j*sh/gcd(sh, dil_h) read from dy row
//                    i + oh0 - j*dil_h/gcd(sh, dil_h) (columns likewise). Per (n, group, phase):
//                    dx_phase (Cg x Hph*Wph) = W_g^T over the phase's taps (Cg x Kg*|r|*|s|) .
//                    shifted dy windows; no zero taps are multiplied for stride > 1 and every dx
//                    element is written exactly once (a phase with no taps writes zeros).
//   backward-weights per group: dW_g (Kg x CgRS) = dy_g (Kg x N*P*Q) . col(x)^T (N*P*Q x CgRS),
//                    the reduction over N*P*Q split into a fixed number of chunks chosen from the
//                    shapes only (never from the GPU), each chunk summed in order by one block
//                    into its own workspace slice, then the slices summed in order
//                    (splitk_reduce): deterministic, no float atomics.
// Index maths is int64 throughout; per-element divisions use FastDiv (multiply-high for values
// below 2^31, an exact 64-bit fallback above).
// Napkin (the seeds' conv2: 32->64, 3x3, 26x26 -> 24x24, batch 64): forward 2*64*64*288*576 =
// 1.36 GFLOP as 64 images x 5 tiles = 320 blocks; backward-weights: M 64, N 288, K 36864 ->
// 3 tiles x 64 splits of 576 = 192 blocks + a 1.2 M-element reduction; at ~20-30 TFLOP/s of
// FP32 FMA on an H100 each pass is ~0.1 ms, dominated by the B-tile gathers (L1/L2-resident).
#include "cuda/common.cuh"

namespace fastcnn::cuda {
namespace {

using gemm::BK;

// ---- forward -----------------------------------------------------------------------------------
template <bool kWide>
struct ConvFwdOp {
  static constexpr bool kAContigK = true;   // w[m, k]: k = (c, r, s) contiguous
  static constexpr bool kBContigK = false;  // x gathered along output pixels n
  int64_t G = 0, splits = 1, chunk = BK, M = 0, N = 0, K = 0;
  const float* x = nullptr;
  const float* w = nullptr;
  const float* bias = nullptr;
  float* y = nullptr;
  float* ws = nullptr;
  int64_t C = 0, H = 0, W = 0, Cg = 0, groups = 1, total = 0;
  int64_t sh = 1, sw = 1, pt = 0, pl = 0, dh = 1, dw = 1;
  FastDiv div_groups, div_RS, div_S, div_Q;
  int relu = 0;
  // bound per group
  int64_t g = 0;
  const float* xg = nullptr;
  const float* wg = nullptr;
  const float* bg = nullptr;

  FASTCNN_D void bind(int64_t gg) {
    g = gg;
    int64_t img;
    const int64_t grp = div_groups.divmod_t<kWide>(gg, img);
    xg = x + (img * C + grp * Cg) * H * W;
    wg = w + grp * M * K;
    bg = bias ? bias + grp * M : nullptr;
  }
  FASTCNN_D float a(int64_t m, int64_t k) const { return wg[m * K + k]; }
  FASTCNN_D float b(int64_t k, int64_t n) const {
    int64_t c, r, p;
    const int64_t rs = div_RS.divmod_t<kWide>(k, c);
    const int64_t s = div_S.divmod_t<kWide>(rs, r);
    const int64_t q = div_Q.divmod_t<kWide>(n, p);
    const int64_t h = p * sh - pt + r * dh, ww = q * sw - pl + s * dw;
    if (static_cast<uint64_t>(h) >= static_cast<uint64_t>(H) ||
        static_cast<uint64_t>(ww) >= static_cast<uint64_t>(W))
      return 0.0f;
    return xg[(c * H + h) * W + ww];
  }
  FASTCNN_D void store(int64_t split, int64_t m, int64_t n, float v) const {
    const int64_t off = (g * M + m) * N + n;  // y is (G, Kg, PQ) contiguous
    if (splits > 1) {
      ws[split * total + off] = v;
      return;
    }
    if (bg) v += bg[m];
    if (relu) v = relu_keep_nan(v);
    y[off] = v;
  }
};

gemm::Split fwd_split(const Conv2dParams& p) {
  return gemm::choose_split(p.N * p.groups, p.Kg(), p.P * p.Q, p.CRSg(), true);
}

// ---- backward-data -----------------------------------------------------------------------------
// Taps of one axis for one stride phase: r = r0 + j*rstep (j < n) reads dy row i + o0 - j*ostep.
struct AxisTaps {
  int64_t r0 = 0, n = 0, rstep = 1, o0 = 0, ostep = 0, len = 0;  // len: dx rows of the phase
};

FASTCNN_HD AxisTaps axis_taps(int64_t ph, int64_t pad, int64_t stride, int64_t dil, int64_t R,
                              int64_t in) {
  AxisTaps t;
  t.len = ph < in ? ceil_div(in - ph, stride) : 0;
  const int64_t g = gcd64(stride, dil);
  t.rstep = stride / g;
  t.ostep = dil / g;
  int64_t r = 0;
  const int64_t lim = imin(R, stride);  // r*dil mod stride repeats with period stride/g
  while (r < lim && pos_mod(ph + pad - r * dil, stride) != 0) ++r;
  if (r < lim) {
    t.r0 = r;
    t.n = (R - 1 - r) / t.rstep + 1;
    t.o0 = (ph + pad - r * dil) / stride;  // exact division (may be negative)
  }
  return t;
}

template <bool kWide>
struct ConvBwdDataOp {
  static constexpr bool kAContigK = true;   // w[kk, c, r, s]: k = (kk, jr, js), s fastest
  static constexpr bool kBContigK = false;  // dy gathered along dx pixels n
  int64_t G = 0, splits = 1, chunk = BK, M = 0, N = 0, K = 0;
  const float* dy = nullptr;
  const float* w = nullptr;
  float* dx = nullptr;
  int64_t C = 0, H = 0, W = 0, Kout = 0, Kg = 0, Cg = 0, P = 0, Q = 0, R = 0, S = 0, groups = 1;
  int64_t sh = 1, sw = 1, pt = 0, pl = 0, dh = 1, dw = 1;
  int64_t phases_w = 1, phases = 1;
  FastDiv div_phases, div_phases_w, div_groups;
  // bound per (n, group, phase)
  int64_t ph = 0, pw = 0;
  AxisTaps th, tw;
  FastDiv div_taps, div_ns, div_wph;
  const float* dyg = nullptr;
  const float* wg = nullptr;
  float* dxg = nullptr;

  FASTCNN_D void bind(int64_t g) {
    int64_t ig, img;
    const int64_t phase = div_phases.divmod_t<kWide>(g, ig);
    const int64_t grp = div_groups.divmod_t<kWide>(ig, img);
    pw = div_phases_w.divmod_t<kWide>(phase, ph);
    th = axis_taps(ph, pt, sh, dh, R, H);
    tw = axis_taps(pw, pl, sw, dw, S, W);
    N = th.len * tw.len;
    K = Kg * th.n * tw.n;
    div_taps = FastDiv(th.n * tw.n);
    div_ns = FastDiv(tw.n);
    div_wph = FastDiv(tw.len);
    dyg = dy + (img * Kout + grp * Kg) * P * Q;
    wg = w + grp * Kg * Cg * R * S;
    dxg = dx + (img * C + grp * Cg) * H * W;
  }
  // k = (kk, jr, js)
  FASTCNN_D void tap(int64_t k, int64_t& kk, int64_t& jr, int64_t& js) const {
    const int64_t t = div_taps.divmod_t<kWide>(k, kk);
    js = div_ns.divmod_t<kWide>(t, jr);
  }
  FASTCNN_D float a(int64_t m, int64_t k) const {
    int64_t kk, jr, js;
    tap(k, kk, jr, js);
    const int64_t r = th.r0 + jr * th.rstep, s = tw.r0 + js * tw.rstep;
    return wg[((kk * Cg + m) * R + r) * S + s];
  }
  FASTCNN_D float b(int64_t k, int64_t n) const {
    int64_t kk, jr, js, i;
    tap(k, kk, jr, js);
    const int64_t iw = div_wph.divmod_t<kWide>(n, i);
    const int64_t p = i + th.o0 - jr * th.ostep, q = iw + tw.o0 - js * tw.ostep;
    if (static_cast<uint64_t>(p) >= static_cast<uint64_t>(P) ||
        static_cast<uint64_t>(q) >= static_cast<uint64_t>(Q))
      return 0.0f;
    return dyg[(kk * P + p) * Q + q];
  }
  FASTCNN_D void store(int64_t, int64_t m, int64_t n, float v) const {
    int64_t i;
    const int64_t iw = div_wph.divmod_t<kWide>(n, i);
    dxg[(m * H + ph + sh * i) * W + pw + sw * iw] = v;
  }
};

// ---- backward-weights --------------------------------------------------------------------------
template <bool kWide>
struct ConvBwdWeightsOp {
  static constexpr bool kAContigK = true;  // dy[n, k, pq]: reduction index (n, pq), pq fastest
  static constexpr bool kBContigK = true;  // x gathered along (n, p, q), q fastest
  int64_t G = 0, splits = 1, chunk = BK, M = 0, N = 0, K = 0;
  const float* dy = nullptr;
  const float* x = nullptr;
  float* dw = nullptr;
  float* ws = nullptr;
  int64_t C = 0, H = 0, W = 0, Kout = 0, Cg = 0, PQ = 0, total = 0;
  int64_t sh = 1, sw = 1, pt = 0, pl = 0, dh = 1, dw_ = 1;
  FastDiv div_PQ, div_Q, div_RS, div_S;
  int64_t g = 0;
  const float* dyg = nullptr;
  const float* xg = nullptr;

  FASTCNN_D void bind(int64_t grp) {
    g = grp;
    dyg = dy + grp * M * PQ;
    xg = x + grp * Cg * H * W;
  }
  FASTCNN_D float a(int64_t m, int64_t k) const {
    int64_t img;
    const int64_t pq = div_PQ.divmod_t<kWide>(k, img);
    return dyg[(img * Kout + m) * PQ + pq];
  }
  FASTCNN_D float b(int64_t k, int64_t n) const {
    int64_t img, p, c, r;
    const int64_t pq = div_PQ.divmod_t<kWide>(k, img);
    const int64_t q = div_Q.divmod_t<kWide>(pq, p);
    const int64_t rs = div_RS.divmod_t<kWide>(n, c);
    const int64_t s = div_S.divmod_t<kWide>(rs, r);
    const int64_t h = p * sh - pt + r * dh, ww = q * sw - pl + s * dw_;
    if (static_cast<uint64_t>(h) >= static_cast<uint64_t>(H) ||
        static_cast<uint64_t>(ww) >= static_cast<uint64_t>(W))
      return 0.0f;
    return xg[((img * C + c) * H + h) * W + ww];
  }
  FASTCNN_D void store(int64_t split, int64_t m, int64_t n, float v) const {
    const int64_t off = (g * M + m) * N + n;  // dw is (groups, Kg, CgRS) contiguous
    if (splits > 1)
      ws[split * total + off] = v;
    else
      dw[off] = v;
  }
};

gemm::Split bwd_weights_split(const Conv2dParams& p) {
  return gemm::choose_split(p.groups, p.Kg(), p.CRSg(), p.N * p.P * p.Q, true);
}

}  // namespace

int64_t conv2d_forward_workspace(const Conv2dParams& p) {
  const gemm::Split s = fwd_split(p);
  return s.splits > 1 ? s.splits * p.N * p.K * p.P * p.Q : 0;
}

int64_t conv2d_backward_weights_workspace(const Conv2dParams& p) {
  const gemm::Split s = bwd_weights_split(p);
  return s.splits > 1 ? s.splits * p.K * p.CRSg() : 0;
}

void conv2d_forward(const float* x, const float* w, const float* b, float* y, float* ws,
                    const Conv2dParams& p, bool relu, Stream stream) {
  const int64_t PQ = p.P * p.Q, total = p.N * p.K * PQ;
  if (total == 0) return;
  const gemm::Split sp = fwd_split(p);
  auto go = [&](auto op) {
    op.G = p.N * p.groups, op.splits = sp.splits, op.chunk = sp.chunk;
    op.M = p.Kg(), op.N = PQ, op.K = p.CRSg();
    op.x = x, op.w = w, op.bias = b, op.y = y, op.ws = ws;
    op.C = p.C, op.H = p.H, op.W = p.W, op.Cg = p.Cg(), op.groups = p.groups, op.total = total;
    op.sh = p.stride_h, op.sw = p.stride_w, op.pt = p.pad_top, op.pl = p.pad_left;
    op.dh = p.dil_h, op.dw = p.dil_w;
    op.div_groups = FastDiv(p.groups), op.div_RS = FastDiv(p.R * p.S), op.div_S = FastDiv(p.S);
    op.div_Q = FastDiv(p.Q);
    op.relu = relu ? 1 : 0;
    gemm::run("conv2d", op, op.M, op.N, stream);
  };
  if (fits31({p.N * p.groups, p.CRSg(), PQ}))
    go(ConvFwdOp<false>{});
  else
    go(ConvFwdOp<true>{});
  if (sp.splits > 1) splitk_reduce(ws, sp.splits, total, y, b, PQ, p.K, relu, stream);
}

void conv2d_backward_data(const float* dy, const float* w, float* dx, const Conv2dParams& p,
                          Stream stream) {
  if (p.N * p.C * p.H * p.W == 0) return;
  const int64_t phases_w = imin(p.stride_w, p.W), phases = imin(p.stride_h, p.H) * phases_w;
  // the largest phase (ph = pw = 0) bounds the pixel count of every phase
  const int64_t max_n = ceil_div(p.H, p.stride_h) * ceil_div(p.W, p.stride_w);
  auto go = [&](auto op) {
    op.phases_w = phases_w, op.phases = phases;
    op.G = p.N * p.groups * phases;
    op.M = p.Cg();
    op.dy = dy, op.w = w, op.dx = dx;
    op.C = p.C, op.H = p.H, op.W = p.W, op.Kout = p.K, op.Kg = p.Kg(), op.Cg = p.Cg();
    op.P = p.P, op.Q = p.Q, op.R = p.R, op.S = p.S, op.groups = p.groups;
    op.sh = p.stride_h, op.sw = p.stride_w, op.pt = p.pad_top, op.pl = p.pad_left;
    op.dh = p.dil_h, op.dw = p.dil_w;
    op.div_phases = FastDiv(phases), op.div_phases_w = FastDiv(phases_w);
    op.div_groups = FastDiv(p.groups);
    // no split: one chunk covers the K of any phase (Kg * taps <= Kg * R * S)
    op.splits = 1;
    op.chunk = round_up(imax(p.Kg() * p.R * p.S, 1), BK);
    gemm::run("conv2d_backward (dx)", op, op.M, max_n, stream);
  };
  if (fits31({p.N * p.groups * phases, p.Kg() * p.R * p.S, p.H * p.W}))
    go(ConvBwdDataOp<false>{});
  else
    go(ConvBwdDataOp<true>{});
}

void conv2d_backward_weights(const float* dy, const float* x, float* dw, float* ws,
                             const Conv2dParams& p, Stream stream) {
  const int64_t CRSg = p.CRSg(), total = p.K * CRSg, PQ = p.P * p.Q;
  if (total == 0) return;
  const gemm::Split sp = bwd_weights_split(p);
  auto go = [&](auto op) {
    op.G = p.groups, op.splits = sp.splits, op.chunk = sp.chunk;
    op.M = p.Kg(), op.N = CRSg, op.K = p.N * PQ;
    op.dy = dy, op.x = x, op.dw = dw, op.ws = ws;
    op.C = p.C, op.H = p.H, op.W = p.W, op.Kout = p.K, op.Cg = p.Cg(), op.PQ = PQ;
    op.total = total;
    op.sh = p.stride_h, op.sw = p.stride_w, op.pt = p.pad_top, op.pl = p.pad_left;
    op.dh = p.dil_h, op.dw_ = p.dil_w;
    op.div_PQ = FastDiv(PQ), op.div_Q = FastDiv(p.Q), op.div_RS = FastDiv(p.R * p.S);
    op.div_S = FastDiv(p.S);
    gemm::run("conv2d_backward (dw)", op, op.M, op.N, stream);  // K = 0 (N = 0) writes zeros
  };
  if (fits31({p.N * PQ, CRSg}))
    go(ConvBwdWeightsOp<false>{});
  else
    go(ConvBwdWeightsOp<true>{});
  if (sp.splits > 1) splitk_reduce(ws, sp.splits, total, dw, nullptr, 1, 1, false, stream);
}

}  // namespace fastcnn::cuda
