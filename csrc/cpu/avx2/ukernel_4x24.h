// ukernel_4x24.h -- the body shared by two AVX2+FMA micro-kernels: the GEMM's (gemm_avx2.cpp,
// gemm_ukernel) and conv2d's wide-grid one (conv2d_ukernel_avx2.cpp, conv2d_ukernel):
//   C[4 x 24] (+)= sum_k A_panel[k][4]^T * B_row(k)[24]
// where b_row(k) gives row k of B (a packed panel, or the padded image at a tap's offset).
// Per k: 3 ymm loads of B, 4 broadcasts of A, 12 FMAs into 12 ymm accumulators.
// Included INSIDE an anonymous namespace of those AVX2 files after <immintrin.h>.

template <class BRow>
inline void ukernel_4x24(int64_t kc, const float* a, BRow b_row, float* c, int64_t ldc,
                         int accumulate) {
  __m256 c00 = _mm256_setzero_ps(), c01 = c00, c02 = c00, c10 = c00, c11 = c00, c12 = c00;
  __m256 c20 = c00, c21 = c00, c22 = c00, c30 = c00, c31 = c00, c32 = c00;
  for (int64_t k = 0; k < kc; ++k) {
    const float* b = b_row(k);
    const __m256 b0 = _mm256_loadu_ps(b), b1 = _mm256_loadu_ps(b + 8), b2 = _mm256_loadu_ps(b + 16);
#define FASTCNN_ROW(i)                            \
  {                                               \
    const __m256 ai = _mm256_broadcast_ss(a + i); \
    c##i##0 = _mm256_fmadd_ps(ai, b0, c##i##0);   \
    c##i##1 = _mm256_fmadd_ps(ai, b1, c##i##1);   \
    c##i##2 = _mm256_fmadd_ps(ai, b2, c##i##2);   \
  }
    FASTCNN_ROW(0) FASTCNN_ROW(1) FASTCNN_ROW(2) FASTCNN_ROW(3)
#undef FASTCNN_ROW
    a += 4;
  }
#define FASTCNN_STORE(i)                                                          \
  {                                                                               \
    float* ci = c + (i) * ldc;                                                    \
    if (accumulate) {                                                             \
      c##i##0 = _mm256_add_ps(_mm256_loadu_ps(ci), c##i##0);                      \
      c##i##1 = _mm256_add_ps(_mm256_loadu_ps(ci + 8), c##i##1);                  \
      c##i##2 = _mm256_add_ps(_mm256_loadu_ps(ci + 16), c##i##2);                 \
    }                                                                             \
    _mm256_storeu_ps(ci, c##i##0);                                                \
    _mm256_storeu_ps(ci + 8, c##i##1);                                            \
    _mm256_storeu_ps(ci + 16, c##i##2);                                           \
  }
  FASTCNN_STORE(0) FASTCNN_STORE(1) FASTCNN_STORE(2) FASTCNN_STORE(3)
#undef FASTCNN_STORE
}
