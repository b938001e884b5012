// maxpool2d_impl.h -- the ISA-neutral parts of max pooling, included INSIDE the anonymous namespace
// of avx2/maxpool2d_avx2.cpp and avx512/maxpool2d_avx512.cpp (each gets its own internal copy:
// no weak symbol that the linker could share between ISA and baseline code). The including file
// includes <climits>, <cstring> and <limits> first and defines, after this include,
//   template <Load L, bool kIdx, int KW>
//   void pool_plane(const float* x, float* y, int64_t* idx, const Pool2dParams& p, int64_t qa,
//                   int64_t qb);   // the whole plane, interior columns [qa, qb) vectorised

// No std::min / std::isnan / numeric_limits calls in the ISA files: in an unoptimised build
// they are emitted as weak out-of-line copies, and the linker may keep an ISA file's
// VEX-encoded copy for baseline callers too (BUILD-NOTES). These helpers are local to the ISA
// namespace.
constexpr float kNegInf = -std::numeric_limits<float>::infinity();  // constant, never a call
inline int64_t imin(int64_t a, int64_t b) { return a < b ? a : b; }
inline bool is_nan(float v) { return v != v; }

inline int64_t first_in_bounds(int64_t i0, int64_t dil) {
  return i0 < 0 ? i0 + ((-i0 + dil - 1) / dil) * dil : i0;
}

// One window, PyTorch's scalar loop; rows [h0, h1) (h0 already in bounds; may be empty).
inline void pool_window_scalar(const float* x, int64_t W, int64_t h0, int64_t h1, int64_t dh,
                               int64_t ws, int64_t kw, int64_t dw, float* yo, int64_t* io) {
  const int64_t w1 = imin(ws + (kw - 1) * dw + 1, W);
  const int64_t w0 = first_in_bounds(ws, dw);
  float maxval = kNegInf;
  int64_t maxidx = -1;
  if (h0 < h1 && w0 < w1) {
    maxidx = h0 * W + w0;
    for (int64_t h = h0; h < h1; h += dh) {
      const float* row = x + h * W;
      for (int64_t w = w0; w < w1; w += dw) {
        const float v = row[w];
        if (v > maxval || is_nan(v)) {
          maxval = v;
          maxidx = h * W + w;
        }
      }
    }
  }
  *yo = maxval;
  if (io) *io = maxidx;
}

enum class Load { unit, pair, gather };

template <Load L, bool kIdx, int KW>
void pool_plane(const float* x, float* y, int64_t* idx, const Pool2dParams& p, int64_t qa,
                int64_t qb);

// Scalar windows q in [q0, q1) of one output row.
inline void pool_row_scalar(const float* x, int64_t W, int64_t h0, int64_t h1, int64_t dh,
                            int64_t kw, int64_t dw, int64_t sw, int64_t pw, int64_t q0,
                            int64_t q1, float* yr, int64_t* ir) {
  for (int64_t q = q0; q < q1; ++q)
    pool_window_scalar(x, W, h0, h1, dh, q * sw - pw, kw, dw, yr + q, ir ? ir + q : nullptr);
}

template <Load L, bool kIdx>
void pool_plane_kw(const float* x, float* y, int64_t* idx, const Pool2dParams& p, int64_t qa,
                   int64_t qb) {
  if (p.kw == 2) {
    pool_plane<L, kIdx, 2>(x, y, idx, p, qa, qb);
  } else if (p.kw == 3) {
    pool_plane<L, kIdx, 3>(x, y, idx, p, qa, qb);
  } else {
    pool_plane<L, kIdx, 0>(x, y, idx, p, qa, qb);
  }
}

template <bool kIdx>
void pool_plane_dispatch(const float* x, float* y, int64_t* idx, const Pool2dParams& p,
                         int64_t qa, int64_t qb) {
  if (p.stride_w == 1) {
    pool_plane_kw<Load::unit, kIdx>(x, y, idx, p, qa, qb);
  } else if (p.stride_w == 2) {
    pool_plane_kw<Load::pair, kIdx>(x, y, idx, p, qa, qb);
  } else {
    pool_plane_kw<Load::gather, kIdx>(x, y, idx, p, qa, qb);
  }
}

// The whole forward: interior columns found once, then the template for this geometry.
inline void maxpool2d_fwd_impl(const float* x, float* y, int64_t* idx, const Pool2dParams& p) {
  const int64_t H = p.H, W = p.W, Q = p.Q;
  const int64_t kw = p.kw, sw = p.stride_w, pw = p.pad_w, dw = p.dil_w;
  // Interior columns: ws = q*sw - pw >= 0 and ws + (kw-1)*dw <= W-1.
  const int64_t qa = imin((pw + sw - 1) / sw, Q);
  const int64_t last = W - 1 + pw - (kw - 1) * dw;
  int64_t qb = last >= 0 ? imin(last / sw + 1, Q) : 0;
  const bool vec_ok = W > 0 && H <= INT_MAX / W && sw <= (int64_t{1} << 26);
  if (!vec_ok || qb <= qa) qb = qa;  // everything scalar
  if (idx) {
    pool_plane_dispatch<true>(x, y, idx, p, qa, qb);
  } else {
    pool_plane_dispatch<false>(x, y, idx, p, qa, qb);
  }
}

#include "cpu/maxpool2d_scatter.h"

// 2x2 windows of stride 2 tiling the plane exactly (no padding or dilation, H = 2P, W = 2Q):
// every element belongs to one window, so the scatter-add is a plain unpooling.
inline bool tiled_2x2(const Pool2dParams& p) {
  return p.kh == 2 && p.kw == 2 && p.stride_h == 2 && p.stride_w == 2 && p.pad_h == 0 &&
         p.pad_w == 0 && p.dil_h == 1 && p.dil_w == 1 && p.H == 2 * p.P && p.W == 2 * p.Q;
}
