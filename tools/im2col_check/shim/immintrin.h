// shim/immintrin.h -- the checker's <immintrin.h> (tools/im2col_check): the compiler's own header
// (AVX2 native), SIMDe for AVX-512 (emulated on AVX2, so the AVX-512 packers run on any x86-64
// with AVX2), and the vector loads the im2col packers use replaced by lane-by-lane versions that
// report any enabled lane outside the one image row it should come from (check.h).
#pragma once
#include_next <immintrin.h>
#define SIMDE_ENABLE_NATIVE_ALIASES
#include <simde/x86/avx512.h>

#include "check.h"

// aliases SIMDe 0.7 leaves out
#undef _mm512_shuffle_f32x4
#define _mm512_shuffle_f32x4(a, b, imm) simde_mm512_shuffle_f32x4(a, b, imm)

#undef _mm256_loadu_ps
#undef _mm256_maskload_ps
#undef _mm512_loadu_ps
#undef _mm512_maskz_loadu_ps
#undef _mm512_mask_storeu_ps
#undef _mm512_mask_i32gather_ps
#define _mm256_loadu_ps(p) im2col_check::load256((p), 0xFFu)
#define _mm256_maskload_ps(p, m) im2col_check::load256((p), im2col_check::mask256(m))
#define _mm512_loadu_ps(p) im2col_check::load512((p), 0xFFFFu)
#define _mm512_maskz_loadu_ps(k, p) im2col_check::load512((p), (k))
#define _mm512_mask_storeu_ps(p, k, v) im2col_check::store512((p), (k), (v))
#define _mm512_mask_i32gather_ps(src, k, idx, p, scale) \
  im2col_check::gather512((src), (k), (idx), (p), (scale))
