// conv2d_blocked.h -- the direct convolution over blocked activations (conv2d_blocked.cpp):
// the forward pass of a groups = 1 convolution, any kernel size, stride, dilation and padding,
// on the active ISA's channel blocks (generic / avx2: 8, avx512: 16).
#pragma once
#include <cstdint>

#include "common/params.h"

namespace fastcnn::cpu {

// The register tile the forward of p runs with on the active ISA (the rule of
// conv2d_blocked.cpp, never a timing): ocb output-channel blocks x nc output pixels, and its
// cost estimate (cycles of the ISA's FMA peak per useful FMA, >= 1, without the reorder).
struct BlockedTiling {
  int64_t ocb = 1, nc = 1;
  double cost = 0.0;
};
BlockedTiling blocked_tiling(const Conv2dParams& p);

// Whether conv2d_blocked_forward handles p (groups = 1, N, P, Q >= 1).
bool blocked_fwd_applicable(const Conv2dParams& p);
// y (N, K, P, Q) = relu?(bias + conv(x (N, C, H, W), w (K, C, R, S))): every element written.
void conv2d_blocked_forward(const float* x, const float* w, const float* b, float* y,
                            const Conv2dParams& p, int relu);

}  // namespace fastcnn::cpu
