// conv2d_im2col_impl.h -- conv2d's implicit-im2col loops shared by every ISA, included INSIDE
// each ISA's anonymous namespace (generic/conv2d_im2col.cpp, avx2/conv2d_im2col_avx2.cpp,
// avx512/conv2d_im2col_avx512.cpp).
// The including file defines, after this include, the ISA's
//   void segment(float* dst, const float* row, int64_t W, int64_t w0, int64_t ws, int64_t len);
//   dst[t] = row[w0 + t*ws] when row != nullptr and 0 <= w0 + t*ws < W, else 0, for t < len.
// Each ISA thus gets its own copy of these functions in its own namespace (no ODR merging of
// AVX code into baseline callers). No includes here: the including file provides <cstdint> and
// its ISA's `transpose` (kernels.h).

// n / d for n >= 0: the strides 2, 3 and 4 divide by a constant (a shift or a multiply, not a
// ~20-40 cycle division: two of these per segment of 8-24 floats would cost more than its copy).
inline int64_t div_stride(int64_t n, int64_t d) {
  switch (d) {
    case 2: return n / 2;
    case 3: return n / 3;
    case 4: return n / 4;
    default: return n / d;
  }
}

// The in-bounds part [lo, hi) of a segment (lo = hi = len for a null row): 0 <= w0 + t*ws < W.
inline void segment_bounds(const float* row, int64_t W, int64_t w0, int64_t ws, int64_t len,
                           int64_t& lo, int64_t& hi) {
  lo = hi = len;
  if (!row) return;
  if (ws == 1) {  // no division in the common case
    lo = w0 >= 0 ? 0 : -w0;
    hi = W - w0;
  } else {
    lo = w0 >= 0 ? 0 : div_stride(-w0 + ws - 1, ws);
    hi = w0 <= W - 1 ? div_stride(W - 1 - w0, ws) + 1 : 0;
  }
  lo = lo < len ? lo : len;
  hi = hi < len ? hi : len;
  hi = hi > lo ? hi : lo;
}

inline void segment(float* dst, const float* row, int64_t W, int64_t w0, int64_t ws, int64_t len);

// B panels of the forward / gather-backward GEMM over a batch of images: row k (k < kc) reads
// planes[k] + n*img_stride (Hs x Ws, or nullptr for zeros) at (jp*a_h + bh[k], jq*a_w + bw[k])
// for output j = (n*Po + jp)*Qo + jq in [j0, j0 + nc) (jp < Po: the flattened (image, p, q)
// grid, so a panel may straddle two images); written as NR-column panels (panel p at
// dst + p*kc*nr), zero-padded. Po = INT64_MAX (never reached) is the single-image form.
inline void im2col_batch_impl(const float* const* planes, const int64_t* bh, const int64_t* bw,
                              int64_t kc, int64_t img_stride, int64_t j0, int64_t nc, int64_t Po,
                              int64_t Qo, int64_t Hs, int64_t Ws, int64_t a_h, int64_t a_w,
                              float* dst, int64_t nr) {
  const int64_t jr0 = j0 / Qo, jq0 = j0 % Qo;  // output row of the whole grid, column
  const int64_t n0 = jr0 / Po, jp0 = jr0 % Po;
  for (int64_t k = 0; k < kc; ++k) {
    const float* plane = planes[k] ? planes[k] + n0 * img_stride : nullptr;
    float* panel = dst + k * nr;
    int64_t jp = jp0, jq = jq0, lane = 0, done = 0;
    while (done < nc) {
      int64_t len = Qo - jq;
      if (nr - lane < len) len = nr - lane;
      if (nc - done < len) len = nc - done;
      const int64_t h = jp * a_h + bh[k];
      const float* row = (plane && h >= 0 && h < Hs) ? plane + h * Ws : nullptr;
      segment(panel + lane, row, Ws, jq * a_w + bw[k], a_w, len);
      done += len;
      lane += len;
      jq += len;
      if (jq == Qo) {
        jq = 0;
        if (++jp == Po) jp = 0, plane = plane ? plane + img_stride : nullptr;
      }
      if (lane == nr) lane = 0, panel += kc * nr;
    }
    if (lane > 0) segment(panel + lane, nullptr, 0, 0, 1, nr - lane);
  }
}

// The single-image form: planes[k] at (jp*a_h + bh[k], jq*a_w + bw[k]) for j = jp*Qo + jq.
inline void im2col_impl(const float* const* planes, const int64_t* bh, const int64_t* bw,
                        int64_t kc, int64_t j0, int64_t nc, int64_t Qo, int64_t Hs,
                        int64_t Ws, int64_t a_h, int64_t a_w, float* dst, int64_t nr) {
  im2col_batch_impl(planes, bh, bw, kc, 0, j0, nc, INT64_MAX, Qo, Hs, Ws, a_h, a_w, dst, nr);
}

// Row-major im2col rows for the weight gradient: row i (i < rows) covers pixels k in
// [k0, k0 + kc) of the flattened (image, p, q) grid (P x Q per image): the value is
// planes[i][n*img_stride + (p*a_h + bh[i])*Ws + q*a_w + bw[i]] when inside the Hs x Ws plane,
// else 0. dst is rows x kc (row stride kc).
inline void im2col_rows_impl(const float* const* planes, const int64_t* bh, const int64_t* bw,
                             int64_t rows, int64_t img_stride, int64_t k0, int64_t kc, int64_t P,
                             int64_t Q, int64_t Hs, int64_t Ws, int64_t a_h, int64_t a_w,
                             float* dst) {
  const int64_t PQ = P * Q;
  for (int64_t i = 0; i < rows; ++i) {
    float* t = dst + i * kc;
    int64_t k = 0, n = k0 / PQ, pq = k0 % PQ;
    int64_t op = pq / Q, oq = pq % Q;
    while (k < kc) {
      const int64_t len = Q - oq < kc - k ? Q - oq : kc - k;
      const int64_t h = op * a_h + bh[i];
      const float* row = (h >= 0 && h < Hs) ? planes[i] + n * img_stride + h * Ws : nullptr;
      segment(t + k, row, Ws, oq * a_w + bw[i], a_w, len);
      k += len;
      oq += len;
      if (oq == Q) {
        oq = 0;
        if (++op == P) op = 0, ++n;
      }
    }
  }
}

// The weight-gradient B panel in two passes: the im2col rows into scratch (cols x kc), then one
// block transpose (the ISA's `transpose`) and zero columns up to nr.
inline void im2col_wgrad_two_pass(const float* const* planes, const int64_t* bh,
                                  const int64_t* bw, int64_t cols, int64_t img_stride, int64_t k0,
                                  int64_t kc, int64_t P, int64_t Q, int64_t Hs, int64_t Ws,
                                  int64_t a_h, int64_t a_w, float* dst, int64_t nr,
                                  float* scratch) {
  im2col_rows_impl(planes, bh, bw, cols, img_stride, k0, kc, P, Q, Hs, Ws, a_h, a_w, scratch);
  transpose(scratch, kc, cols, kc, dst, nr);
  for (int64_t k = 0; cols < nr && k < kc; ++k)
    for (int64_t c = cols; c < nr; ++c) dst[k * nr + c] = 0.0f;
}
