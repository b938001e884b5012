// gemm.cpp (generic) -- portable SGEMM micro-kernel (4 x 8) and tile epilogue: the fallback for
// CPUs without AVX2+FMA and the C++ oracle of the ISA kernels. Plain loops over fixed-size
// arrays that the compiler keeps in SSE registers (8 xmm accumulators).
#include "cpu/kernels.h"

namespace fastcnn::cpu::generic {

const int kMR = 4, kNR = 8;

void gemm_ukernel(int64_t kc, const float* a, const float* b, float* c, int64_t ldc,
                  int accumulate) {
  float acc[4][8] = {};
  for (int64_t k = 0; k < kc; ++k) {
    for (int i = 0; i < 4; ++i) {
      const float ai = a[i];
      for (int j = 0; j < 8; ++j) acc[i][j] += ai * b[j];
    }
    a += 4;
    b += 8;
  }
  for (int i = 0; i < 4; ++i)
    for (int j = 0; j < 8; ++j) c[i * ldc + j] = accumulate ? c[i * ldc + j] + acc[i][j] : acc[i][j];
}

// The same with A read in place: a(i, k) = a[i*ars + k*acs] (all 8 columns, whatever ncols).
void gemm_ukernel_sa(int64_t kc, const float* a, int64_t ars, int64_t acs, const float* b,
                     float* c, int64_t ldc, int accumulate, int64_t) {
  float acc[4][8] = {};
  for (int64_t k = 0; k < kc; ++k) {
    for (int i = 0; i < 4; ++i) {
      const float ai = a[i * ars + k * acs];
      for (int j = 0; j < 8; ++j) acc[i][j] += ai * b[j];
    }
    b += 8;
  }
  for (int i = 0; i < 4; ++i)
    for (int j = 0; j < 8; ++j) c[i * ldc + j] = accumulate ? c[i * ldc + j] + acc[i][j] : acc[i][j];
}

// Three row panels (12 rows) in place: the ISA kernels' edge for a thin last panel; here three
// calls of the kernel above (its 4 x 8 tile has no narrower variant to replace).
void gemm_ukernel_sa_tall(int64_t kc, const float* a, int64_t ars, int64_t acs, const float* b,
                          float* c, int64_t ldc, int accumulate, int64_t ncols) {
  for (int p = 0; p < 3; ++p)
    gemm_ukernel_sa(kc, a + 4 * p * ars, ars, acs, b, c + 4 * p * ldc, ldc, accumulate, ncols);
}

void store_tile(float* dst, int64_t ldd, const float* src, int64_t lds, int64_t m, int64_t n,
                const float* bias_row, const float* bias_col, int relu, int accumulate) {
  for (int64_t i = 0; i < m; ++i) {
    const float br = bias_row ? bias_row[i] : 0.0f;
    const float* s = src + i * lds;
    float* d = dst + i * ldd;
    for (int64_t j = 0; j < n; ++j) {
      float v = s[j];
      if (bias_row) v += br;
      if (bias_col) v += bias_col[j];
      if (relu) v = (v > 0.0f || v != v) ? v : 0.0f;  // NaN kept, like the ISA kernels
      d[j] = accumulate ? d[j] + v : v;
    }
  }
}

}  // namespace fastcnn::cpu::generic
