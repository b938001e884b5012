// gemm_avx512.cpp -- AVX-512 SGEMM micro-kernel (8 x 48) and the tile epilogue.
//
// C[8 x 48] += A_panel[kc][8]^T * B_panel[kc][48]: per k, 3 zmm loads of B, 8 broadcasts of A
// (embedded broadcast FMA operands) and 24 FMAs into 24 zmm accumulators (+3 B registers).
// Napkin maths: 24 FMA x 16 lanes x 2 flops = 768 flops per k step; at 2 FMA ports that is
// 12 cycles, against 3 vector loads + 8 scalar broadcasts, so the kernel is FMA-bound:
// 64 flops/cycle/core peak. The 8-row tile divides the usual channel counts (32, 64, 128).
#include "cpu/avx512/intrin.h"

#include "cpu/kernels.h"

namespace fastcnn::cpu::avx512 {
namespace {
#include "cpu/avx512/ukernel_8x48.h"
}  // namespace

const int kMR = 8, kNR = 48;

void gemm_ukernel(int64_t kc, const float* a, const float* b, float* c, int64_t ldc,
                  int accumulate) {
  ukernel_8x48(kc, a, [b](int64_t k) {
    _mm_prefetch(reinterpret_cast<const char*>(b + (k + 8) * 48), _MM_HINT_T0);
    return b + k * 48;
  }, c, ldc, accumulate);
}

void store_tile(float* dst, int64_t ldd, const float* src, int64_t lds, int64_t m, int64_t n,
                const float* bias_row, const float* bias_col, int relu, int accumulate) {
  const __m512 zero = _mm512_setzero_ps();
  for (int64_t i = 0; i < m; ++i) {
    const __m512 br = _mm512_set1_ps(bias_row ? bias_row[i] : 0.0f);
    const float* s = src + i * lds;
    float* d = dst + i * ldd;
    for (int64_t j = 0; j < n; j += 16) {
      const int64_t left = n - j;
      const __mmask16 mask = left >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << left) - 1u);
      __m512 v = _mm512_maskz_loadu_ps(mask, s + j);
      if (bias_row) v = _mm512_add_ps(v, br);
      if (bias_col) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(mask, bias_col + j));
      if (relu) v = _mm512_max_ps(zero, v);  // returns v when v is NaN
      if (accumulate) v = _mm512_add_ps(_mm512_maskz_loadu_ps(mask, d + j), v);
      _mm512_mask_storeu_ps(d + j, mask, v);
    }
  }
}

}  // namespace fastcnn::cpu::avx512
