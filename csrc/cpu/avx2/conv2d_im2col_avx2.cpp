// conv2d_im2col_avx2.cpp -- conv2d's implicit-im2col packers (conv2d_im2col_impl.h), AVX2.
// conv2d_im2col: B panels (kc x nr) of the forward / gather GEMM; conv2d_im2col_wgrad: the
// weight gradient's transposed B panel (im2col rows, then a block transpose).
// Segment copy (dst[t] = row[w0 + t*ws] for t in the in-bounds part [lo, hi), zeros elsewhere):
//  * ws = 1: one 8-lane load per 8 outputs (maskload of the in-bounds part at the ends);
//  * ws = 2, 3, 4: 8 outputs a vector from the 8*ws floats under them, wherever those all lie
//    in the row: ws = 2 two loads, _mm256_shuffle_ps(a, b, 0x88) (a0 a2 b0 b2 | a4 a6 b4 b6) and
//    _mm256_permute4x64_pd(0xD8) (a0 a2 a4 a6 b0 b2 b4 b6); ws = 3 three loads permuted by
//    (3i) & 7 and blended; ws = 4 four loads, two shuffles, one permute. The few outputs at a
//    row's ends (the window reaching past it, padding) are scalar copies and zeros: nothing
//    outside the row is read, and no masks are built for a segment of 8-16 outputs.
//  * ws > 4: scalar (more loads than outputs per vector; AVX2 gathers are slow).
// Napkin maths (Zen 3, 1 thread, ResNet's 3x3/2 and 1x1/2 packers timed alone, old and new
// interleaved): a segment of ResNet's strided layers is 8 or 16 outputs, so the per-segment work
// decides: the division-free bounds (conv2d_im2col_impl.h) and 2 loads + 2 shuffles + 1 store
// per 8 outputs (against 8 scalar loads + 8 stores) took the forward packer from ~1.1-1.4 to
// ~0.7-1.0 ns per packed float (1.3-1.6x), the weight-gradient rows 1.1-1.4x.
// The permutes only move values: the packed bits equal the generic copy's.
#include <immintrin.h>

#include "cpu/kernels.h"

namespace fastcnn::cpu::avx2 {
namespace {

// A sliding window over 8 set lanes then 8 clear ones: below(n) is one load, no broadcast.
alignas(64) constexpr int32_t kPrefix[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};

inline __m256i below(int64_t n) {  // lanes [0, n) set
  const int64_t c = n <= 0 ? 0 : n >= 8 ? 8 : n;
  return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(kPrefix + 8 - c));
}

inline __m256i between(int64_t a, int64_t b) {  // lanes [a, b) set
  return _mm256_andnot_si256(below(a), below(b));
}

#include "cpu/conv2d_im2col_impl.h"

// 8 outputs of a stride-WS window from src: lane i = src[i*WS], reading src[0, 8*WS).
template <int WS>
inline __m256 pick8(const float* src);

template <>
inline __m256 pick8<2>(const float* src) {
  const __m256 even = _mm256_shuffle_ps(_mm256_loadu_ps(src), _mm256_loadu_ps(src + 8), 0x88);
  // x0 x2 y0 y2 | x4 x6 y4 y6 -> x0 x2 x4 x6 y0 y2 y4 y6
  return _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(even), 0xD8));
}

template <>
inline __m256 pick8<3>(const float* src) {  // lanes 0-2 from load 0, 3-5 from 1, 6-7 from 2
  const __m256i idx = _mm256_setr_epi32(0, 3, 6, 1, 4, 7, 2, 5);
  const __m256 a = _mm256_permutevar8x32_ps(_mm256_loadu_ps(src), idx);
  const __m256 b = _mm256_permutevar8x32_ps(_mm256_loadu_ps(src + 8), idx);
  const __m256 c = _mm256_permutevar8x32_ps(_mm256_loadu_ps(src + 16), idx);
  return _mm256_blend_ps(_mm256_blend_ps(a, b, 0x38), c, 0xC0);
}

template <>
inline __m256 pick8<4>(const float* src) {  // lanes 2v, 2v+1 from load v (its floats 0, 4)
  const __m256 a = _mm256_shuffle_ps(_mm256_loadu_ps(src), _mm256_loadu_ps(src + 8), 0x00);
  const __m256 b = _mm256_shuffle_ps(_mm256_loadu_ps(src + 16), _mm256_loadu_ps(src + 24), 0x00);
  // a = x0 x0 y0 y0 | x4 x4 y4 y4, b likewise from z, w
  const __m256 ab = _mm256_shuffle_ps(a, b, 0x88);  // x0 y0 z0 w0 | x4 y4 z4 w4
  return _mm256_permutevar8x32_ps(ab, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

// dst[t] = row[w0 + t*WS] for t in [lo, hi), 0 for the other t < len: 8 outputs a vector while
// all 8*WS floats under them lie in the row, scalar copies at the row's ends (fewer operations
// than building masks for a window of 8 or 16 outputs).
template <int WS>
inline void span(float* dst, const float* row, int64_t W, int64_t w0, int64_t len, int64_t lo,
                 int64_t hi) {
  for (int64_t t = 0; t < lo; ++t) dst[t] = 0.0f;
  int64_t t = lo;
  for (; t + 8 <= hi && w0 + (t + 8) * WS <= W; t += 8)
    _mm256_storeu_ps(dst + t, pick8<WS>(row + w0 + t * WS));
  for (; t < hi; ++t) dst[t] = row[w0 + t * WS];
  for (t = hi; t < len; ++t) dst[t] = 0.0f;
}

__attribute__((always_inline)) inline void segment_span(float* dst, const float* row, int64_t W,
                                                        int64_t w0, int64_t ws, int64_t len,
                                                        int64_t lo, int64_t hi) {
  switch (ws) {
    case 1: {  // contiguous: one (masked at the ends) load per 8 outputs
      for (int64_t t = 0; t < len; t += 8) {
        const __m256i in = between(lo - t, hi - t);
        __m256 v = _mm256_setzero_ps();
        if (!_mm256_testz_si256(in, in)) v = _mm256_maskload_ps(row + (w0 + t), in);
        if (len - t >= 8) _mm256_storeu_ps(dst + t, v);
        else _mm256_maskstore_ps(dst + t, below(len - t), v);
      }
      return;
    }
    case 2: span<2>(dst, row, W, w0, len, lo, hi); return;
    case 3: span<3>(dst, row, W, w0, len, lo, hi); return;
    case 4: span<4>(dst, row, W, w0, len, lo, hi); return;
    default:
      for (int64_t t = 0; t < lo; ++t) dst[t] = 0.0f;
      for (int64_t t = lo; t < hi; ++t) dst[t] = row[w0 + t * ws];
      for (int64_t t = hi; t < len; ++t) dst[t] = 0.0f;
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
