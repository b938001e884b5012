// check.h -- lane-by-lane vector loads for tools/im2col_check: every enabled lane that falls in
// the registered image buffer (or within 64 floats of it) must lie inside the buffer and in the
// same row (Ws floats) as the load's first enabled lane, else the checker aborts naming it.
#pragma once
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace im2col_check {

struct Region {
  const float* base = nullptr;
  int64_t n = 0, row = 1;
};
inline Region& region() {
  static Region r;
  return r;
}

inline const char*& label() {  // the ISA under test, for the messages
  static const char* name = "";
  return name;
}

inline void check(const float* const* lanes, int count) {
  const Region& g = region();
  int64_t first_row = INT64_MIN;
  for (int i = 0; i < count; ++i) {
    const int64_t off = lanes[i] - g.base;
    if (off < -64 || off >= g.n + 64) continue;  // not the images (scratch, panels)
    if (off < 0 || off >= g.n) {
      std::fprintf(stderr, "im2col_check: %s: lane %d reads %lld floats outside the images\n", label(), i,
                   static_cast<long long>(off < 0 ? off : off - g.n + 1));
      std::abort();
    }
    if (first_row == INT64_MIN) first_row = off / g.row;
    if (off / g.row != first_row) {
      std::fprintf(stderr, "im2col_check: %s: one load spans rows %lld and %lld (lane %d)\n",
                   label(), static_cast<long long>(first_row), static_cast<long long>(off / g.row), i);
      std::abort();
    }
  }
}

inline unsigned mask256(__m256i m) {
  int32_t v[8];
  std::memcpy(v, &m, sizeof v);
  unsigned k = 0;
  for (int i = 0; i < 8; ++i) k |= (v[i] < 0 ? 1u : 0u) << i;
  return k;
}

inline __m256 load256(const float* p, unsigned k) {
  float v[8];
  const float* lanes[8];
  int count = 0;
  for (int i = 0; i < 8; ++i) {
    v[i] = 0.0f;
    if (k >> i & 1u) lanes[count++] = p + i;
  }
  check(lanes, count);
  for (int i = 0; i < 8; ++i)
    if (k >> i & 1u) v[i] = p[i];
  __m256 r;
  std::memcpy(&r, v, sizeof r);
  return r;
}

inline __m512 load512(const float* p, unsigned k) {
  float v[16];
  const float* lanes[16];
  int count = 0;
  for (int i = 0; i < 16; ++i) {
    v[i] = 0.0f;
    if (k >> i & 1u) lanes[count++] = p + i;
  }
  check(lanes, count);
  for (int i = 0; i < 16; ++i)
    if (k >> i & 1u) v[i] = p[i];
  __m512 r;
  std::memcpy(&r, v, sizeof r);
  return r;
}

inline void store512(float* p, unsigned k, __m512 x) {
  float v[16];
  std::memcpy(v, &x, sizeof v);
  for (int i = 0; i < 16; ++i)
    if (k >> i & 1u) p[i] = v[i];
}

inline __m512 gather512(__m512 src, unsigned k, __m512i idx, const void* base, int scale) {
  float v[16];
  int32_t o[16];
  std::memcpy(v, &src, sizeof v);
  std::memcpy(o, &idx, sizeof o);
  const float* lanes[16];
  int count = 0;
  for (int i = 0; i < 16; ++i)
    if (k >> i & 1u)
      lanes[count++] = reinterpret_cast<const float*>(static_cast<const char*>(base) +
                                                      int64_t{o[i]} * scale);
  check(lanes, count);
  for (int i = 0, c = 0; i < 16; ++i)
    if (k >> i & 1u) v[i] = *lanes[c++];
  __m512 r;
  std::memcpy(&r, v, sizeof r);
  return r;
}

}  // namespace im2col_check
