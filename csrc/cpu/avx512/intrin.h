// intrin.h -- <immintrin.h> for the AVX-512 files. GCC 12 reports its own _mm512_undefined_*()
// inside immintrin.h as "maybe uninitialized" once inlined (GCC PR105593); the pragma covers
// only the header's lines, so the files' own code keeps every warning.
#pragma once
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>
#pragma GCC diagnostic pop
