// ukernel_8x48.h -- the body shared by two AVX-512 micro-kernels: the GEMM's (gemm_avx512.cpp,
// gemm_ukernel) and conv2d's wide-grid one (conv2d_ukernel_avx512.cpp, conv2d_ukernel):
//   C[8 x 48] (+)= sum_k A_panel[k][8]^T * B_row(k)[48]
// where b_row(k) gives row k of B (a packed panel, or the padded image at a tap's offset).
// Per k: 3 zmm loads of B, 8 broadcasts of A, 24 FMAs into 24 zmm accumulators (+3 B registers).
// Included INSIDE an anonymous namespace of those AVX-512 files after cpu/avx512/intrin.h.

template <class BRow>
inline void ukernel_8x48(int64_t kc, const float* a, BRow b_row, float* c, int64_t ldc,
                         int accumulate) {
  __m512 c00 = _mm512_setzero_ps(), c01 = c00, c02 = c00, c10 = c00, c11 = c00, c12 = c00;
  __m512 c20 = c00, c21 = c00, c22 = c00, c30 = c00, c31 = c00, c32 = c00;
  __m512 c40 = c00, c41 = c00, c42 = c00, c50 = c00, c51 = c00, c52 = c00;
  __m512 c60 = c00, c61 = c00, c62 = c00, c70 = c00, c71 = c00, c72 = c00;
  for (int64_t k = 0; k < kc; ++k) {
    const float* b = b_row(k);
    const __m512 b0 = _mm512_loadu_ps(b), b1 = _mm512_loadu_ps(b + 16), b2 = _mm512_loadu_ps(b + 32);
#define FASTCNN_ROW(i)                           \
  {                                              \
    const __m512 ai = _mm512_set1_ps(a[i]);      \
    c##i##0 = _mm512_fmadd_ps(ai, b0, c##i##0);  \
    c##i##1 = _mm512_fmadd_ps(ai, b1, c##i##1);  \
    c##i##2 = _mm512_fmadd_ps(ai, b2, c##i##2);  \
  }
    FASTCNN_ROW(0) FASTCNN_ROW(1) FASTCNN_ROW(2) FASTCNN_ROW(3)
    FASTCNN_ROW(4) FASTCNN_ROW(5) FASTCNN_ROW(6) FASTCNN_ROW(7)
#undef FASTCNN_ROW
    a += 8;
  }
#define FASTCNN_STORE(i)                                                          \
  {                                                                               \
    float* ci = c + (i) * ldc;                                                    \
    if (accumulate) {                                                             \
      c##i##0 = _mm512_add_ps(_mm512_loadu_ps(ci), c##i##0);                      \
      c##i##1 = _mm512_add_ps(_mm512_loadu_ps(ci + 16), c##i##1);                 \
      c##i##2 = _mm512_add_ps(_mm512_loadu_ps(ci + 32), c##i##2);                 \
    }                                                                             \
    _mm512_storeu_ps(ci, c##i##0);                                                \
    _mm512_storeu_ps(ci + 16, c##i##1);                                           \
    _mm512_storeu_ps(ci + 32, c##i##2);                                           \
  }
  FASTCNN_STORE(0) FASTCNN_STORE(1) FASTCNN_STORE(2) FASTCNN_STORE(3)
  FASTCNN_STORE(4) FASTCNN_STORE(5) FASTCNN_STORE(6) FASTCNN_STORE(7)
#undef FASTCNN_STORE
}
