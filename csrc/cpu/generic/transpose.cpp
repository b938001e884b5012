// transpose.cpp (generic) -- block transpose for the GEMM packers: dst[j*ldd + i] = src[i*lds + j].
// Portable scalar loop: the fallback and the oracle of the ISA versions.
#include "cpu/kernels.h"

namespace fastcnn::cpu::generic {

void transpose(const float* src, int64_t lds, int64_t rows, int64_t cols, float* dst,
               int64_t ldd) {
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t j = 0; j < cols; ++j) dst[j * ldd + i] = src[i * lds + j];
}

}  // namespace fastcnn::cpu::generic
