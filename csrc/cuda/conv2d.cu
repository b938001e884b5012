// conv2d.cu -- 2-D convolution (cross-correlation), forward and backward, as implicit GEMMs on the
// shared tiled SGEMM core (gemm_core.cuh: 64 x 128, 64 x 64 or 32 x 128 block tiles picked by
// gemm::choose_tile, BK 8; the tile never changes the bits).
// Shapes: x (N, C, H, W), w (K, C/groups, R, S), b (K,), y / dy (N, K, P, Q); every option of the
// CPU path: stride, padding (asymmetric, as "same" gives), dilation, groups, bias, fused ReLU.
//
//   forward          per (n, group): y (Kg x PQ) = W_g (Kg x CgRS) . col(x) (CgRS x PQ)
//                    G = N*groups; col() computed on the fly when the B tile is loaded (zero for
//                    padding); bias + ReLU in the epilogue. Split-K (fixed by the shapes) only
//                    when N*groups*tiles is too small to fill a GPU (then a second kernel sums
//                    the splits in order and applies the epilogue).
//   backward-data    col2im, as the CPU, PyTorch and fastcnn.reference: per chunk of images,
//                    (1) dcol[n, g] (CgRS x PQ) = W_g^T (CgRS x Kg) . dy[n, g] (Kg x PQ),
//                        G = images*groups, A = w read transposed, B = dy as it is, into the
//                        workspace (images, C*R*S, P*Q); no padding enters this GEMM;
//                    (2) col2im as a gather: one thread per dx element sums, in fixed (r, s)
//                        order, dcol[(c, r, s), (p, q)] over the taps whose output position
//                        p = (h + pad_top - r*dil_h) / stride_h (q likewise) is exact and inside
//                        the output. Every dx element written once, no atomics, and only real
//                        taps are added, so a NaN / inf weight reaches exactly the dx elements
//                        it multiplies (a gather GEMM over zero-padded dy would multiply it by
//                        those zeros: 0 * inf = NaN all over dx).
//                    Chunks: as many images as keep the column buffer under 2^23 floats
//                    (32 MiB; at least one image), split evenly; a function of the shapes only.
//                    The workspace can be the backward-weights one (same stream, in order).
//   backward-weights per group: dW_g (Kg x CgRS) = dy_g (Kg x N*P*Q) . col(x)^T (N*P*Q x CgRS),
//                    the reduction over N*P*Q split into a fixed number of chunks chosen from the
//                    shapes only (never from the GPU), each chunk summed in order by one block
//                    into its own workspace slice, then the slices summed in order
//                    (splitk_reduce, gemm.cu): deterministic, no float atomics.
//   backward-bias    db[k] = sum over n, p, q of dy[n, k, p, q]: reduce.cu's two-stage grid
//                    reduction (fixed chunks, fixed trees, partials summed in order).
// Memory widths: 128-bit epilogue stores on aligned output rows (P*Q or C*R*S/groups a multiple of
// 4: every row; else the rows that happen to be aligned), scalar elsewhere and on the 64-bit
// path; 16-byte cp.async for dcol's operands when C*R*S/groups and P*Q are multiples of 4 and w,
// dy are aligned, and for the forward's x in a 1 x 1, stride-1, unpadded convolution with
// H*W % 4 == 0 (every other im2col operand is gathered element by element, 4 bytes).
// Index maths: each GEMM op computes a thread's operand coordinates once per tile (FastDiv) and
// steps them by BK between k steps with compare-and-select carries, so the k loop has no
// division; its offsets are int32 when conv_fits31 holds (every offset below 2^31: the usual
// case) and int64 otherwise. col2im: FastDiv, 32-bit where it fits.
// Napkin (the seeds' conv2: 32->64, 3x3, 26x26 -> 24x24, batch 64): forward 2*64*64*288*576 =
// 1.36 GFLOP as 64 images x 5 tiles = 320 blocks; backward-weights: M 64, N 288, K 36864 ->
// 64 splits of 576 x 5 tiles of 64 x 64 = 320 blocks (gemm_rule.h) + a 1.2 M-element
// reduction; at ~20-30 TFLOP/s of FP32 FMA on an H100 each pass is ~0.1 ms, dominated by the
// B-tile gathers (L1/L2-resident).
// Backward-data: dcol is 288 x 576 = 166 k floats (648 KiB) per image -> 2 chunks of 32 images
// (21 MiB of workspace, L2-sized on an H100); the GEMM is the same 1.36 GFLOP (25 tiles per
// image, 800 blocks per chunk, but only Kg/BK = 8 k-steps per tile, so tile set-up and the
// epilogue weigh more than in the forward); col2im reads 9 taps for each of the 1.38 M dx
// elements (coalesced along w): dcol written once and read once, ~2 x 42 MB, ~30 us at HBM
// speed, less from L2 -- the price of never multiplying a weight by a padding zero.
#include <type_traits>
#include <vector>

#include "cuda/common.cuh"

namespace fastcnn::cuda {
namespace {

using gemm::BK;

// Step constants of a k state over (c, r, s) or (img, p, q) advanced by BK: BK = hi*L1*L0 +
// mid*L0 + lo with lo < L0, mid < L1 (so each carry is one compare and one select).
struct Step3 {
  int64_t lo = 0, mid = 0, hi = 0;
};
inline Step3 step3(int64_t L1, int64_t L0) {
  Step3 s;
  s.lo = BK % L0;
  s.mid = (BK / L0) % L1;
  s.hi = BK / (L0 * L1);
  return s;
}

// ---- forward -----------------------------------------------------------------------------------
// A = w (Kg x CgRS, k contiguous), B = col(x) (CgRS x PQ) gathered on the fly:
//   B row state (pixel n = (p, q)): h0 = p*sh - pt, w0 = q*sw - pl, pix = h0*W + w0;
//   B k state (k = (c, r, s)):      rh = r*dh, sw = s*dw, off = c*H*W + rh*W + sw, stepped by BK
//                                    with two carries (no division in the k loop);
//   element: (h0 + rh, w0 + sw) inside H x W ? x[pix + off] : 0 (pix includes the group's
//   plane offset, so a load is the base pointer plus one Idx offset).
// V: 16-byte copies of B, for a 1 x 1 convolution with stride 1 and no padding (B[k, n] =
// x[c, n]: output pixels are input pixels, contiguous along n) where the launcher checked
// H*W % 4 == 0 and a 16-byte aligned x.
template <typename I, bool V = false>
struct ConvFwdOp {
  using Idx = I;
  static constexpr bool kAContigK = true;   // w[m, k]: k = (c, r, s) contiguous
  static constexpr bool kBContigK = false;  // x gathered along output pixels n
  static constexpr bool kAVec = false, kBVec = V;
  // 128-bit epilogue stores on the 32-bit path (the 64-bit one, at its register cap, spills
  // more with them)
  static constexpr bool kStore128 = sizeof(I) == 4;
  int64_t G = 0, splits = 1, chunk = BK, M = 0, N = 0, K = 0;
  const float* x = nullptr;
  const float* w = nullptr;
  const float* bias = nullptr;
  float* y = nullptr;
  float* ws = nullptr;
  int64_t C = 0, Cg = 0, groups = 1, total = 0;
  Idx H = 0, W = 0, sh = 1, sw = 1, pt = 0, pl = 0, dh = 1, dw = 1;
  Idx Rdh = 0, Sdw = 0, HW = 0, RS = 1, S = 1, Q = 1;
  Idx st_lo = 0, st_mid = 0, st_hi = 0;  // Step3 of (c, r, s), pre-multiplied: s*dw, r*dh, c*HW
  FastDiv div_groups, div_RS, div_S, div_Q;
  int relu = 0;
  // bound per group: offsets of the group's x planes and weights (folded into the row states,
  // so every load is one base pointer plus one Idx offset)
  int64_t g = 0;
  Idx xo = 0, wo = 0;
  const float* bg = nullptr;

  FASTCNN_D void bind(int64_t gg) {
    g = gg;
    int64_t img;
    const int64_t grp = div_groups.divmod(gg, img);
    xo = static_cast<Idx>((img * C + grp * Cg) * H * W);
    wo = static_cast<Idx>(grp * M * K);
    bg = bias ? bias + grp * M : nullptr;
  }
  using ARow = Idx;
  using KA = Idx;
  FASTCNN_D ARow a_row(Idx m) const { return wo + m * static_cast<Idx>(K); }
  FASTCNN_D KA a_k(Idx k) const { return k; }
  FASTCNN_D void a_step(KA& k) const { k += BK; }
  FASTCNN_D const float* a_ptr(ARow r, KA k) const { return w + (r + k); }
  FASTCNN_D bool a_ok(ARow, KA) const { return true; }

  struct BRow {
    Idx h0, w0, pix;
  };
  struct KB {
    Idx rh, sw, coff, off;  // off = coff + rh*W + sw
  };
  FASTCNN_D BRow b_row(Idx n) const {
    int64_t p;
    const Idx q = static_cast<Idx>(div_Q.divmod(n, p));
    BRow r;
    r.h0 = static_cast<Idx>(p) * sh - pt;
    r.w0 = q * sw - pl;
    r.pix = xo + r.h0 * W + r.w0;
    return r;
  }
  FASTCNN_D KB b_k(Idx k) const {
    int64_t c, r;
    const int64_t rs = div_RS.divmod(k, c);
    const Idx s = static_cast<Idx>(div_S.divmod(rs, r));
    KB t;
    t.rh = static_cast<Idx>(r) * dh;
    t.sw = s * dw;
    t.coff = static_cast<Idx>(c) * HW;
    t.off = t.coff + t.rh * W + t.sw;
    return t;
  }
  FASTCNN_D void b_step(KB& t) const {
    t.sw += st_lo;
    const bool cs = t.sw >= Sdw;
    t.sw -= cs ? Sdw : Idx{0};
    t.rh += st_mid + (cs ? dh : Idx{0});
    const bool cr = t.rh >= Rdh;
    t.rh -= cr ? Rdh : Idx{0};
    t.coff += st_hi + (cr ? HW : Idx{0});
    t.off = t.coff + t.rh * W + t.sw;
  }
  FASTCNN_D const float* b_ptr(const BRow& r, const KB& t) const { return x + (r.pix + t.off); }
  FASTCNN_D bool b_ok(const BRow& r, const KB& t) const {
    using U = std::make_unsigned_t<Idx>;
    return static_cast<U>(r.h0 + t.rh) < static_cast<U>(H) &&
           static_cast<U>(r.w0 + t.sw) < static_cast<U>(W);
  }
  // y is (G, Kg, PQ) contiguous; split partials go to ws (splits, G, Kg, PQ) and splitk_reduce
  // applies bias and ReLU
  struct ERow {
    float* c;
    float b;
  };
  FASTCNN_D ERow e_row(int64_t split, int64_t m) const {
    const int64_t off = (g * M + m) * N;
    if (splits > 1) return ERow{ws + split * total + off, 0.0f};
    return ERow{y + off, bg ? bg[m] : 0.0f};
  }
  FASTCNN_D float e_val(const ERow& r, int64_t, float v) const {
    if (splits > 1) return v;
    if (bg) v += r.b;
    if (relu) v = relu_keep_nan(v);
    return v;
  }
};

// The GEMM of each pass as its launcher runs it (and the tile report prints it: conv2d_gemms).
gemm::GemmLaunch fwd_gemm(const Conv2dParams& p) {
  gemm::GemmLaunch g;
  g.what = "conv2d";
  g.G = p.N * p.groups, g.M = p.Kg(), g.N = p.P * p.Q, g.K = p.CRSg();
  g.split = gemm::choose_split(g.G, g.M, g.N, g.K, true);
  return g;
}
gemm::Split fwd_split(const Conv2dParams& p) { return fwd_gemm(p).split; }

// Geometry shared by the forward and backward-weights ops.
template <class Op>
void set_geometry(Op& op, const Conv2dParams& p) {
  using Idx = typename Op::Idx;
  op.H = static_cast<Idx>(p.H), op.W = static_cast<Idx>(p.W);
  op.sh = static_cast<Idx>(p.stride_h), op.sw = static_cast<Idx>(p.stride_w);
  op.pt = static_cast<Idx>(p.pad_top), op.pl = static_cast<Idx>(p.pad_left);
  op.dh = static_cast<Idx>(p.dil_h), op.dw = static_cast<Idx>(p.dil_w);
  op.Rdh = static_cast<Idx>(p.R * p.dil_h), op.Sdw = static_cast<Idx>(p.S * p.dil_w);
  op.HW = static_cast<Idx>(p.H * p.W);
}

// The 32-bit main loop is exact when every offset it forms stays below 2^31: offsets within one
// group's x / w / dy planes plus the padding reach (h0 may be -pad, rh up to R*dh, ...).
bool conv_fits31(const Conv2dParams& p) {
  const int64_t reach = (p.H + p.pad_top + p.pad_bottom + p.R * p.dil_h + p.stride_h) *
                        (p.W + p.pad_left + p.pad_right + p.S * p.dil_w + p.stride_w);
  // (+ BK images: the k states step once past the end of the reduction without loading)
  return fits31({(p.N + BK) * p.C * p.H * p.W, (p.N + BK) * p.K * p.P * p.Q, p.K * p.CRSg(),
                 p.N * p.P * p.Q + 2 * BK, p.C * reach + (p.N + BK) * p.C * p.H * p.W,
                 p.CRSg() + 2 * BK});
}

// ---- backward-data: dcol = W^T . dy (GEMM), then col2im (gather) ------------------------------
// Images per chunk: the column buffer (imgs x C*R*S x P*Q floats) stays below kColBudget floats
// whatever the batch (at least one image per chunk); the chunks are as even as possible. A
// function of the shapes only (the result does not depend on it anyway: every dcol element is
// the same whatever the chunk, and col2im's order is fixed).
// kColBudget (launch.h): tests can lower it with -D (EXTRA_CXXFLAGS=-DFASTCNN_CUDA_COL_BUDGET=2000
// tools/cuda_emu/run.sh) so that small batches run several chunks.

int64_t col_per_image(const Conv2dParams& p) {
  return checked_numel({p.C, p.R, p.S, p.P, p.Q}, "conv2d_backward column buffer of one image");
}

int64_t col_chunk_images(const Conv2dParams& p) {
  if (p.N == 0) return 0;
  const int64_t most = imax(1, imin(kColBudget / col_per_image(p), p.N));
  return ceil_div(p.N, ceil_div(p.N, most));
}

// dcol[n, g] (CgRS x PQ) = W_g^T (CgRS x Kg) . dy[n, g] (Kg x PQ), G = images*groups of a chunk.
// Row m = (c, r, s) of the group; dcol is (images, C*R*S, P*Q) contiguous, so group g's block
// starts at g*CgRS*PQ, as dy's (images, K, P*Q) block does at g*Kg*PQ.
// V: 16-byte copies of both operands (the launcher checked CgRS % 4 == 0, P*Q % 4 == 0 and
// 16-byte aligned w and dy).
template <typename I, bool V = false>
struct ConvDcolOp {
  using Idx = I;
  static constexpr bool kAContigK = false;  // W^T[m, k] = w[k, m]: m = (c, r, s) contiguous
  static constexpr bool kBContigK = false;  // dy[k, n]: pixels n contiguous
  static constexpr bool kAVec = V, kBVec = V;
  static constexpr bool kStore128 = true;
  int64_t G = 0, splits = 1, chunk = BK, M = 0, N = 0, K = 0;
  const float* dy = nullptr;  // the chunk's first image
  const float* w = nullptr;
  float* col = nullptr;
  FastDiv div_groups;
  // bound per (image, group): offsets of its dy block and its group's weights
  Idx dyo = 0, wo = 0;
  float* colg = nullptr;

  FASTCNN_D void bind(int64_t g) {
    int64_t img;
    const int64_t grp = div_groups.divmod(g, img);
    dyo = static_cast<Idx>(g * K * N);
    wo = static_cast<Idx>(grp * K * M);
    colg = col + g * M * N;
  }
  // A[m, k] = w[wo + k*M + m], B[k, n] = dy[dyo + k*N + n]: row offsets wo + m / dyo + n,
  // k states k*M / k*N
  using ARow = Idx;
  using KA = Idx;
  using BRow = Idx;
  using KB = Idx;
  FASTCNN_D ARow a_row(Idx m) const { return wo + m; }
  FASTCNN_D KA a_k(Idx k) const { return k * static_cast<Idx>(M); }
  FASTCNN_D void a_step(KA& k) const { k += BK * static_cast<Idx>(M); }
  FASTCNN_D const float* a_ptr(ARow r, KA k) const { return w + (r + k); }
  FASTCNN_D bool a_ok(ARow, KA) const { return true; }
  FASTCNN_D BRow b_row(Idx n) const { return dyo + n; }
  FASTCNN_D KB b_k(Idx k) const { return k * static_cast<Idx>(N); }
  FASTCNN_D void b_step(KB& k) const { k += BK * static_cast<Idx>(N); }
  FASTCNN_D const float* b_ptr(BRow r, KB k) const { return dy + (r + k); }
  FASTCNN_D bool b_ok(BRow, KB) const { return true; }
  struct ERow {
    float* c;
  };
  FASTCNN_D ERow e_row(int64_t, int64_t m) const { return ERow{colg + m * N}; }
  FASTCNN_D float e_val(const ERow&, int64_t, float v) const { return v; }
};

// dx[i] for i = ((img*C + c)*H + h)*W + w of the chunk: the sum, over the taps (r, s) in
// row-major order whose output position p = (h + pt - r*dh) / sh, q = (w + pl - s*dw) / sw is
// exact and inside the output, of dcol[img, (c, r, s), (p, q)]. Each element is written once by
// one thread (no atomics), and only real taps are added: a NaN / inf weight reaches exactly the
// dx elements it multiplies (PyTorch's, the reference's and the CPU's col2im).
struct Col2ImArgs {
  const float* col = nullptr;
  float* dx = nullptr;
  int64_t total = 0, P = 0, Q = 0, R = 0, S = 0;
  int64_t pt = 0, pl = 0, dh = 1, dw = 1;
  FastDiv div_W, div_H, div_sh, div_sw;
};

template <bool kWide>
__global__ void __launch_bounds__(kThreads) col2im_kernel(const Col2ImArgs a) {
  const int64_t PQ = a.P * a.Q, RSPQ = a.R * a.S * PQ;
  for (int64_t i = global_thread(); i < a.total; i += grid_threads()) {
    int64_t t, ic;
    const int64_t w = a.div_W.divmod_t<kWide>(i, t);
    const int64_t h = a.div_H.divmod_t<kWide>(t, ic);  // ic = img*C + c
    const float* colc = a.col + ic * RSPQ;
    float acc = 0.0f;
    for (int64_t r = 0; r < a.R; ++r) {
      const int64_t th = h + a.pt - r * a.dh;  // decreases with r
      if (th < 0) break;
      int64_t p;
      if (a.div_sh.divmod_t<kWide>(th, p) != 0 || p >= a.P) continue;
      const float* colr = colc + r * a.S * PQ + p * a.Q;
      for (int64_t s = 0; s < a.S; ++s) {
        const int64_t tw = w + a.pl - s * a.dw;
        if (tw < 0) break;
        int64_t q;
        if (a.div_sw.divmod_t<kWide>(tw, q) != 0 || q >= a.Q) continue;
        acc += colr[s * PQ + q];
      }
    }
    a.dx[i] = acc;
  }
}

// ---- backward-weights --------------------------------------------------------------------------
// A = dy (Kg x N*PQ, k = (img, pq) contiguous within an image), B = col(x)^T (N*PQ x CgRS):
//   A k state: pq and off = img*K*PQ + pq, stepped by BK with one carry;
//   B k state (k = (img, p, q)): h0 = p*sh - pt, w0 = q*sw - pl, pix = img*C*H*W + h0*W + w0,
//   stepped by BK with two carries; B row state (n = (c, r, s)): rh = r*dh, sw = s*dw,
//   off = group offset + c*H*W + rh*W + sw; element: (h0 + rh, w0 + sw) inside H x W ?
//   x[pix + off] : 0.
template <typename I>
struct ConvBwdWeightsOp {
  using Idx = I;
  static constexpr bool kAContigK = true;  // dy[n, k, pq]: reduction index (n, pq), pq fastest
  static constexpr bool kBContigK = true;  // x gathered along (n, p, q), q fastest
  static constexpr bool kAVec = false, kBVec = false;  // both k-contiguous
  static constexpr bool kStore128 = sizeof(I) == 4;  // (as the forward's)
  int64_t G = 0, splits = 1, chunk = BK, M = 0, N = 0, K = 0;
  const float* dy = nullptr;
  const float* x = nullptr;
  float* dW = nullptr;
  float* ws = nullptr;
  int64_t C = 0, Kout = 0, Cg = 0, total = 0;
  Idx H = 0, W = 0, sh = 1, sw = 1, pt = 0, pl = 0, dh = 1, dw = 1;
  Idx Rdh = 0, Sdw = 0, HW = 0, P = 1, Q = 1, PQ = 1, KPQ = 0, CHW = 0;
  Idx a_lo = 0, a_hi = 0;            // BK = a_hi*PQ + a_lo (a_hi pre-multiplied by K*PQ)
  Idx b_lo = 0, b_mid = 0, b_hi = 0;  // BK over (img, p, q): b_hi pre-multiplied by C*H*W
  FastDiv div_PQ, div_Q, div_RS, div_S;
  int64_t g = 0;
  Idx dyo = 0, xo = 0;  // the group's channel offsets in dy and x (folded into the row states)

  FASTCNN_D void bind(int64_t grp) {
    g = grp;
    dyo = static_cast<Idx>(grp * M * PQ);
    xo = static_cast<Idx>(grp * Cg * H * W);
  }
  struct KA {
    Idx pq, off;
  };
  using ARow = Idx;
  FASTCNN_D ARow a_row(Idx m) const { return dyo + m * PQ; }
  FASTCNN_D KA a_k(Idx k) const {
    int64_t img;
    const Idx pq = static_cast<Idx>(div_PQ.divmod(k, img));
    return KA{pq, static_cast<Idx>(img) * KPQ + pq};
  }
  FASTCNN_D void a_step(KA& t) const {
    t.pq += a_lo;
    const bool c = t.pq >= PQ;
    t.pq -= c ? PQ : Idx{0};
    t.off += a_lo + a_hi + (c ? KPQ - PQ : Idx{0});
  }
  FASTCNN_D const float* a_ptr(ARow r, const KA& t) const { return dy + (r + t.off); }
  FASTCNN_D bool a_ok(ARow, const KA&) const { return true; }

  struct KB {
    Idx p, q, img_off, h0, w0, pix;
  };
  struct BRow {
    Idx rh, sw, off;
  };
  FASTCNN_D BRow b_row(Idx n) const {
    int64_t c, r;
    const int64_t rs = div_RS.divmod(n, c);
    const Idx s = static_cast<Idx>(div_S.divmod(rs, r));
    BRow t;
    t.rh = static_cast<Idx>(r) * dh;
    t.sw = s * dw;
    t.off = xo + static_cast<Idx>(c) * HW + t.rh * W + t.sw;
    return t;
  }
  FASTCNN_D void b_pix(KB& t) const {
    t.h0 = t.p * sh - pt;
    t.w0 = t.q * sw - pl;
    t.pix = t.img_off + t.h0 * W + t.w0;
  }
  FASTCNN_D KB b_k(Idx k) const {
    int64_t img, p;
    const int64_t pq = div_PQ.divmod(k, img);
    const Idx q = static_cast<Idx>(div_Q.divmod(pq, p));
    KB t;
    t.p = static_cast<Idx>(p), t.q = q, t.img_off = static_cast<Idx>(img) * CHW;
    b_pix(t);
    return t;
  }
  FASTCNN_D void b_step(KB& t) const {
    t.q += b_lo;
    const bool cq = t.q >= Q;
    t.q -= cq ? Q : Idx{0};
    t.p += b_mid + (cq ? Idx{1} : Idx{0});
    const bool cp = t.p >= P;
    t.p -= cp ? P : Idx{0};
    t.img_off += b_hi + (cp ? CHW : Idx{0});
    b_pix(t);
  }
  FASTCNN_D const float* b_ptr(const BRow& r, const KB& t) const { return x + (t.pix + r.off); }
  FASTCNN_D bool b_ok(const BRow& r, const KB& t) const {
    using U = std::make_unsigned_t<Idx>;
    return static_cast<U>(t.h0 + r.rh) < static_cast<U>(H) &&
           static_cast<U>(t.w0 + r.sw) < static_cast<U>(W);
  }
  // dw is (groups, Kg, CgRS) contiguous; split partials go to ws (splits, groups, Kg, CgRS)
  struct ERow {
    float* c;
  };
  FASTCNN_D ERow e_row(int64_t split, int64_t m) const {
    const int64_t off = (g * M + m) * N;
    return ERow{splits > 1 ? ws + split * total + off : dW + off};
  }
  FASTCNN_D float e_val(const ERow&, int64_t, float v) const { return v; }
};

gemm::GemmLaunch bwd_weights_gemm(const Conv2dParams& p) {
  gemm::GemmLaunch g;
  g.what = "conv2d_backward (dw)";
  g.G = p.groups, g.M = p.Kg(), g.N = p.CRSg(), g.K = p.N * p.P * p.Q;
  g.split = gemm::choose_split(g.G, g.M, g.N, g.K, true);
  return g;
}
gemm::Split bwd_weights_split(const Conv2dParams& p) { return bwd_weights_gemm(p).split; }

// dcol of a chunk of nb images: no split (K = Kg: one chunk)
gemm::GemmLaunch dcol_gemm(const Conv2dParams& p, int64_t nb) {
  gemm::GemmLaunch g;
  g.what = "conv2d_backward (dx: dcol)";
  g.G = nb * p.groups, g.M = p.CRSg(), g.N = p.P * p.Q, g.K = p.Kg();
  g.split = gemm::choose_split(g.G, g.M, g.N, g.K, false);
  return g;
}

}  // namespace

int64_t conv2d_forward_workspace(const Conv2dParams& p) {
  const gemm::Split s = fwd_split(p);
  return s.splits > 1 ? s.splits * p.N * p.K * p.P * p.Q : 0;
}

int64_t conv2d_backward_data_workspace(const Conv2dParams& p) {
  return col_chunk_images(p) * (p.N == 0 ? 0 : col_per_image(p));
}

int64_t conv2d_backward_weights_workspace(const Conv2dParams& p) {
  const gemm::Split s = bwd_weights_split(p);
  return s.splits > 1 ? s.splits * p.K * p.CRSg() : 0;
}

void conv2d_forward(const float* x, const float* w, const float* b, float* y, float* ws,
                    const Conv2dParams& p, bool relu, Stream stream) {
  const int64_t PQ = p.P * p.Q, total = p.N * p.K * PQ;
  if (total == 0) return;
  const gemm::GemmLaunch g = fwd_gemm(p);
  const gemm::Split sp = g.split;
  auto go = [&](auto op) {
    using Idx = typename decltype(op)::Idx;
    op.G = g.G, op.splits = sp.splits, op.chunk = sp.chunk;
    op.M = g.M, op.N = g.N, op.K = g.K;
    op.x = x, op.w = w, op.bias = b, op.y = y, op.ws = ws;
    op.C = p.C, op.Cg = p.Cg(), op.groups = p.groups, op.total = total;
    set_geometry(op, p);
    const Step3 st = step3(p.R, p.S);  // k = (c, r, s)
    op.st_lo = static_cast<Idx>(st.lo * p.dil_w), op.st_mid = static_cast<Idx>(st.mid * p.dil_h);
    op.st_hi = static_cast<Idx>(st.hi * p.H * p.W);
    op.div_groups = FastDiv(p.groups), op.div_RS = FastDiv(p.R * p.S), op.div_S = FastDiv(p.S);
    op.div_Q = FastDiv(p.Q);
    op.relu = relu ? 1 : 0;
    gemm::run(g.what, op, op.M, op.N, stream);
  };
  const bool pointwise = p.R == 1 && p.S == 1 && p.stride_h == 1 && p.stride_w == 1 &&
                         p.pad_top == 0 && p.pad_left == 0 && p.P == p.H && p.Q == p.W;
  if (conv_fits31(p) && pointwise && (p.H * p.W) % 4 == 0 && gemm::aligned16(x))
    go(ConvFwdOp<int32_t, true>{});
  else if (conv_fits31(p))
    go(ConvFwdOp<int32_t>{});
  else
    go(ConvFwdOp<int64_t>{});
  if (sp.splits > 1) splitk_reduce(ws, sp.splits, total, y, b, PQ, p.K, relu, stream);
}

void conv2d_backward_data(const float* dy, const float* w, float* dx, float* ws,
                          const Conv2dParams& p, Stream stream) {
  if (p.N * p.C * p.H * p.W == 0) return;
  const int64_t imgs = col_chunk_images(p), PQ = p.P * p.Q, CHW = p.C * p.H * p.W;
  for (int64_t n0 = 0; n0 < p.N; n0 += imgs) {
    const int64_t nb = imin(imgs, p.N - n0);
    const gemm::GemmLaunch g = dcol_gemm(p, nb);
    auto go = [&](auto op) {
      op.G = g.G, op.splits = g.split.splits, op.chunk = g.split.chunk;
      op.M = g.M, op.N = g.N, op.K = g.K;
      op.dy = dy + n0 * p.K * PQ, op.w = w, op.col = ws;
      op.div_groups = FastDiv(p.groups);
      gemm::run(g.what, op, op.M, op.N, stream);
    };
    // 32-bit load offsets: all of w and the chunk's dy, plus one k step past the end; 16-byte
    // copies when every row of both operands starts 16-byte aligned
    const float* dyc = dy + n0 * p.K * PQ;
    const bool vec = p.CRSg() % 4 == 0 && PQ % 4 == 0 && gemm::aligned16(w) && gemm::aligned16(dyc);
    if (fits31({p.K * p.CRSg() + BK * p.CRSg(), (nb * p.K + BK) * PQ}) && vec)
      go(ConvDcolOp<int32_t, true>{});
    else if (fits31({p.K * p.CRSg() + BK * p.CRSg(), (nb * p.K + BK) * PQ}))
      go(ConvDcolOp<int32_t>{});
    else
      go(ConvDcolOp<int64_t>{});

    Col2ImArgs a;
    a.col = ws, a.dx = dx + n0 * CHW, a.total = nb * CHW;
    a.P = p.P, a.Q = p.Q, a.R = p.R, a.S = p.S;
    a.pt = p.pad_top, a.pl = p.pad_left, a.dh = p.dil_h, a.dw = p.dil_w;
    a.div_W = FastDiv(p.W), a.div_H = FastDiv(p.H);
    a.div_sh = FastDiv(p.stride_h), a.div_sw = FastDiv(p.stride_w);
    const dim3 grid = grid_1d(a.total), block(kThreads);
    if (fits31({a.total, p.H + p.pad_top, p.W + p.pad_left, p.stride_h, p.stride_w}))
      launch("conv2d_backward (dx: col2im)", col2im_kernel<false>, grid, block, stream, a);
    else
      launch("conv2d_backward (dx: col2im)", col2im_kernel<true>, grid, block, stream, a);
  }
}

void conv2d_backward_weights(const float* dy, const float* x, float* dw, float* ws,
                             const Conv2dParams& p, Stream stream) {
  const int64_t CRSg = p.CRSg(), total = p.K * CRSg, PQ = p.P * p.Q;
  if (total == 0) return;
  const gemm::GemmLaunch g = bwd_weights_gemm(p);
  const gemm::Split sp = g.split;
  auto go = [&](auto op) {
    using Idx = typename decltype(op)::Idx;
    op.G = g.G, op.splits = sp.splits, op.chunk = sp.chunk;
    op.M = g.M, op.N = g.N, op.K = g.K;
    op.dy = dy, op.x = x, op.dW = dw, op.ws = ws;
    op.C = p.C, op.Kout = p.K, op.Cg = p.Cg(), op.total = total;
    set_geometry(op, p);
    op.P = static_cast<Idx>(p.P), op.Q = static_cast<Idx>(p.Q), op.PQ = static_cast<Idx>(PQ);
    op.KPQ = static_cast<Idx>(p.K * PQ), op.CHW = static_cast<Idx>(p.C * p.H * p.W);
    op.a_lo = static_cast<Idx>(BK % PQ), op.a_hi = static_cast<Idx>((BK / PQ) * p.K * PQ);
    const Step3 st = step3(p.P, p.Q);  // k = (img, p, q)
    op.b_lo = static_cast<Idx>(st.lo), op.b_mid = static_cast<Idx>(st.mid);
    op.b_hi = static_cast<Idx>(st.hi * p.C * p.H * p.W);
    op.div_PQ = FastDiv(PQ), op.div_Q = FastDiv(p.Q), op.div_RS = FastDiv(p.R * p.S);
    op.div_S = FastDiv(p.S);
    gemm::run(g.what, op, op.M, op.N, stream);  // K = 0 (N = 0) writes zeros
  };
  if (conv_fits31(p))
    go(ConvBwdWeightsOp<int32_t>{});
  else
    go(ConvBwdWeightsOp<int64_t>{});
  if (sp.splits > 1) splitk_reduce(ws, sp.splits, total, dw, nullptr, 1, 1, false, stream);
}

namespace gemm {
std::vector<GemmLaunch> conv2d_gemms(const Conv2dParams& p, Pass pass) {
  if (pass == Pass::forward) return {fwd_gemm(p)};
  if (pass == Pass::weights) return {bwd_weights_gemm(p)};
  // backward-data: one dcol GEMM per chunk of images (the launcher's loop), then col2im
  std::vector<GemmLaunch> out;
  if (p.N * p.C * p.H * p.W == 0) return out;
  const int64_t imgs = col_chunk_images(p), full = p.N / imgs, rest = p.N - full * imgs;
  GemmLaunch g = dcol_gemm(p, imgs);
  g.count = full;
  out.push_back(g);
  if (rest > 0) out.push_back(dcol_gemm(p, rest));
  return out;
}
}  // namespace gemm

}  // namespace fastcnn::cuda
