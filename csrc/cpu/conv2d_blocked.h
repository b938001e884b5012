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
// stats (optional): each oc group's chunks of the band gathered right after its tiles are
// stored (conv2d_stats.h; the band is then a whole number of chunks).
struct ConvStatsPlan;
void conv2d_blocked_forward(const float* x, const float* w, const float* b, float* y,
                            const Conv2dParams& p, int relu, ConvStatsPlan* stats = nullptr);

// Backward-data of a stride-1, groups = 1 convolution as the same forward: dx (N, C, H, W) =
// dy (N, K, P, Q) padded by (R-1)*dil - pad on each side, correlated with the flipped, transposed
// weights wt[c, k, r, s] = w[k, c, R-1-r, S-1-s]. Needs every (R-1)*dil - pad >= 0, and finite
// weights for the reference's locality (the padding's zeros meet every weight).
bool blocked_bwd_data_applicable(const Conv2dParams& p);
// The forward problem that pass runs (C and K swapped, P x Q -> H x W, pads (R-1)*dil - pad).
Conv2dParams blocked_bwd_data_params(const Conv2dParams& p);
void conv2d_blocked_backward_data(const float* dy, const float* w, float* dx,
                                  const Conv2dParams& p);

}  // namespace fastcnn::cpu
