// global_pool2d.cpp (generic) -- global average / max pooling over `planes` planes of HW floats,
// portable; the oracle the SIMD files are tested against.
//   global_avgpool2d_fwd: y[pl] = the plane's sum / float(HW), the sum in one fixed order shared
//       by every ISA and the reference: 32 lane sums s[l] = 0 + x[l] + x[l+32] + ... (increasing
//       index), folded s[l] + s[l+16] (l < 16), then + 8, + 4, + 2, + 1
//   global_avgpool2d_bwd: dx[pl, :] = dy[pl] / float(HW)
//   global_maxpool2d_fwd: max_pool2d's rule over the plane in row-major order (`v > best ||
//       isnan(v)` from -inf and index 0: the first maximum, the last NaN, an all -inf plane
//       gives index 0); idx may be null
//   global_maxpool2d_bwd: dx[pl, :] = 0, dx[pl, idx[pl]] = 0 + dy[pl] (max_pool2d_backward's
//       0 + dy); returns false (and skips it) when an idx lies outside [0, HW)
// Napkin: one add or compare per element, ~1 ns scalar.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>

#include "cpu/kernels.h"

namespace fastcnn::cpu::generic {

void global_avgpool2d_fwd(const float* x, float* y, int64_t planes, int64_t HW) {
  for (int64_t pl = 0; pl < planes; ++pl) {
    const float* xp = x + pl * HW;
    float s[32] = {};
    for (int64_t i = 0; i < HW; ++i) s[i % 32] += xp[i];
    for (int half = 16; half >= 1; half /= 2)
      for (int l = 0; l < half; ++l) s[l] = s[l] + s[l + half];
    y[pl] = s[0] / static_cast<float>(HW);
  }
}

void global_avgpool2d_bwd(const float* dy, float* dx, int64_t planes, int64_t HW) {
  const float hw = static_cast<float>(HW);
  for (int64_t pl = 0; pl < planes; ++pl) {
    const float v = dy[pl] / hw;
    for (int64_t i = 0; i < HW; ++i) dx[pl * HW + i] = v;
  }
}

void global_maxpool2d_fwd(const float* x, float* y, int64_t* idx, int64_t planes, int64_t HW) {
  for (int64_t pl = 0; pl < planes; ++pl) {
    const float* xp = x + pl * HW;
    float best = -std::numeric_limits<float>::infinity();
    int64_t bi = 0;
    for (int64_t i = 0; i < HW; ++i) {
      const float v = xp[i];
      if (v > best || std::isnan(v)) {
        best = v;
        bi = i;
      }
    }
    y[pl] = xp[bi];
    if (idx) idx[pl] = bi;
  }
}

bool global_maxpool2d_bwd(const float* dy, const int64_t* idx, float* dx, int64_t planes,
                          int64_t HW) {
  bool ok = true;
  for (int64_t pl = 0; pl < planes; ++pl) {
    float* d = dx + pl * HW;
    std::memset(d, 0, static_cast<size_t>(HW) * sizeof(float));
    const int64_t j = idx[pl];
    if (static_cast<uint64_t>(j) < static_cast<uint64_t>(HW)) {
      d[j] = 0.0f + dy[pl];
    } else {
      ok = false;
    }
  }
  return ok;
}

}  // namespace fastcnn::cpu::generic
