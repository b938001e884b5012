// transpose_avx2.cpp -- block transpose for the GEMM packers: dst[j*ldd + i] = src[i*lds + j].
// 8x8 tiles in registers (unpack ps, shuffle ps, permute2f128: 24 shuffles per 64 elements);
// edge tiles go through a small stack tile so nothing outside the two blocks is touched.
#include <immintrin.h>

#include "cpu/kernels.h"

namespace fastcnn::cpu::avx2 {
namespace {

inline void transpose8(__m256 r[8]) {
  __m256 t[8];
  for (int i = 0; i < 8; i += 2) {
    t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
  }
  __m256 u[8];
  for (int i = 0; i < 8; i += 4) {
    u[i] = _mm256_shuffle_ps(t[i], t[i + 2], 0x44);
    u[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], 0xEE);
    u[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0x44);
    u[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
  }
  for (int i = 0; i < 4; ++i) {
    r[i] = _mm256_permute2f128_ps(u[i], u[i + 4], 0x20);
    r[i + 4] = _mm256_permute2f128_ps(u[i], u[i + 4], 0x31);
  }
}

}  // namespace

void transpose(const float* src, int64_t lds, int64_t rows, int64_t cols, float* dst,
               int64_t ldd) {
  for (int64_t i0 = 0; i0 < rows; i0 += 8) {
    const int64_t ni = rows - i0 < 8 ? rows - i0 : 8;
    for (int64_t j0 = 0; j0 < cols; j0 += 8) {
      const int64_t nj = cols - j0 < 8 ? cols - j0 : 8;
      __m256 r[8];
      if (ni == 8 && nj == 8) {
        for (int i = 0; i < 8; ++i) r[i] = _mm256_loadu_ps(src + (i0 + i) * lds + j0);
        transpose8(r);
        for (int j = 0; j < 8; ++j) _mm256_storeu_ps(dst + (j0 + j) * ldd + i0, r[j]);
        continue;
      }
      for (int64_t i = 0; i < ni; ++i)
        for (int64_t j = 0; j < nj; ++j) dst[(j0 + j) * ldd + i0 + i] = src[(i0 + i) * lds + j0 + j];
    }
  }
}

}  // namespace fastcnn::cpu::avx2
