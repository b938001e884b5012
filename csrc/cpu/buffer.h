// buffer.h -- 64-byte aligned float workspaces for the op drivers (allocated before a parallel
// region, so std::bad_alloc surfaces as MemoryError and never escapes a thread).
#pragma once
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <new>

namespace fastcnn::cpu {

struct AlignedFree {
  void operator()(float* p) const { std::free(p); }
};
using Buffer = std::unique_ptr<float[], AlignedFree>;

// At least n floats (n >= 0), uninitialised, 64-byte aligned.
inline Buffer alloc_floats(int64_t n) {
  const int64_t want = (n < 16 ? 16 : n) * 4;
  const size_t bytes = static_cast<size_t>((want + 63) / 64 * 64);
  void* p = std::aligned_alloc(64, bytes);
  if (!p) throw std::bad_alloc();
  return Buffer(static_cast<float*>(p));
}

}  // namespace fastcnn::cpu
