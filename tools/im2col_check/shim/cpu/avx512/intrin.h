// The checker's stand-in for csrc/cpu/avx512/intrin.h: SIMDe-emulated AVX-512 (shim/immintrin.h).
#pragma once
#include <immintrin.h>
