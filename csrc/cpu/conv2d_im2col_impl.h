// conv2d_im2col_impl.h -- conv2d's implicit-im2col loops shared by every ISA, included INSIDE
// each ISA's anonymous namespace (generic/conv2d_im2col.cpp, avx2/conv2d_im2col_avx2.cpp,
// avx512/conv2d_im2col_avx512.cpp).
// The including file defines, after this include, the ISA's
//   void segment_span(float* dst, const float* row, int64_t W, int64_t w0, int64_t ws,
//                     int64_t len, int64_t lo, int64_t hi);
//   dst[t] = row[w0 + t*ws] for lo <= t < hi (the caller guarantees 0 <= w0 + t*ws < W there),
//   0 for the other t < len (row may be nullptr when lo == hi).
// Each ISA thus gets its own copy of these functions in its own namespace (no ODR merging of
// AVX code into baseline callers). No includes here: the including file provides <cstdint> and
// its ISA's `transpose` (kernels.h).
//
// Cost model: the segments are short (an output row inside one NR-column panel: 8 or 16 floats
// on ResNet's 8x8 / 16x16 strided outputs), so the bookkeeping per segment matters as much as
// the copy. The in-bounds output columns of an im2col row depend only on its column offset bw
// (not on the output row or the image): they are computed once per row and call (row_bounds),
// and each segment clamps them (no division per segment); the forward walks the segments of a
// block once and packs all of a chunk's rows for each.

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

inline void segment_span(float* dst, const float* row, int64_t W, int64_t w0, int64_t ws,
                         int64_t len, int64_t lo, int64_t hi);

// The output columns [qlo, qhi) whose tap at column offset bw (stride ws) lies in [0, W):
// 0 <= q*ws + bw < W.
inline void row_bounds(int64_t W, int64_t bw, int64_t ws, int64_t& qlo, int64_t& qhi) {
  qlo = bw >= 0 ? 0 : div_stride(-bw + ws - 1, ws);
  qhi = bw <= W - 1 ? div_stride(W - 1 - bw, ws) + 1 : 0;
  qhi = qhi > qlo ? qhi : qlo;
}

// [lo, hi) of a segment of len outputs from output column q (row bounds [qlo, qhi)).
inline void clamp_bounds(int64_t qlo, int64_t qhi, int64_t q, int64_t len, int64_t& lo,
                         int64_t& hi) {
  lo = qlo - q;
  hi = qhi - q;
  lo = lo < 0 ? 0 : lo < len ? lo : len;
  hi = hi < lo ? lo : hi < len ? hi : len;
}

// B panels of the forward / gather-backward GEMM over a batch of images: row k (k < kc) reads
// planes[k] + n*img_stride (Hs x Ws, or nullptr for zeros) at (jp*a_h + bh[k], jq*a_w + bw[k])
// for output j = (n*Po + jp)*Qo + jq in [j0, j0 + nc) (jp < Po: the flattened (image, p, q)
// grid, so a panel may straddle two images); written as NR-column panels (panel p at
// dst + p*kc*nr), zero-padded. Po = INT64_MAX (never reached) is the single-image form.
// Rows in chunks of kChunk (their column bounds on the stack); per chunk one walk over the
// segments (output row runs inside one panel), each packed for every row of the chunk.
inline void im2col_batch_impl(const float* const* planes, const int64_t* bh, const int64_t* bw,
                              int64_t kc, int64_t img_stride, int64_t j0, int64_t nc, int64_t Po,
                              int64_t Qo, int64_t Hs, int64_t Ws, int64_t a_h, int64_t a_w,
                              float* dst, int64_t nr) {
  constexpr int64_t kChunk = 64;
  const int64_t jr0 = j0 / Qo, jq0 = j0 % Qo;  // output row of the whole grid, column
  const int64_t n0 = jr0 / Po, jp0 = jr0 % Po;
  int64_t qlo[kChunk], qhi[kChunk];
  for (int64_t c0 = 0; c0 < kc; c0 += kChunk) {
    const int64_t c1 = kc - c0 < kChunk ? kc : c0 + kChunk;
    for (int64_t k = c0; k < c1; ++k) row_bounds(Ws, bw[k], a_w, qlo[k - c0], qhi[k - c0]);
    int64_t jp = jp0, jq = jq0, lane = 0, done = 0, off = n0 * img_stride;
    float* panel = dst;
    while (done < nc) {
      int64_t len = Qo - jq;
      if (nr - lane < len) len = nr - lane;
      if (nc - done < len) len = nc - done;
      for (int64_t k = c0; k < c1; ++k) {
        const int64_t h = jp * a_h + bh[k];
        const float* plane = planes[k];
        int64_t lo = len, hi = len;
        const float* row = nullptr;
        if (plane && h >= 0 && h < Hs) {
          row = plane + off + h * Ws;
          clamp_bounds(qlo[k - c0], qhi[k - c0], jq, len, lo, hi);
        }
        segment_span(panel + k * nr + lane, row, Ws, jq * a_w + bw[k], a_w, len, lo, hi);
      }
      done += len;
      lane += len;
      jq += len;
      if (jq == Qo) {
        jq = 0;
        if (++jp == Po) jp = 0, off += img_stride;
      }
      if (lane == nr) lane = 0, panel += kc * nr;
    }
    if (lane > 0)
      for (int64_t k = c0; k < c1; ++k)
        segment_span(panel + k * nr + lane, nullptr, 0, 0, 1, nr - lane, 0, 0);
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
    int64_t qlo, qhi;
    row_bounds(Ws, bw[i], a_w, qlo, qhi);
    int64_t k = 0, n = k0 / PQ, pq = k0 % PQ;
    int64_t op = pq / Q, oq = pq % Q;
    while (k < kc) {
      const int64_t len = Q - oq < kc - k ? Q - oq : kc - k;
      const int64_t h = op * a_h + bh[i];
      int64_t lo = len, hi = len;
      const float* row = nullptr;
      if (h >= 0 && h < Hs) {
        row = planes[i] + n * img_stride + h * Ws;
        clamp_bounds(qlo, qhi, oq, len, lo, hi);
      }
      segment_span(t + k, row, Ws, oq * a_w + bw[i], a_w, len, lo, hi);
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
