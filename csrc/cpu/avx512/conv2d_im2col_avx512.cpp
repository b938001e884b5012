// conv2d_im2col_avx512.cpp -- conv2d's implicit-im2col packers (conv2d_im2col_impl.h), AVX-512.
// conv2d_im2col: B panels (kc x nr) of the forward / gather GEMM; conv2d_im2col_wgrad: the
// weight gradient's transposed B panel. A segment (one output row inside one panel, <= 48
// floats) is 16-lane masked loads of its in-bounds part (masked-off lanes are never read) and
// masked stores that write the zero padding too; strided windows (stride > 1) gather with a
// masked index vector.
#include "cpu/avx512/intrin.h"

#include "cpu/kernels.h"

namespace fastcnn::cpu::avx512 {
namespace {

inline __mmask16 below(int64_t n) {  // lanes [0, n), n clamped to [0, 16]
  return n <= 0 ? __mmask16(0) : n >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << n) - 1u);
}

#include "cpu/conv2d_im2col_impl.h"
#include "cpu/avx512/transpose16.h"

inline void segment(float* dst, const float* row, int64_t W, int64_t w0, int64_t ws, int64_t len) {
  int64_t lo, hi;
  segment_bounds(row, W, w0, ws, len, lo, hi);
  const __m512i step = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11,
                                                             12, 13, 14, 15),
                                          _mm512_set1_epi32(static_cast<int>(ws)));
  for (int64_t t = 0; t < len; t += 16) {
    const __mmask16 out = below(len - t);
    const __mmask16 in = static_cast<__mmask16>(below(hi - t) & ~below(lo - t));
    __m512 v = _mm512_setzero_ps();
    if (in) {
      if (ws == 1) {
        v = _mm512_maskz_loadu_ps(in, row + (w0 + t));
      } else {
        v = _mm512_mask_i32gather_ps(v, in, step, row + (w0 + t * ws), 4);
      }
    }
    _mm512_mask_storeu_ps(dst + t, out, v);
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

// Fused gather + transpose: for each run of <= 16 pixels inside one output row, 16 columns at a
// time: one masked load (or gather) per column of its contiguous im2col run, a 16x16 register
// transpose, one 16-float store per pixel. No staging pass, no scalar stores.
void conv2d_im2col_wgrad(const float* const* planes, const int64_t* bh, const int64_t* bw,
                         int64_t cols, int64_t img_stride, int64_t k0, int64_t kc, int64_t P,
                         int64_t Q, int64_t Hs, int64_t Ws, int64_t a_h, int64_t a_w, float* dst,
                         int64_t nr, float* scratch) {
  if (nr % 16 != 0) {  // the kernel table's nr is 48: never taken, kept for safety
    im2col_wgrad_two_pass(planes, bh, bw, cols, img_stride, k0, kc, P, Q, Hs, Ws, a_h, a_w, dst,
                          nr, scratch);
    return;
  }
  const int64_t PQ = P * Q;
  const __m512i step = _mm512_mullo_epi32(
      _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
      _mm512_set1_epi32(static_cast<int>(a_w)));
  int64_t k = 0, n = k0 / PQ, pq = k0 % PQ;
  int64_t op = pq / Q, oq = pq % Q;
  while (k < kc) {
    int64_t len = Q - oq < kc - k ? Q - oq : kc - k;
    if (len > 16) len = 16;
    for (int64_t g = 0; g < nr; g += 16) {
      __m512 r[16];
      for (int i = 0; i < 16; ++i) {
        const int64_t col = g + i;
        r[i] = _mm512_setzero_ps();
        if (col >= cols) continue;
        const int64_t h = op * a_h + bh[col];
        const float* row = (h >= 0 && h < Hs) ? planes[col] + n * img_stride + h * Ws : nullptr;
        const int64_t w0 = oq * a_w + bw[col];
        int64_t lo, hi;
        segment_bounds(row, Ws, w0, a_w, len, lo, hi);
        const __mmask16 in = static_cast<__mmask16>(below(hi) & ~below(lo));
        if (!in) continue;
        r[i] = a_w == 1 ? _mm512_maskz_loadu_ps(in, row + w0)
                        : _mm512_mask_i32gather_ps(_mm512_setzero_ps(), in, step, row + w0, 4);
      }
      transpose16(r);
      for (int64_t t = 0; t < len; ++t) _mm512_storeu_ps(dst + (k + t) * nr + g, r[t]);
    }
    k += len;
    oq += len;
    if (oq == Q) {
      oq = 0;
      if (++op == P) op = 0, ++n;
    }
  }
}

}  // namespace fastcnn::cpu::avx512
