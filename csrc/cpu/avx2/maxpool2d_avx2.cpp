// maxpool2d_avx2.cpp -- 2-D max pooling forward and backward on one (n, c) plane, AVX2.
//   maxpool2d_fwd: x (H, W) -> y (P, Q), idx (P, Q) = h*W + w of the chosen element (idx may
//                  be null)
//   maxpool2d_bwd: dx (H*W) = 0, then dx[idx[i]] += dy[i] for i = 0 .. P*Q-1 in order
// Semantics: exactly generic/maxpool2d.cpp (PyTorch's CPU loop: taps in row-major order,
// `v > max || isnan(v)` takes the tap, start from -inf and the first in-bounds index; an empty
// window gives -inf / -1 and the backward skips indices outside [0, H*W)).
// Forward approach: for each output row p the row range [h0, h1) is found once. Columns q whose
// whole window lies inside [0, W) ("interior", one contiguous range [qa, qb)) go 8 at a time,
// two blocks of 8 interleaved while 16 are left (independent compare chains). Per tap (h, j)
// one vector of x[h*W + q*sw - pw + j*dw], q = q..q+7, loaded as
//   stride 1: one unaligned load (vmaskmovps for a tail);
//   stride 2: two loads (16 floats; the second a vmaskmovps that stops at the last needed one)
//             + shufps/vpermpd of the even lanes;
//   other:    a masked vgatherdps with offsets lane*sw;
// then take = cmp_gt_oq(v, best) | cmp_unord(v, v), and blends of the value and of the int32
// index h*W + w (vectors only when H*W < 2^31; otherwise, or for huge strides, the scalar
// loop), widened to int64 on the store (vpmaskmovq for a tail). The same tests in the same
// order as the scalar loop, so the result is bit for bit generic's. Border columns (windows cut
// by the padding) go scalar. Templates: load kind x with/without idx x kernel width 2, 3 or any.
// Napkin (2x2/2, 112x112 plane, 3136 outputs = 392 vectors): per vector 4 taps x (2 loads,
// shuffle + permute, 2 compares, or, 2 blends) ~ 30 uops -> ~12k uops ~ 3 us; measured ~2.6 us
// a plane with idx (0.8 ns an output), ~1.8 us without, in L2.
// Backward: 2x2 / stride-2 windows tiling the plane unpool 4 windows at a time, each dx element
// written once (unpool_2x2); anything else is a memset + a scalar scatter-add loop (overlapping
// windows collide; AVX2 has no scatter anyway; the loop is ~1 cycle per output).
#include <immintrin.h>

#include <climits>
#include <cstring>
#include <limits>

#include "cpu/kernels.h"

namespace fastcnn::cpu::avx2 {
namespace {

#include "cpu/maxpool2d_impl.h"

inline __m256i lanes_below(int64_t r) {  // int32 lanes [0, r) set, 0 <= r <= 8
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(r)),
                            _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
inline __m256i lanes_below64(int64_t r) {  // int64 lanes [0, r) set, 0 <= r <= 4
  return _mm256_cmpgt_epi64(_mm256_set1_epi64x(r), _mm256_setr_epi64x(0, 1, 2, 3));
}

// Lane masks of a block of n <= 8 interior columns: m = lanes [0, n); for stride 2, lo / hi
// cover the floats 0 .. 2n-2 (relative to the window start of lane 0) in the two loaded vectors.
struct BlockMasks {
  int64_t n;
  __m256i m, lo, hi, m64lo, m64hi;
};

inline BlockMasks block_masks(int64_t n) {
  const int64_t e = n > 0 ? 2 * n - 1 : 0;  // n == 0: the unused tail of a row without one
  return {n,
          lanes_below(n),
          lanes_below(imin(e, 8)),
          lanes_below(e > 8 ? e - 8 : 0),
          lanes_below64(imin(n, 4)),
          lanes_below64(n > 4 ? n - 4 : 0)};
}

// x[src + lane*sw] for the lanes of bm (other lanes: don't care).
template <Load L>
__attribute__((always_inline)) inline __m256 load_tap(const float* src, const BlockMasks& bm,
                                                      __m256i lane_off) {
  if constexpr (L == Load::unit) {
    return bm.n == 8 ? _mm256_loadu_ps(src) : _mm256_maskload_ps(src, bm.m);
  } else if constexpr (L == Load::pair) {
    const __m256 lo = bm.n == 8 ? _mm256_loadu_ps(src) : _mm256_maskload_ps(src, bm.lo);
    const __m256 hi = bm.n > 4 ? _mm256_maskload_ps(src + 8, bm.hi) : _mm256_setzero_ps();
    // [lo0 lo2 hi0 hi2 | lo4 lo6 hi4 hi6] -> [lo0 lo2 lo4 lo6 hi0 hi2 hi4 hi6]
    const __m256 sh = _mm256_shuffle_ps(lo, hi, _MM_SHUFFLE(2, 0, 2, 0));
    return _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(sh), _MM_SHUFFLE(3, 1, 2, 0)));
  } else {
    return _mm256_mask_i32gather_ps(_mm256_setzero_ps(), src, lane_off, _mm256_castsi256_ps(bm.m),
                                    4);
  }
}

// U blocks of 8 interior columns starting at window column ws (block u: ws + 8*u*sw), all taps
// of one window row before the next; U independent chains hide the compare -> blend latency.
// KW > 0: the kernel width as a constant (2 and 3 are the common ones), else kw_rt.
template <Load L, bool kIdx, int U, int KW>
__attribute__((always_inline)) inline void pool_blocks(const float* x, int64_t W, int64_t h0,
                                                       int64_t h1, int64_t dh, int64_t kw_rt,
                                                       int64_t dw, int64_t sw, int64_t ws,
                                                       const BlockMasks* bm, __m256i lane_off,
                                                       float* yq, int64_t* iq) {
  const int64_t kw = KW > 0 ? KW : kw_rt;
  const __m256i dwv = _mm256_set1_epi32(static_cast<int>(dw));
  const __m256i rowstep = _mm256_set1_epi32(static_cast<int>(W * dh));  // mod 2^32: exact in use
  __m256 best[U];
  __m256i besti[U], row_iv[U];
  for (int u = 0; u < U; ++u) {
    best[u] = _mm256_set1_ps(kNegInf);
    row_iv[u] =
        _mm256_add_epi32(_mm256_set1_epi32(static_cast<int>(h0 * W + ws + 8 * u * sw)), lane_off);
    besti[u] = row_iv[u];
  }
  for (int64_t h = h0; h < h1; h += dh) {
    const float* src = x + h * W + ws;
    __m256i cur[U];
    for (int u = 0; u < U; ++u) cur[u] = row_iv[u];
    for (int64_t j = 0; j < kw; ++j, src += dw) {
      for (int u = 0; u < U; ++u) {
        const __m256 v = load_tap<L>(src + 8 * u * sw, bm[u], lane_off);
        const __m256 take =
            _mm256_or_ps(_mm256_cmp_ps(v, best[u], _CMP_GT_OQ), _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
        best[u] = _mm256_blendv_ps(best[u], v, take);
        if constexpr (kIdx) {
          besti[u] = _mm256_blendv_epi8(besti[u], cur[u], _mm256_castps_si256(take));
          cur[u] = _mm256_add_epi32(cur[u], dwv);
        }
      }
    }
    if constexpr (kIdx)
      for (int u = 0; u < U; ++u) row_iv[u] = _mm256_add_epi32(row_iv[u], rowstep);
  }
  for (int u = 0; u < U; ++u) {
    const bool full = bm[u].n == 8;
    if (full) {
      _mm256_storeu_ps(yq + 8 * u, best[u]);
    } else {
      _mm256_maskstore_ps(yq + 8 * u, bm[u].m, best[u]);
    }
    if constexpr (kIdx) {
      const __m256i lo = _mm256_cvtepi32_epi64(_mm256_castsi256_si128(besti[u]));
      const __m256i hi = _mm256_cvtepi32_epi64(_mm256_extracti128_si256(besti[u], 1));
      long long* dst = reinterpret_cast<long long*>(iq + 8 * u);
      if (full) {
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst), lo);
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + 4), hi);
      } else {
        _mm256_maskstore_epi64(dst, bm[u].m64lo, lo);
        if (bm[u].n > 4) _mm256_maskstore_epi64(dst + 4, bm[u].m64hi, hi);
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
  const __m256i lane_off = _mm256_mullo_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
                                              _mm256_set1_epi32(static_cast<int>(sw)));
  const BlockMasks full[2] = {block_masks(8), block_masks(8)};
  const int64_t n_tail = (qb - qa) % 8;
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
    for (; q + 16 <= qb; q += 16)
      pool_blocks<L, kIdx, 2, KW>(x, W, h0, h1, dh, kw, dw, sw, q * sw - pw, full, lane_off,
                                  yr + q, kIdx ? ir + q : nullptr);
    for (; q < q_tail; q += 8)
      pool_blocks<L, kIdx, 1, KW>(x, W, h0, h1, dh, kw, dw, sw, q * sw - pw, full, lane_off,
                                  yr + q, kIdx ? ir + q : nullptr);
    if (n_tail)
      pool_blocks<L, kIdx, 1, KW>(x, W, h0, h1, dh, kw, dw, sw, q_tail * sw - pw, &tail,
                                  lane_off, yr + q_tail, kIdx ? ir + q_tail : nullptr);
    pool_row_scalar(x, W, h0, h1, dh, kw, dw, sw, pw, qb, Q, yr, ir);
  }
}

// Backward of 2x2 / stride-2 windows tiling the plane (tiled_2x2; see maxpool2d_avx512.cpp's
// unpool_2x2 for the contract): 4 windows at a time, each index matched against its own window's
// four positions with 64-bit compares, each dx element written once with 0.0f + dy or 0; false
// (the caller then scatters) as soon as an index lies outside its window. Leftover windows of a
// row (Q % 4) go through the same test one at a time.
bool unpool_2x2(const float* dy, const int64_t* idx, float* dx, int64_t P, int64_t Q) {
  const int64_t W = 2 * Q;
  const __m256i lane2 = _mm256_setr_epi64x(0, 2, 4, 6);
  const __m256i one = _mm256_set1_epi64x(1), wv = _mm256_set1_epi64x(W);
  const __m256i w1 = _mm256_set1_epi64x(W + 1);
  const __m256i low32 = _mm256_setr_epi32(0, 2, 4, 6, 0, 2, 4, 6);  // int64 lane -> int32 lane
  const __m128 zero = _mm_setzero_ps();
  for (int64_t p = 0; p < P; ++p) {
    const float* dyr = dy + p * Q;
    const int64_t* ir = idx + p * Q;
    float* r0 = dx + 2 * p * W;
    float* r1 = r0 + W;
    int64_t q = 0;
    for (; q + 4 <= Q; q += 4) {
      const __m256i base = _mm256_add_epi64(_mm256_set1_epi64x(2 * p * W + 2 * q), lane2);
      const __m256i rel =
          _mm256_sub_epi64(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(ir + q)), base);
      const __m256i m00 = _mm256_cmpeq_epi64(rel, _mm256_setzero_si256());
      const __m256i m01 = _mm256_cmpeq_epi64(rel, one);
      const __m256i m10 = _mm256_cmpeq_epi64(rel, wv);
      const __m256i m11 = _mm256_cmpeq_epi64(rel, w1);
      const __m256i any = _mm256_or_si256(_mm256_or_si256(m00, m01), _mm256_or_si256(m10, m11));
      if (_mm256_movemask_pd(_mm256_castsi256_pd(any)) != 0xF) return false;
      const __m128 v = _mm_add_ps(zero, _mm_loadu_ps(dyr + q));
      auto pick = [&](__m256i m) {  // v where the int64 mask lane is set
        const __m128i m32 = _mm256_castsi256_si128(_mm256_permutevar8x32_epi32(m, low32));
        return _mm_and_ps(v, _mm_castsi128_ps(m32));
      };
      const __m128 e00 = pick(m00), e01 = pick(m01), e10 = pick(m10), e11 = pick(m11);
      _mm_storeu_ps(r0 + 2 * q, _mm_unpacklo_ps(e00, e01));
      _mm_storeu_ps(r0 + 2 * q + 4, _mm_unpackhi_ps(e00, e01));
      _mm_storeu_ps(r1 + 2 * q, _mm_unpacklo_ps(e10, e11));
      _mm_storeu_ps(r1 + 2 * q + 4, _mm_unpackhi_ps(e10, e11));
    }
    for (; q < Q; ++q) {
      const int64_t rel = ir[q] - (2 * p * W + 2 * q);
      if (rel != 0 && rel != 1 && rel != W && rel != W + 1) return false;
      const float v = 0.0f + dyr[q];
      r0[2 * q] = rel == 0 ? v : 0.0f;
      r0[2 * q + 1] = rel == 1 ? v : 0.0f;
      r1[2 * q] = rel == W ? v : 0.0f;
      r1[2 * q + 1] = rel == W + 1 ? v : 0.0f;
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

}  // namespace fastcnn::cpu::avx2
