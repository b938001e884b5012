// avgpool2d_impl.h -- the ISA-neutral body of average pooling, included INSIDE the anonymous
// namespace of avx2/avgpool2d_avx2.cpp and avx512/avgpool2d_avx512.cpp after each defines its
// vector traits `struct V` (each file gets its own internal copy: no weak symbol the linker could
// share between ISA and baseline code). V provides, for a vector of V::kW floats:
//   F zero(); F add(F, F); F div(F, F);
//   F load_n(const float* p, int64_t n);            lanes [0, n) = p[lane], others 0 (n <= kW;
//                                                   n == kW: a plain load)
//   void store_n(float* p, F v, int64_t n);         lanes [0, n)
//   void deinterleave_n(const float* p, int64_t n, F& even, F& odd);   lanes i < n: p[2i],
//                                                   p[2i+1]; reads only p[0 .. 2n-1]
//   F even_n(const float* p, int64_t n);            lanes i < n: p[2i]; reads only p[0 .. 2n-2]
//   F gather_n(const float* p, int64_t s, int64_t n);   lanes i < n: p[i*s] (s*kW < 2^31)
//   F load_range(const float* p, int64_t lo, int64_t hi);  lanes [lo, hi) = p[lane], others 0
//                                                   (0 <= lo, hi <= kW; reads only those lanes)
//   void store_interleaved_n(float* p, F a, F b, int64_t n);  p[2i] = a[i], p[2i+1] = b[i], i < n
// No std:: calls here (see maxpool2d_impl.h: an ISA file's out-of-line copy could be kept for
// baseline callers); the includer includes <cstdint> and <cstring>.
//
// Forward, plane by plane: y[p, q] = 0 + (sum of the window's input elements in row-major order,
// from 0) / div[p, q], as generic/avgpool2d.cpp (PyTorch's CPU loop). Interior columns (window
// inside [0, W)) go kW at a time, up to 4 vectors interleaved (independent add chains: a 3x3
// window is a 9-add chain per lane); each lane keeps its own row-major sum, so the bits are the
// scalar loop's. Border columns go scalar, except at stride 1: there the first and last blocks
// load each tap with the lanes whose column is outside [0, W) masked to 0. Adding +0 leaves
// every sum's bits alone (a sum starting from +0 is never -0, and NaN / inf stay), so those
// lanes give the scalar loop's bits too, and the 3x3/1 border columns (2 of 56, a third of the
// time as scalar 6-add chains) go 8 or 16 at a time with their neighbours.
// A row's last vector block, when short, moves back to end where it ends and overlaps the block
// before (those outputs computed again, the same bits) instead of a masked store (vmaskmovps
// stores are slow on AMD Zen: 6 % of the 3x3/2 backward on its own); the backward too.
// Backward, plane by plane: scratch = dy / div (P*Q), then each dx element sums scratch over the
// windows that contain it in increasing (p, q) order from 0 (a gather: PyTorch's scatter order,
// so its bits). Stride 1 along W: dx[w] takes scratch[oh, w + pw - kw + 1 + j], j < kw, one unit
// load per tap for kW columns. Stride 2: the kW even and kW odd columns of a block of 2*kW dx
// elements each read a contiguous run of windows (lane i of the even ones takes windows
// i + A0 .. i + B0, the odd ones i + A1 .. i + B1), then the two sums are interleaved. Other
// strides and border columns go scalar. The interior rows' tap counts (stride 1, kw 2 or 3) and
// the two phases' run lengths (stride 2, 3x3: 1 and 2) are template arguments (unrolled; the
// run-time one- or two-trip loops were the 3x3/2 backward's hottest code: 0-25 % faster,
// measured, the same bits). The window ranges of every row and every column are
// tabled once per call (WinTab, axes up to 2048 long; longer ones divide per row as before).
// Non-overlapping 2-wide windows without padding (2x2/2) skip the scratch: dx = 0 + dy / div,
// each quotient stored to its 2 x kh dx elements (avg_bwd_upsample2).

inline int64_t imin(int64_t a, int64_t b) { return a < b ? a : b; }
inline int64_t imax(int64_t a, int64_t b) { return a > b ? a : b; }
// ceil(a / b) for b > 0 and any a (floor for a >= 0 is plain division).
inline int64_t ceil_div_any(int64_t a, int64_t b) { return a >= 0 ? (a + b - 1) / b : -((-a) / b); }

enum class Mode { unit, pair, gather };

// ---- forward ---------------------------------------------------------------------------------

// One output element, the scalar loop (rows [h0, h1), columns of window start ws).
inline float avg_window(const float* x, int64_t W, int64_t h0, int64_t h1, int64_t ws,
                        int64_t kw, float div) {
  const int64_t w0 = imax(ws, 0), w1 = imin(ws + kw, W);
  float s = 0.0f;
  for (int64_t h = h0; h < h1; ++h)
    for (int64_t w = w0; w < w1; ++w) s += x[h * W + w];
  return 0.0f + s / div;
}

// U blocks of n (<= kW; n < kW only when U == 1) interior outputs starting at window column ws.
template <Mode M, int KW, int U>
__attribute__((always_inline)) inline void avg_blocks(const float* x, int64_t W, int64_t h0,
                                                      int64_t h1, int64_t kw_rt, int64_t sw,
                                                      int64_t ws, int64_t n, const float* dr,
                                                      float* yr) {
  constexpr int64_t L = V::kW;
  const int64_t kw = KW > 0 ? KW : kw_rt;
  typename V::F acc[U];
  for (int u = 0; u < U; ++u) acc[u] = V::zero();
  for (int64_t h = h0; h < h1; ++h) {
    const float* src = x + h * W + ws;
    if constexpr (M == Mode::unit) {
      for (int64_t j = 0; j < kw; ++j)
        for (int u = 0; u < U; ++u) acc[u] = V::add(acc[u], V::load_n(src + j + u * L, n));
    } else if constexpr (M == Mode::pair) {
      int64_t j = 0;
      for (; j + 1 < kw; j += 2) {
        for (int u = 0; u < U; ++u) {
          typename V::F e, o;
          V::deinterleave_n(src + j + 2 * u * L, n, e, o);
          acc[u] = V::add(V::add(acc[u], e), o);
        }
      }
      if (j < kw)
        for (int u = 0; u < U; ++u) acc[u] = V::add(acc[u], V::even_n(src + j + 2 * u * L, n));
    } else {
      for (int64_t j = 0; j < kw; ++j)
        for (int u = 0; u < U; ++u)
          acc[u] = V::add(acc[u], V::gather_n(src + j + u * L * sw, sw, n));
    }
  }
  for (int u = 0; u < U; ++u)
    V::store_n(yr + u * L, V::add(V::zero(), V::div(acc[u], V::load_n(dr + u * L, n))), n);
}

// Stride 1: n (<= kW) outputs from window column ws (any: columns outside [0, W) count as 0).
template <int KW>
__attribute__((always_inline)) inline void avg_block_masked(const float* x, int64_t W, int64_t h0,
                                                            int64_t h1, int64_t kw_rt, int64_t ws,
                                                            int64_t n, const float* dr,
                                                            float* yr) {
  const int64_t kw = KW > 0 ? KW : kw_rt;
  typename V::F acc = V::zero();
  for (int64_t h = h0; h < h1; ++h) {
    const float* src = x + h * W + ws;
    for (int64_t j = 0; j < kw; ++j) {
      const int64_t c0 = ws + j;  // column of lane 0
      acc = V::add(acc, V::load_range(src + j, imax(0, -c0), imin(n, W - c0)));
    }
  }
  V::store_n(yr, V::add(V::zero(), V::div(acc, V::load_n(dr, n))), n);
}

template <Mode M, int KW>
void avg_fwd_planes(const float* x, float* y, const float* div, const Pool2dParams& p,
                    int64_t planes) {
  constexpr int64_t L = V::kW;
  const int64_t H = p.H, W = p.W, P = p.P, Q = p.Q, kh = p.kh, kw = p.kw;
  const int64_t sh = p.stride_h, sw = p.stride_w, ph = p.pad_h, pw = p.pad_w;
  // interior columns: q*sw - pw >= 0 and q*sw - pw + kw <= W
  const int64_t qa = imin((pw + sw - 1) / sw, Q);
  const int64_t last = W - kw + pw;
  int64_t qb = last >= 0 ? imin(last / sw + 1, Q) : 0;
  if (qb < qa) qb = qa;
  for (int64_t pl = 0; pl < planes; ++pl) {
    const float* xp = x + pl * H * W;
    float* yp = y + pl * P * Q;
    for (int64_t op = 0; op < P; ++op) {
      const int64_t hs = op * sh - ph;
      const int64_t h0 = imax(hs, 0), h1 = imin(hs + kh, H);
      float* yr = yp + op * Q;
      const float* dr = div + op * Q;
      int64_t q = 0;
      if constexpr (M == Mode::unit) {
        for (; q < qa; q += L) avg_block_masked<KW>(xp, W, h0, h1, kw, q - pw, imin(L, Q - q), dr + q, yr + q);
      } else {
        for (; q < qa; ++q) yr[q] = avg_window(xp, W, h0, h1, q * sw - pw, kw, dr[q]);
      }
      for (; q + 4 * L <= qb; q += 4 * L)
        avg_blocks<M, KW, 4>(xp, W, h0, h1, kw, sw, q * sw - pw, L, dr + q, yr + q);
      for (; q + 2 * L <= qb; q += 2 * L)
        avg_blocks<M, KW, 2>(xp, W, h0, h1, kw, sw, q * sw - pw, L, dr + q, yr + q);
      if constexpr (M == Mode::unit) {  // full interior blocks, then masked ones to Q
        for (; q + L <= qb; q += L) avg_blocks<M, KW, 1>(xp, W, h0, h1, kw, sw, q - pw, L, dr + q, yr + q);
        for (; q < Q; q += L) {
          if (Q - q < L && Q >= L) q = Q - L;  // overlap the block before: no masked store
          avg_block_masked<KW>(xp, W, h0, h1, kw, q - pw, imin(L, Q - q), dr + q, yr + q);
        }
      } else {
        for (; q < qb; q += L) {
          if (qb - q < L && qb - qa >= L) q = qb - L;  // overlap the block before
          avg_blocks<M, KW, 1>(xp, W, h0, h1, kw, sw, q * sw - pw, imin(L, qb - q), dr + q,
                               yr + q);
        }
        for (q = qb; q < Q; ++q) yr[q] = avg_window(xp, W, h0, h1, q * sw - pw, kw, dr[q]);
      }
    }
  }
}

template <Mode M>
void avg_fwd_kw(const float* x, float* y, const float* div, const Pool2dParams& p,
                int64_t planes) {
  if (p.kw == 2) {
    avg_fwd_planes<M, 2>(x, y, div, p, planes);
  } else if (p.kw == 3) {
    avg_fwd_planes<M, 3>(x, y, div, p, planes);
  } else {
    avg_fwd_planes<M, 0>(x, y, div, p, planes);
  }
}

inline void avgpool2d_fwd_impl(const float* x, float* y, const float* div, const Pool2dParams& p,
                               int64_t planes) {
  if (p.stride_w == 1) {
    avg_fwd_kw<Mode::unit>(x, y, div, p, planes);
  } else if (p.stride_w == 2) {
    avg_fwd_kw<Mode::pair>(x, y, div, p, planes);
  } else if (p.stride_w * V::kW < (int64_t{1} << 30)) {
    avg_fwd_kw<Mode::gather>(x, y, div, p, planes);
  } else {  // strides too large for int32 gather offsets: scalar
    const int64_t H = p.H, W = p.W, P = p.P, Q = p.Q;
    for (int64_t pl = 0; pl < planes; ++pl)
      for (int64_t op = 0; op < P; ++op) {
        const int64_t hs = op * p.stride_h - p.pad_h;
        const int64_t h0 = imax(hs, 0), h1 = imin(hs + p.kh, H);
        for (int64_t q = 0; q < Q; ++q)
          y[(pl * P + op) * Q + q] = avg_window(x + pl * H * W, W, h0, h1,
                                                q * p.stride_w - p.pad_w, p.kw, div[op * Q + q]);
      }
  }
}

// ---- backward --------------------------------------------------------------------------------

// The windows of one axis containing position i: [lo, hi] (empty when lo > hi).
inline void windows_of(int64_t i, int64_t pad, int64_t k, int64_t s, int64_t out, int64_t& lo,
                       int64_t& hi) {
  lo = imax(0, ceil_div_any(i + pad - k + 1, s));
  hi = imin(out - 1, (i + pad) / s);
}

// U blocks of n (<= kW; n < kW only when U == 1) consecutive dx elements of one row, stride 1:
// lane i of block u sums g[oh, start + u*kW + i + j] over oh in [oa, ob], j < kw, in that order.
// KW > 0: kw known at compile time (the tap loop unrolled; KW == 0: kw at run time).
template <int U, int KW = 0>
__attribute__((always_inline)) inline void grad_unit_blocks(const float* g, int64_t Q, int64_t oa,
                                                            int64_t ob, int64_t kw_rt,
                                                            int64_t start, int64_t n, float* d) {
  constexpr int64_t L = V::kW;
  const int64_t kw = KW > 0 ? KW : kw_rt;
  typename V::F acc[U];
  for (int u = 0; u < U; ++u) acc[u] = V::zero();
  for (int64_t oh = oa; oh <= ob; ++oh) {
    const float* src = g + oh * Q + start;
    for (int64_t j = 0; j < kw; ++j)
      for (int u = 0; u < U; ++u) acc[u] = V::add(acc[u], V::load_n(src + j + u * L, n));
  }
  for (int u = 0; u < U; ++u) V::store_n(d + u * L, acc[u], n);
}

// U blocks of 2n (n <= kW; n < kW only when U == 1) consecutive dx elements of one row, stride 2:
// the even element of lane i (block u) sums g[oh, e0 + u*kW + i + m], m < ce, the odd one
// g[oh, o0 + u*kW + i + m], m < co, over oh in [oa, ob]; then the two are interleaved.
// CE, CO > 0: the run lengths ce, co known at compile time (3x3/2: 1 and 2, unrolled; a run-time
// loop of one or two trips was the 3x3/2 backward's hottest code); 0: at run time.
template <int U, int CE = 0, int CO = 0>
__attribute__((always_inline)) inline void grad_pair_blocks(const float* g, int64_t Q, int64_t oa,
                                                            int64_t ob, int64_t e0,
                                                            int64_t ce_rt, int64_t o0,
                                                            int64_t co_rt, int64_t n, float* d) {
  constexpr int64_t L = V::kW;
  const int64_t ce = CE > 0 ? CE : ce_rt, co = CO > 0 ? CO : co_rt;
  typename V::F e[U], o[U];
  for (int u = 0; u < U; ++u) e[u] = V::zero(), o[u] = V::zero();
  for (int64_t oh = oa; oh <= ob; ++oh) {
    const float* row = g + oh * Q;
    for (int64_t m = 0; m < ce; ++m)
      for (int u = 0; u < U; ++u) e[u] = V::add(e[u], V::load_n(row + e0 + m + u * L, n));
    for (int64_t m = 0; m < co; ++m)
      for (int u = 0; u < U; ++u) o[u] = V::add(o[u], V::load_n(row + o0 + m + u * L, n));
  }
  for (int u = 0; u < U; ++u) V::store_interleaved_n(d + 2 * u * L, e[u], o[u], n);
}

// The interior dx columns [wa, wb) of one row at stride 1 (dx[w] takes g[oh, w + pw - kw + 1 + j],
// j < kw, oh in [oa, ob]); returns wb.
template <int KW>
inline int64_t grad_row_unit(const float* g, int64_t Q, int64_t oa, int64_t ob, int64_t kw,
                             int64_t pw, int64_t wa, int64_t wb, float* dr) {
  constexpr int64_t L = V::kW;
  const int64_t off = pw - kw + 1;
  int64_t w = wa;
  for (; w + 4 * L <= wb; w += 4 * L) grad_unit_blocks<4, KW>(g, Q, oa, ob, kw, w + off, L, dr + w);
  for (; w + 2 * L <= wb; w += 2 * L) grad_unit_blocks<2, KW>(g, Q, oa, ob, kw, w + off, L, dr + w);
  for (; w < wb; w += L) {
    if (wb - w < L && wb - wa >= L) w = wb - L;  // overlap the block before
    grad_unit_blocks<1, KW>(g, Q, oa, ob, kw, w + off, imin(L, wb - w), dr + w);
  }
  return wb;
}

// The interior dx columns [wa, wb) of one row at stride 2 (the even ones' runs of c0 windows from
// a0 + i, the odd ones' c1 from a1 + i); blocks step by an even count, so the phases' runs are
// fixed per plane. Returns the first column not done (wb, or wb - 1 for an odd count).
template <int CE, int CO>
inline int64_t grad_row_pair(const float* g, int64_t Q, int64_t oa, int64_t ob, int64_t a0,
                             int64_t c0, int64_t a1, int64_t c1, int64_t wa, int64_t wb,
                             float* dr) {
  constexpr int64_t L = V::kW;
  int64_t w = wa;
  for (; w + 4 * L <= wb; w += 4 * L)
    grad_pair_blocks<2, CE, CO>(g, Q, oa, ob, a0 + (w - wa) / 2, c0, a1 + (w - wa) / 2, c1, L,
                                dr + w);
  while (wb - w >= 2) {
    int64_t n = imin(L, (wb - w) / 2);  // 2n dx elements
    if (n < L && w - 2 * (L - n) >= wa) w -= 2 * (L - n), n = L;  // overlap the one before
    grad_pair_blocks<1, CE, CO>(g, Q, oa, ob, a0 + (w - wa) / 2, c0, a1 + (w - wa) / 2, c1, n,
                                dr + w);
    w += 2 * n;
  }
  return w;
}

// The windows of every position of one axis, [lo[i], hi[i]], for axes up to kWinTab long: the
// backward's per-row and per-border-column window ranges, computed once per call instead of two
// integer divisions per row and per border element of every plane (a 64-bit idiv is ~10-20
// cycles on Zen 3 / Ice Lake: 6 a row made the 3x3/1 backward of a 56x56 plane compute-bound).
constexpr int64_t kWinTab = 2048;

struct WinTab {
  int32_t lo[kWinTab], hi[kWinTab];
  bool ok = false;
  void build(int64_t n, int64_t pad, int64_t k, int64_t s, int64_t out) {
    ok = n <= kWinTab;
    if (!ok) return;
    for (int64_t i = 0; i < n; ++i) {
      int64_t a, b;
      windows_of(i, pad, k, s, out, a, b);
      lo[i] = static_cast<int32_t>(a), hi[i] = static_cast<int32_t>(b);
    }
  }
  void get(int64_t i, int64_t pad, int64_t k, int64_t s, int64_t out, int64_t& a,
           int64_t& b) const {
    if (ok) {
      a = lo[i], b = hi[i];
    } else {
      windows_of(i, pad, k, s, out, a, b);
    }
  }
};

// One dx element of column w with its column windows [qa, qb] given.
inline float avg_grad_elem_q(const float* g, int64_t Q, int64_t oa, int64_t ob, int64_t qa,
                             int64_t qb) {
  float acc = 0.0f;
  for (int64_t oh = oa; oh <= ob; ++oh)
    for (int64_t oq = qa; oq <= qb; ++oq) acc += g[oh * Q + oq];
  return acc;
}

// Non-overlapping 2-wide windows (kw == sw == 2, kh == sh, no padding: the 2x2/2 pool of
// DenseNet transitions): every dx element is in at most one window, so dx = 0 + dy / div of its
// window (the bits of the general gather: 0 + one term), computed straight from dy, each
// quotient duplicated to its 2 columns and kh rows in registers: one pass over dy and dx, no
// scratch pass. Rows and columns no window covers are 0; a ceil_mode window overhanging W
// gives its last column alone.
inline void avg_bwd_upsample2(const float* dy, float* dx, const float* div, const Pool2dParams& p,
                              int64_t planes) {
  constexpr int64_t L = V::kW;
  const int64_t H = p.H, W = p.W, P = p.P, Q = p.Q, kh = p.kh;
  const int64_t qn = imin(Q, W / 2);             // windows with both columns inside
  const bool odd = qn < Q && 2 * qn < W;          // a last window covering column W - 1 only
  const int64_t wz = 2 * qn + (odd ? 1 : 0);      // columns [wz, W) are in no window
  for (int64_t pl = 0; pl < planes; ++pl) {
    const float* dyp = dy + pl * P * Q;
    float* dxp = dx + pl * H * W;
    int64_t h = 0;
    for (int64_t oh = 0; oh < P && h < H; ++oh) {
      const int64_t h1 = imin(h + kh, H), nr = h1 - h;
      const float* gr = dyp + oh * Q;
      const float* dr = div + oh * Q;
      float* row = dxp + h * W;
      int64_t q = 0;
      for (; q < qn; q += L) {
        const int64_t n = imin(L, qn - q);
        const typename V::F v = V::add(V::zero(), V::div(V::load_n(gr + q, n), V::load_n(dr + q, n)));
        for (int64_t r = 0; r < nr; ++r) V::store_interleaved_n(row + r * W + 2 * q, v, v, n);
      }
      for (int64_t r = 0; r < nr; ++r) {
        float* o = row + r * W;
        if (odd) o[2 * qn] = 0.0f + gr[qn] / dr[qn];
        for (int64_t w = wz; w < W; ++w) o[w] = 0.0f;
      }
      h = h1;
    }
    if (h < H) std::memset(dxp + h * W, 0, static_cast<size_t>((H - h) * W) * sizeof(float));
  }
}

inline void avgpool2d_bwd_impl(const float* dy, float* dx, const float* div, float* g,
                               const Pool2dParams& p, int64_t planes) {
  if (p.kw == 2 && p.stride_w == 2 && p.kh == p.stride_h && p.pad_h == 0 && p.pad_w == 0) {
    avg_bwd_upsample2(dy, dx, div, p, planes);
    return;
  }
  constexpr int64_t L = V::kW;
  const int64_t H = p.H, W = p.W, P = p.P, Q = p.Q, PQ = P * Q;
  const int64_t kh = p.kh, kw = p.kw, sh = p.stride_h, sw = p.stride_w;
  const int64_t ph = p.pad_h, pw = p.pad_w;
  // interior dx columns [wa, wb): every window containing them is a full run in [0, Q)
  int64_t wa = 0, wb = 0;
  if (sw == 1) {
    wa = imax(0, kw - 1 - pw), wb = imin(W, Q - pw);
  } else if (sw == 2) {
    wa = imax(0, kw - 2 - pw), wb = imin(W, 2 * Q - pw);
  }
  wa = imin(wa, W);
  if (wb < wa) wb = wa;
  // stride 2: the even elements wa, wa + 2, ... (lane i: wa + 2i) take the run of c0 windows from
  // a0 + i, the odd ones c1 windows from a1 + i (c = wa + pw: the windows containing w are
  // [ceil((w + pw - kw + 1) / 2), floor((w + pw) / 2)])
  const int64_t c = wa + pw;
  const int64_t a0 = ceil_div_any(c - kw + 1, 2), c0 = c / 2 - a0 + 1;
  const int64_t a1 = ceil_div_any(c + 2 - kw, 2), c1 = (c + 1) / 2 - a1 + 1;
  // 2 x 16 KiB on the stack (OpenMP worker and main stacks are MiBs)
  WinTab rows, cols;
  rows.build(H, ph, kh, sh, P);
  cols.build(W, pw, kw, sw, Q);
  auto col_elem = [&](int64_t oa, int64_t ob, int64_t w) {
    int64_t qa, qb;
    cols.get(w, pw, kw, sw, Q, qa, qb);
    return avg_grad_elem_q(g, Q, oa, ob, qa, qb);
  };
  // The next plane's dy is prefetched a slice per dx row while this plane's gather runs (it
  // reads only the scratch, from L1): the scratch pass then finds dy in cache instead of
  // starting a demand stream from DRAM every plane (the hardware prefetchers stop while no dy
  // is read). Prefetches never fault; the last plane's run past the range is harmless.
  const int64_t pf_row = ((PQ + H - 1) / H + 15) / 16 * 16;  // floats a row, whole lines
  for (int64_t pl = 0; pl < planes; ++pl) {
    const float* dyp = dy + pl * PQ;
    float* dxp = dx + pl * H * W;
    int64_t o = 0;
    for (; o + L <= PQ; o += L)
      V::store_n(g + o, V::div(V::load_n(dyp + o, L), V::load_n(div + o, L)), L);
    if (o < PQ)
      V::store_n(g + o, V::div(V::load_n(dyp + o, PQ - o), V::load_n(div + o, PQ - o)), PQ - o);
    for (int64_t h = 0; h < H; ++h) {
      float* dr = dxp + h * W;
      for (int64_t f = h * pf_row, fe = imin(PQ, f + pf_row); f < fe; f += 16)
        __builtin_prefetch(dyp + PQ + f);
      int64_t oa, ob;
      rows.get(h, ph, kh, sh, P, oa, ob);
      if (oa > ob) {  // a row in no window (stride > kernel)
        std::memset(dr, 0, static_cast<size_t>(W) * sizeof(float));
        continue;
      }
      for (int64_t w = 0; w < wa; ++w) dr[w] = col_elem(oa, ob, w);
      int64_t w = wa;
      if (sw == 1) {
        if (kw == 3) {
          w = grad_row_unit<3>(g, Q, oa, ob, kw, pw, wa, wb, dr);
        } else if (kw == 2) {
          w = grad_row_unit<2>(g, Q, oa, ob, kw, pw, wa, wb, dr);
        } else {
          w = grad_row_unit<0>(g, Q, oa, ob, kw, pw, wa, wb, dr);
        }
      } else if (sw == 2) {
        if (c0 == 1 && c1 == 2) {  // kw == 3, pw odd (3x3/2 pad 1)
          w = grad_row_pair<1, 2>(g, Q, oa, ob, a0, c0, a1, c1, wa, wb, dr);
        } else if (c0 == 2 && c1 == 1) {  // kw == 3, pw even
          w = grad_row_pair<2, 1>(g, Q, oa, ob, a0, c0, a1, c1, wa, wb, dr);
        } else {
          w = grad_row_pair<0, 0>(g, Q, oa, ob, a0, c0, a1, c1, wa, wb, dr);
        }
      }
      for (; w < W; ++w) dr[w] = col_elem(oa, ob, w);
    }
  }
}
