// avx512_simde.h -- AVX-512 on a CPU without it, for tests (CMake: -DFASTCNN_AVX512_SIMDE=ON,
// tools/avx512_emu/run.sh). csrc/cpu/avx512/intrin.h includes this instead of using the
// compiler's AVX-512 intrinsics: SIMDe (libsimde-dev, 0.7.x) implements them with AVX2 / scalar
// code under their own names (SIMDE_ENABLE_NATIVE_ALIASES), and the few that SIMDe 0.7 leaves
// out are written below, lane by lane, as the Intel intrinsics guide defines them: masked loads
// and stores touch only the enabled lanes (a masked tail never reads past a buffer), gathers
// read only enabled lanes, conversions round as the current MXCSR mode does and give the
// "integer indefinite" INT32_MIN for NaN / out of range, and _mm512_reduce_add_ps sums in GCC's
// order (halves, then quarters, then pairs), so the kernels' results are those the real
// instructions give. Slow: for correctness only, never for a release build.
#pragma once
#define SIMDE_ENABLE_NATIVE_ALIASES
#include <simde/x86/avx512.h>

#include <cfenv>
#include <cmath>
#include <cstdint>
#include <cstring>

namespace fastcnn_simde {

typedef int v16si __attribute__((vector_size(64)));
typedef long long v8di __attribute__((vector_size(64)));
typedef int v8si __attribute__((vector_size(32)));

template <class To, class From>
inline To bits(const From& v) {  // the same 32 / 64 bytes as another vector type
  static_assert(sizeof(To) == sizeof(From), "bits: sizes differ");
  To r;
  std::memcpy(&r, &v, sizeof r);
  return r;
}

inline __m512 maskz_loadu_ps(__mmask16 k, const void* p) {
  __m512 r = simde_mm512_setzero_ps();
  const float* f = static_cast<const float*>(p);
  for (int i = 0; i < 16; ++i)
    if ((k >> i) & 1) r[i] = f[i];
  return r;
}
inline __m512 mask_loadu_ps(__m512 src, __mmask16 k, const void* p) {
  const float* f = static_cast<const float*>(p);
  for (int i = 0; i < 16; ++i)
    if ((k >> i) & 1) src[i] = f[i];
  return src;
}
inline void mask_storeu_ps(void* p, __mmask16 k, __m512 v) {
  float* f = static_cast<float*>(p);
  for (int i = 0; i < 16; ++i)
    if ((k >> i) & 1) f[i] = v[i];
}
inline __m512i maskz_loadu_epi64(__mmask8 k, const void* p) {
  v8di r = {0, 0, 0, 0, 0, 0, 0, 0};
  const long long* q = static_cast<const long long*>(p);
  for (int i = 0; i < 8; ++i)
    if ((k >> i) & 1) r[i] = q[i];
  return bits<__m512i>(r);
}
inline void mask_storeu_epi64(void* p, __mmask8 k, __m512i v) {
  v8di w = bits<v8di>(v);
  long long* q = static_cast<long long*>(p);
  for (int i = 0; i < 8; ++i)
    if ((k >> i) & 1) q[i] = w[i];
}
inline __m512 mask_i32gather_ps(__m512 src, __mmask16 k, __m512i index, const void* base,
                                int scale) {
  v16si idx = bits<v16si>(index);
  const char* b = static_cast<const char*>(base);
  for (int i = 0; i < 16; ++i)
    if ((k >> i) & 1) std::memcpy(&src[i], b + static_cast<int64_t>(idx[i]) * scale, 4);
  return src;
}
inline __m512i cvtepi32_epi64(__m256i a) {
  v8si s = bits<v8si>(a);
  v8di r;
  for (int i = 0; i < 8; ++i) r[i] = s[i];
  return bits<__m512i>(r);
}
inline __m512i cvtps_epi32(__m512 a) {
  v16si r;
  for (int i = 0; i < 16; ++i) {
    const float x = std::nearbyint(a[i]);  // the current rounding mode, as cvtps2dq
    r[i] = (std::isnan(x) || x >= 2147483648.0f || x < -2147483648.0f)
               ? INT32_MIN : static_cast<int>(x);
  }
  return bits<__m512i>(r);
}
inline __m512i srai_epi32(__m512i a, int imm) {
  v16si s = bits<v16si>(a);
  const int n = imm > 31 ? 31 : imm;
  for (int i = 0; i < 16; ++i) s[i] >>= n;  // arithmetic on GCC's signed int
  return bits<__m512i>(s);
}
inline __m256 extractf32x8_ps(__m512 a, int imm) {
  __m256 r;
  for (int i = 0; i < 8; ++i) r[i] = a[8 * (imm & 1) + i];
  return r;
}
inline float reduce_add_ps(__m512 a) {  // GCC's __MM512_REDUCE_OP order
  float t3[8], t6[4];
  for (int i = 0; i < 8; ++i) t3[i] = a[8 + i] + a[i];
  for (int i = 0; i < 4; ++i) t6[i] = t3[4 + i] + t3[i];
  const float t8_0 = t6[0] + t6[2], t8_1 = t6[1] + t6[3];
  return t8_0 + t8_1;
}

}  // namespace fastcnn_simde

#undef _mm512_maskz_loadu_ps
#undef _mm512_mask_loadu_ps
#undef _mm512_mask_storeu_ps
#undef _mm512_maskz_loadu_epi64
#undef _mm512_mask_storeu_epi64
#undef _mm512_mask_i32gather_ps
#undef _mm512_cvtepi32_epi64
#undef _mm512_cvtps_epi32
#undef _mm512_srai_epi32
#undef _mm512_extractf32x8_ps
#undef _mm512_reduce_add_ps
#undef _mm512_kunpackb
#undef _mm512_mask_cmp_ps_mask
#undef _mm512_shuffle_f32x4
#define _mm512_maskz_loadu_ps(k, p) fastcnn_simde::maskz_loadu_ps((k), (p))
#define _mm512_mask_loadu_ps(s, k, p) fastcnn_simde::mask_loadu_ps((s), (k), (p))
#define _mm512_mask_storeu_ps(p, k, v) fastcnn_simde::mask_storeu_ps((p), (k), (v))
#define _mm512_maskz_loadu_epi64(k, p) fastcnn_simde::maskz_loadu_epi64((k), (p))
#define _mm512_mask_storeu_epi64(p, k, v) fastcnn_simde::mask_storeu_epi64((p), (k), (v))
#define _mm512_mask_i32gather_ps(s, k, i, b, sc) \
  fastcnn_simde::mask_i32gather_ps((s), (k), (i), (b), (sc))
#define _mm512_cvtepi32_epi64(a) fastcnn_simde::cvtepi32_epi64(a)
#define _mm512_cvtps_epi32(a) fastcnn_simde::cvtps_epi32(a)
#define _mm512_srai_epi32(a, n) fastcnn_simde::srai_epi32((a), (n))
#define _mm512_extractf32x8_ps(a, n) fastcnn_simde::extractf32x8_ps((a), (n))
#define _mm512_reduce_add_ps(a) fastcnn_simde::reduce_add_ps(a)
#define _mm512_kunpackb(a, b) \
  static_cast<__mmask16>(((static_cast<unsigned>(a) & 0xFFu) << 8) | (static_cast<unsigned>(b) & 0xFFu))
#define _mm512_mask_cmp_ps_mask(k, a, b, imm) \
  static_cast<__mmask16>((k) & simde_mm512_cmp_ps_mask((a), (b), (imm)))
#define _mm512_shuffle_f32x4(a, b, imm) simde_mm512_shuffle_f32x4((a), (b), (imm))
