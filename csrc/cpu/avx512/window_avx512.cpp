// window_avx512.cpp -- implicit im2col (window_impl.h) with AVX-512 segment copies: a segment
// (one output row inside one panel, <= 48 floats) is 16-lane masked loads of its in-bounds part
// (masked-off lanes are never read) and masked stores that write the zero padding too; strided
// windows (stride > 1) gather with a masked index vector.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>
#pragma GCC diagnostic pop

#include "cpu/kernels.h"

namespace fastcnn::cpu::avx512 {
namespace {

inline __mmask16 below(int64_t n) {  // lanes [0, n), n clamped to [0, 16]
  return n <= 0 ? __mmask16(0) : n >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << n) - 1u);
}

#include "cpu/window_impl.h"

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

void pack_windows(const float* const* planes, const int64_t* bh, const int64_t* bw, int64_t kc,
                  int64_t j0, int64_t nc, int64_t Qo, int64_t Hs, int64_t Ws, int64_t a_h,
                  int64_t a_w, float* dst, int64_t nr) {
  pack_windows_impl(planes, bh, bw, kc, j0, nc, Qo, Hs, Ws, a_h, a_w, dst, nr);
}

void window_rows(const float* const* planes, const int64_t* bh, const int64_t* bw, int64_t rows,
                 int64_t img_stride, int64_t k0, int64_t kc, int64_t P, int64_t Q, int64_t Hs,
                 int64_t Ws, int64_t a_h, int64_t a_w, float* dst) {
  window_rows_impl(planes, bh, bw, rows, img_stride, k0, kc, P, Q, Hs, Ws, a_h, a_w, dst);
}

}  // namespace fastcnn::cpu::avx512
