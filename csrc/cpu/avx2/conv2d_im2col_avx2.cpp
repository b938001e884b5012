// conv2d_im2col_avx2.cpp -- conv2d's implicit-im2col packers (conv2d_im2col_impl.h), AVX2.
// conv2d_im2col: B panels (kc x nr) of the forward / gather GEMM; conv2d_im2col_wgrad: the
// weight gradient's transposed B panel (im2col rows, then a block transpose).
// Segment copy (dst[t] = row[w0 + t*ws], t < len, zeros outside the row), 8 outputs a vector:
//  * ws = 1: one 8-lane load (maskload of the in-bounds part at the segment's ends);
//  * ws = 2: the 16 floats under the 8 outputs as two loads, the even lanes picked by
//    _mm256_shuffle_ps(a, b, 0x88) (a0 a2 b0 b2 | a4 a6 b4 b6) and _mm256_permute4x64_pd(0xD8)
//    (a0 a2 a4 a6 b0 b2 b4 b6): 2 loads + 2 shuffles + 1 store per 8 outputs against 8 scalar
//    loads + 8 scalar stores (stride-2 ResNet downsampling: 3x3/2 and 1x1/2);
//  * 3 <= ws <= 4: ws loads, each _mm256_permutevar8x32_ps'd by the index (ws*i) & 7 and blended
//    into lane i where (ws*i) >> 3 is that load's number (3 ops per 8-float load: <= 12 per 8
//    outputs, still below the scalar 16);
//  * ws > 4: scalar (the permutes would cost more than the scalar copy; AVX2 gathers are slow).
// Loads are unmasked only where all 8*ws floats under them lie in the row; otherwise masked to
// the floats from the first to the last in-bounds output ([a*ws, (b-1)*ws]), so nothing outside
// the row is read (masked-off lanes are never read and come back 0, which is the padding value;
// the permutes only move values: the packed bits equal the generic copy's).
#include <immintrin.h>

#include "cpu/kernels.h"

namespace fastcnn::cpu::avx2 {
namespace {

inline __m256i below(int64_t n) {  // lanes [0, n) set
  const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  const int c = n <= 0 ? 0 : n >= 8 ? 8 : static_cast<int>(n);
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(c), idx);
}

inline __m256i between(int64_t a, int64_t b) {  // lanes [a, b) set
  return _mm256_andnot_si256(below(a), below(b));
}

#include "cpu/conv2d_im2col_impl.h"

constexpr int64_t kMaxPermStride = 4;  // widest stride gathered by permutes (above: scalar)

// 8 outputs of a stride-ws window (ws <= kMaxPermStride): lane i = src[i*ws] for i in [a, b),
// 0 elsewhere (0 <= a < b <= 8). `full`: all of src[0, 8*ws) lies in the row (unmasked loads);
// else only src[a*ws .. (b-1)*ws] is read. idx / sel: (ws*i) & 7 and (ws*i) >> 3 (ws >= 3).
inline __m256 strided8(const float* src, int64_t ws, int64_t a, int64_t b, bool full,
                       __m256i idx, __m256i sel) {
  const int64_t e0 = a * ws, e1 = (b - 1) * ws + 1;  // floats [e0, e1) of the span are read
  if (ws == 1) return full ? _mm256_loadu_ps(src) : _mm256_maskload_ps(src, between(e0, e1));
  if (ws == 2) {
    __m256 x, y;
    if (full) {
      x = _mm256_loadu_ps(src);
      y = _mm256_loadu_ps(src + 8);
    } else {
      x = _mm256_maskload_ps(src, between(e0, e1));
      y = e1 > 8 ? _mm256_maskload_ps(src + 8, between(e0 - 8, e1 - 8)) : _mm256_setzero_ps();
    }
    const __m256 even = _mm256_shuffle_ps(x, y, 0x88);  // x0 x2 y0 y2 | x4 x6 y4 y6
    return _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(even), 0xD8));
  }
  __m256 r = _mm256_setzero_ps();
  for (int64_t v = e0 >> 3; v * 8 < e1; ++v) {
    const __m256 x = full ? _mm256_loadu_ps(src + 8 * v)
                          : _mm256_maskload_ps(src + 8 * v, between(e0 - 8 * v, e1 - 8 * v));
    const __m256 pick = _mm256_castsi256_ps(
        _mm256_cmpeq_epi32(sel, _mm256_set1_epi32(static_cast<int>(v))));
    r = _mm256_blendv_ps(r, _mm256_permutevar8x32_ps(x, idx), pick);
  }
  return r;
}

inline void segment(float* dst, const float* row, int64_t W, int64_t w0, int64_t ws, int64_t len) {
  int64_t lo, hi;
  segment_bounds(row, W, w0, ws, len, lo, hi);
  if (ws > kMaxPermStride) {
    for (int64_t t = 0; t < lo; ++t) dst[t] = 0.0f;
    for (int64_t t = lo; t < hi; ++t) dst[t] = row[w0 + t * ws];
    for (int64_t t = hi; t < len; ++t) dst[t] = 0.0f;
    return;
  }
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  const __m256i pos = _mm256_mullo_epi32(lane, _mm256_set1_epi32(static_cast<int>(ws)));
  const __m256i idx = _mm256_and_si256(pos, _mm256_set1_epi32(7));
  const __m256i sel = _mm256_srli_epi32(pos, 3);
  for (int64_t t = 0; t < len; t += 8) {
    const int64_t a = lo - t > 0 ? lo - t : 0, b = hi - t < 8 ? hi - t : 8;
    __m256 v = _mm256_setzero_ps();
    if (a < b) {
      const int64_t first = w0 + t * ws;  // the row column under lane 0
      const bool full = a == 0 && b == 8 && first + 8 * ws <= W;
      v = strided8(row + first, ws, a, b, full, idx, sel);
    }
    if (len - t >= 8) _mm256_storeu_ps(dst + t, v);
    else _mm256_maskstore_ps(dst + t, below(len - t), v);
  }
}

}  // namespace

void conv2d_im2col(const float* const* planes, const int64_t* bh, const int64_t* bw, int64_t kc,
                   int64_t j0, int64_t nc, int64_t Qo, int64_t Hs, int64_t Ws, int64_t a_h,
                   int64_t a_w, float* dst, int64_t nr) {
  im2col_impl(planes, bh, bw, kc, j0, nc, Qo, Hs, Ws, a_h, a_w, dst, nr);
}

void conv2d_im2col_batch(const float* const* planes, const int64_t* bh, const int64_t* bw,
                         int64_t kc, int64_t img_stride, int64_t j0, int64_t nc, int64_t P,
                         int64_t Q, int64_t Hs, int64_t Ws, int64_t a_h, int64_t a_w, float* dst,
                         int64_t nr) {
  im2col_batch_impl(planes, bh, bw, kc, img_stride, j0, nc, P, Q, Hs, Ws, a_h, a_w, dst, nr);
}

void conv2d_im2col_wgrad(const float* const* planes, const int64_t* bh, const int64_t* bw,
                         int64_t cols, int64_t img_stride, int64_t k0, int64_t kc, int64_t P,
                         int64_t Q, int64_t Hs, int64_t Ws, int64_t a_h, int64_t a_w, float* dst,
                         int64_t nr, float* scratch) {
  im2col_wgrad_two_pass(planes, bh, bw, cols, img_stride, k0, kc, P, Q, Hs, Ws, a_h, a_w, dst, nr,
                        scratch);
}

}  // namespace fastcnn::cpu::avx2
