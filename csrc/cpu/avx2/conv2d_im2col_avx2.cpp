// conv2d_im2col_avx2.cpp -- conv2d's implicit-im2col packers (conv2d_im2col_impl.h), AVX2.
// conv2d_im2col: B panels (kc x nr) of the forward / gather GEMM; conv2d_im2col_wgrad: the
// weight gradient's transposed B panel. Segment copies: 8-lane maskload of the in-bounds part
// (masked-off lanes are never read), full stores where 8 lanes fit in the segment, maskstore at
// its end; strided windows use scalar loads.
#include <immintrin.h>

#include "cpu/kernels.h"

namespace fastcnn::cpu::avx2 {
namespace {

inline __m256i below(int64_t n) {  // lanes [0, n) set
  const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  const int c = n <= 0 ? 0 : n >= 8 ? 8 : static_cast<int>(n);
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(c), idx);
}

#include "cpu/conv2d_im2col_impl.h"

inline void segment(float* dst, const float* row, int64_t W, int64_t w0, int64_t ws, int64_t len) {
  int64_t lo, hi;
  segment_bounds(row, W, w0, ws, len, lo, hi);
  if (ws != 1) {
    for (int64_t t = 0; t < lo; ++t) dst[t] = 0.0f;
    for (int64_t t = lo; t < hi; ++t) dst[t] = row[w0 + t * ws];
    for (int64_t t = hi; t < len; ++t) dst[t] = 0.0f;
    return;
  }
  for (int64_t t = 0; t < len; t += 8) {
    const __m256i in = _mm256_andnot_si256(below(lo - t), below(hi - t));
    __m256 v = _mm256_setzero_ps();
    if (!_mm256_testz_si256(in, in)) v = _mm256_maskload_ps(row + (w0 + t), in);
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
