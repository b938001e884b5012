// maxpool2d_avx512.cpp -- 2-D max pooling forward and backward on one (n, c) plane, AVX-512.
//   maxpool2d_fwd: x (H, W) -> y (P, Q), idx (P, Q) = h*W + w of the chosen element (idx may
//                  be null)
//   maxpool2d_bwd: dx (H*W) = 0, then dx[idx[i]] += dy[i] for i = 0 .. P*Q-1 in order
// Semantics: exactly generic/maxpool2d.cpp (PyTorch's CPU loop: taps in row-major order,
// `v > max || isnan(v)` takes the tap, start from -inf and the first in-bounds index; an empty
// window gives -inf / -1 and the backward skips indices outside [0, H*W)).
// Forward approach: for each output row p the row range [h0, h1) is found once. Columns q whose
// whole window lies inside [0, W) ("interior", one contiguous range [qa, qb)) go 16 at a time,
// two blocks of 16 interleaved while 32 are left (independent compare chains). Per tap (h, j)
// one vector of x[h*W + q*sw - pw + j*dw], q = q..q+15, loaded as
//   stride 1: one masked unaligned load;
//   stride 2: two masked loads (32 floats, never past the last needed one) + vpermt2ps of the
//             even lanes;
//   other:    a masked vgatherdps with offsets lane*sw;
// then take = cmp_gt_oq(v, best) | cmp_unord(v, v), and masked moves of the value and of the
// int32 index h*W + w (vectors only when H*W < 2^31; otherwise, or for huge strides, the scalar
// loop), widened to int64 on the masked store. The same tests in the same order as the scalar
// loop, so the result is bit for bit generic's. Border columns (windows cut by the padding) go
// scalar. Templates: load kind x with/without idx x kernel width 2, 3 or any.
// Napkin (2x2/2, 112x112 plane, 3136 outputs = 196 vectors): per vector 4 taps x (2 loads,
// 1 vpermt2ps, 2 vcmpps->k on port 5) ~ 12 port-5 uops, + 3 for the int64 widening ~ 5 ns;
// measured ~1.8 us a plane with idx (0.55 ns an output), ~1.2 us without, in L2.
// Backward: 2x2 / stride-2 windows tiling the plane (the usual CNN pooling) unpool 16 windows at a
// time, writing each dx element once (unpool_2x2); anything else is a memset + a scalar
// scatter-add loop (overlapping windows collide, so a vector scatter would need conflict
// detection; the loop is ~1 cycle per output anyway).
#include "cpu/avx512/intrin.h"

#include <climits>
#include <cstring>
#include <limits>

#include "cpu/kernels.h"

namespace fastcnn::cpu::avx512 {
namespace {

#include "cpu/maxpool2d_impl.h"

// Lane masks of a block of n <= 16 interior columns: m = lanes [0, n); for stride 2, lo / hi
// cover the floats 0 .. 2n-2 (relative to the window start of lane 0) in the two loaded vectors.
struct BlockMasks {
  __mmask16 m, lo, hi;
};

inline BlockMasks block_masks(int64_t n) {
  const int64_t e = n > 0 ? 2 * n - 1 : 0;  // n == 0: the unused tail of a row without one
  return {static_cast<__mmask16>((1u << n) - 1u),
          static_cast<__mmask16>(e >= 16 ? 0xFFFFu : (1u << e) - 1u),
          static_cast<__mmask16>(e > 16 ? (1u << (e - 16)) - 1u : 0u)};
}

// x[src + lane*sw] for the lanes of bm (other lanes: don't care).
template <Load L>
__attribute__((always_inline)) inline __m512 load_tap(const float* src, const BlockMasks& bm,
                                                      __m512i lane_off) {
  if constexpr (L == Load::unit) {
    return _mm512_maskz_loadu_ps(bm.m, src);
  } else if constexpr (L == Load::pair) {
    const __m512i even =
        _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const __m512 lo = _mm512_maskz_loadu_ps(bm.lo, src);
    const __m512 hi = bm.hi ? _mm512_maskz_loadu_ps(bm.hi, src + 16) : _mm512_setzero_ps();
    return _mm512_permutex2var_ps(lo, even, hi);
  } else {
    return _mm512_mask_i32gather_ps(_mm512_setzero_ps(), bm.m, lane_off, src, 4);
  }
}

// U blocks of 16 interior columns starting at window column ws (block u: ws + 16*u*sw), all
// taps of one window row before the next; U independent chains hide the compare -> kor ->
// masked-move latency (~6 cycles a tap). KW > 0: the kernel width as a constant, else kw_rt.
template <Load L, bool kIdx, int U, int KW>
__attribute__((always_inline)) inline void pool_blocks(const float* x, int64_t W, int64_t h0,
                                                       int64_t h1, int64_t dh, int64_t kw_rt,
                                                       int64_t dw, int64_t sw, int64_t ws,
                                                       const BlockMasks* bm, __m512i lane_off,
                                                       float* yq, int64_t* iq) {
  const int64_t kw = KW > 0 ? KW : kw_rt;
  const __m512i dwv = _mm512_set1_epi32(static_cast<int>(dw));
  const __m512i rowstep = _mm512_set1_epi32(static_cast<int>(W * dh));  // mod 2^32: exact in use
  __m512 best[U];
  __m512i besti[U], row_iv[U];
  for (int u = 0; u < U; ++u) {
    best[u] = _mm512_set1_ps(kNegInf);
    row_iv[u] = _mm512_add_epi32(_mm512_set1_epi32(static_cast<int>(h0 * W + ws + 16 * u * sw)),
                                 lane_off);
    besti[u] = row_iv[u];
  }
  for (int64_t h = h0; h < h1; h += dh) {
    const float* src = x + h * W + ws;
    __m512i cur[U];
    for (int u = 0; u < U; ++u) cur[u] = row_iv[u];
    for (int64_t j = 0; j < kw; ++j, src += dw) {
      for (int u = 0; u < U; ++u) {
        const __m512 v = load_tap<L>(src + 16 * u * sw, bm[u], lane_off);
        const __mmask16 take = _mm512_cmp_ps_mask(v, best[u], _CMP_GT_OQ) |
                               _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
        best[u] = _mm512_mask_mov_ps(best[u], take, v);
        if constexpr (kIdx) {
          besti[u] = _mm512_mask_mov_epi32(besti[u], take, cur[u]);
          cur[u] = _mm512_add_epi32(cur[u], dwv);
        }
      }
    }
    if constexpr (kIdx)
      for (int u = 0; u < U; ++u) row_iv[u] = _mm512_add_epi32(row_iv[u], rowstep);
  }
  for (int u = 0; u < U; ++u) {
    _mm512_mask_storeu_ps(yq + 16 * u, bm[u].m, best[u]);
    if constexpr (kIdx) {
      const __m512i lo = _mm512_cvtepi32_epi64(_mm512_castsi512_si256(besti[u]));
      _mm512_mask_storeu_epi64(iq + 16 * u, static_cast<__mmask8>(bm[u].m & 0xFF), lo);
      if (bm[u].m >> 8) {
        const __m512i hi = _mm512_cvtepi32_epi64(_mm512_extracti64x4_epi64(besti[u], 1));
        _mm512_mask_storeu_epi64(iq + 16 * u + 8, static_cast<__mmask8>(bm[u].m >> 8), hi);
      }
    }
  }
}

// The whole plane; interior columns [qa, qb) vectorised (qa == qb: all scalar).
template <Load L, bool kIdx, int KW>
void pool_plane(const float* x, float* y, int64_t* idx, const Pool2dParams& p, int64_t qa,
                int64_t qb) {
  const int64_t H = p.H, W = p.W, P = p.P, Q = p.Q;
  const int64_t kw = p.kw, sw = p.stride_w, pw = p.pad_w, dw = p.dil_w, dh = p.dil_h;
  const __m512i lane_off =
      _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                         _mm512_set1_epi32(static_cast<int>(sw)));
  const BlockMasks full[2] = {block_masks(16), block_masks(16)};
  const int64_t n_tail = (qb - qa) % 16;
  const BlockMasks tail = block_masks(n_tail);
  const int64_t q_tail = qb - n_tail;
  for (int64_t op = 0; op < P; ++op) {
    const int64_t hs = op * p.stride_h - p.pad_h;
    const int64_t h1 = imin(hs + (p.kh - 1) * dh + 1, H);
    const int64_t h0 = first_in_bounds(hs, dh);
    float* yr = y + op * Q;
    int64_t* ir = kIdx ? idx + op * Q : nullptr;
    if (h0 >= h1) {  // no row of this window is inside the input (dilation only)
      for (int64_t q = 0; q < Q; ++q) {
        yr[q] = kNegInf;
        if constexpr (kIdx) ir[q] = -1;
      }
      continue;
    }
    pool_row_scalar(x, W, h0, h1, dh, kw, dw, sw, pw, 0, qa, yr, ir);
    int64_t q = qa;
    for (; q + 32 <= qb; q += 32)
      pool_blocks<L, kIdx, 2, KW>(x, W, h0, h1, dh, kw, dw, sw, q * sw - pw, full, lane_off, yr + q,
                              kIdx ? ir + q : nullptr);
    for (; q < q_tail; q += 16)
      pool_blocks<L, kIdx, 1, KW>(x, W, h0, h1, dh, kw, dw, sw, q * sw - pw, full, lane_off, yr + q,
                              kIdx ? ir + q : nullptr);
    if (n_tail)
      pool_blocks<L, kIdx, 1, KW>(x, W, h0, h1, dh, kw, dw, sw, q_tail * sw - pw, &tail, lane_off,
                              yr + q_tail, kIdx ? ir + q_tail : nullptr);
    pool_row_scalar(x, W, h0, h1, dh, kw, dw, sw, pw, qb, Q, yr, ir);
  }
}

// Backward of 2x2 / stride-2 windows tiling the plane (tiled_2x2): 16 windows at a time, each
// dx element written once, with 0.0f + dy where the window's index points at it and 0 elsewhere
// (what the scatter-add into zeros gives, -0.0 turning into +0.0). An index is matched against
// its own window's four positions with 64-bit compares, so any index outside its window (user
// indices may point anywhere) makes this return false: the caller then runs the scatter, which
// overwrites everything written here. Per 16 windows: 3 loads, 8 compares, 4 permutes, 4 stores
// of 32 floats, no read of dx (the scatter's memset + read-modify-write pass is gone).
bool unpool_2x2(const float* dy, const int64_t* idx, float* dx, int64_t P, int64_t Q) {
  const int64_t W = 2 * Q;
  const __m512i lo_perm =
      _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
  const __m512i hi_perm =
      _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
  const __m512i lane2 = _mm512_setr_epi64(0, 2, 4, 6, 8, 10, 12, 14);
  const __m512i zero_i = _mm512_setzero_si512(), one = _mm512_set1_epi64(1);
  const __m512i wv = _mm512_set1_epi64(W), w1 = _mm512_set1_epi64(W + 1);
  const __m512i sixteen = _mm512_set1_epi64(16);
  const __m512 zero = _mm512_setzero_ps();
  for (int64_t p = 0; p < P; ++p) {
    const float* dyr = dy + p * Q;
    const int64_t* ir = idx + p * Q;
    float* r0 = dx + 2 * p * W;
    float* r1 = r0 + W;
    for (int64_t q = 0; q < Q; q += 16) {
      const int64_t n = Q - q < 16 ? Q - q : 16;
      const __mmask16 m = static_cast<__mmask16>(n == 16 ? 0xFFFFu : (1u << n) - 1u);
      // rel = idx - (index of the window's top-left element), 8 windows per vector
      const __m512i b0 = _mm512_add_epi64(_mm512_set1_epi64(2 * p * W + 2 * q), lane2);
      const __m512i b1 = _mm512_add_epi64(b0, sixteen);
      const __m512i rel0 =
          _mm512_sub_epi64(_mm512_maskz_loadu_epi64(static_cast<__mmask8>(m), ir + q), b0);
      const __m512i rel1 =
          _mm512_sub_epi64(_mm512_maskz_loadu_epi64(static_cast<__mmask8>(m >> 8), ir + q + 8), b1);
      const __mmask16 m00 = _mm512_kunpackb(_mm512_cmpeq_epi64_mask(rel1, zero_i),
                                            _mm512_cmpeq_epi64_mask(rel0, zero_i));
      const __mmask16 m01 = _mm512_kunpackb(_mm512_cmpeq_epi64_mask(rel1, one),
                                            _mm512_cmpeq_epi64_mask(rel0, one));
      const __mmask16 m10 = _mm512_kunpackb(_mm512_cmpeq_epi64_mask(rel1, wv),
                                            _mm512_cmpeq_epi64_mask(rel0, wv));
      const __mmask16 m11 = _mm512_kunpackb(_mm512_cmpeq_epi64_mask(rel1, w1),
                                            _mm512_cmpeq_epi64_mask(rel0, w1));
      if (static_cast<__mmask16>((m00 | m01 | m10 | m11) & m) != m) return false;
      const __m512 v = _mm512_add_ps(zero, _mm512_maskz_loadu_ps(m, dyr + q));
      const int64_t n2 = 2 * n;
      const __mmask16 slo = static_cast<__mmask16>(n2 >= 16 ? 0xFFFFu : (1u << n2) - 1u);
      const __mmask16 shi = static_cast<__mmask16>(n2 > 16 ? (1u << (n2 - 16)) - 1u : 0u);
      const __m512 e00 = _mm512_maskz_mov_ps(m00, v), e01 = _mm512_maskz_mov_ps(m01, v);
      _mm512_mask_storeu_ps(r0 + 2 * q, slo, _mm512_permutex2var_ps(e00, lo_perm, e01));
      _mm512_mask_storeu_ps(r0 + 2 * q + 16, shi, _mm512_permutex2var_ps(e00, hi_perm, e01));
      const __m512 e10 = _mm512_maskz_mov_ps(m10, v), e11 = _mm512_maskz_mov_ps(m11, v);
      _mm512_mask_storeu_ps(r1 + 2 * q, slo, _mm512_permutex2var_ps(e10, lo_perm, e11));
      _mm512_mask_storeu_ps(r1 + 2 * q + 16, shi, _mm512_permutex2var_ps(e10, hi_perm, e11));
    }
  }
  return true;
}

}  // namespace

void maxpool2d_fwd(const float* x, float* y, int64_t* idx, const Pool2dParams& p) {
  maxpool2d_fwd_impl(x, y, idx, p);
}

bool maxpool2d_bwd(const float* dy, const int64_t* idx, float* dx, const Pool2dParams& p) {
  if (tiled_2x2(p) && unpool_2x2(dy, idx, dx, p.P, p.Q)) return true;
  return maxpool2d_bwd_scatter(dy, idx, dx, p.H * p.W, p.P * p.Q);
}

}  // namespace fastcnn::cpu::avx512
