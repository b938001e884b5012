// transpose_avx512.cpp -- block transpose for the GEMM packers: dst[j*ldd + i] = src[i*lds + j].
// 16x16 tiles in registers: 16 masked row loads, 4 shuffle stages (unpack ps, unpack pd, two
// 128-bit lane shuffles: 64 shuffles per 256 elements), 16 masked row stores. Edge tiles use
// masks on both sides, so nothing outside the two blocks is read or written.
#include "cpu/avx512/intrin.h"

#include "cpu/kernels.h"

namespace fastcnn::cpu::avx512 {
namespace {

inline __mmask16 lanes(int64_t n) { return n >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << n) - 1u); }

#include "cpu/avx512/transpose16.h"

}  // namespace

void transpose(const float* src, int64_t lds, int64_t rows, int64_t cols, float* dst,
               int64_t ldd) {
  for (int64_t i0 = 0; i0 < rows; i0 += 16) {
    const int64_t ni = rows - i0 < 16 ? rows - i0 : 16;
    const __mmask16 mi = lanes(ni);
    for (int64_t j0 = 0; j0 < cols; j0 += 16) {
      const int64_t nj = cols - j0 < 16 ? cols - j0 : 16;
      const __mmask16 mj = lanes(nj);
      __m512 r[16];
      for (int i = 0; i < 16; ++i)
        r[i] = i < ni ? _mm512_maskz_loadu_ps(mj, src + (i0 + i) * lds + j0) : _mm512_setzero_ps();
      transpose16(r);
      for (int j = 0; j < nj; ++j) _mm512_mask_storeu_ps(dst + (j0 + j) * ldd + i0, mi, r[j]);
    }
  }
}

}  // namespace fastcnn::cpu::avx512
