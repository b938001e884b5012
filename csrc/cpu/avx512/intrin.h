// intrin.h -- <immintrin.h> for the AVX-512 files. GCC 12 reports its own _mm512_undefined_*()
// inside immintrin.h as "maybe uninitialized" once inlined (GCC PR105593); the pragma covers
// only the header's lines, so the files' own code keeps every warning.
//
// FASTCNN_AVX512_SIMDE (CMake option of that name, tools/avx512_emu): a test build on CPUs
// without AVX-512. The same sources compile against SIMDe (libsimde-dev), which implements every
// AVX-512 intrinsic with AVX2 / scalar code, so this ISA's kernels run, slowly, through the whole
// test suite on an AVX2-only machine. Never a release build.
#pragma once
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>
#ifdef FASTCNN_AVX512_SIMDE
#include "avx512_simde.h"  // tools/avx512_emu (on the include path in that build only)
#endif
#pragma GCC diagnostic pop
