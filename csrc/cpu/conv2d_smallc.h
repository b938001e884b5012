// conv2d_smallc.h -- the direct convolution for few input channels (conv2d_smallc.cpp): the
// forward (+bias, +ReLU) and the weight gradient (+db) of a groups = 1 convolution whose
// reduction C*R*S is at most kSmallcMaxTaps (a first layer: 1->32 3x3, 3->16 3x3), vectorised
// along the output row; any stride and dilation, padding >= 0.
#pragma once
#include <cstdint>

#include "common/params.h"

namespace fastcnn::cpu {

constexpr int64_t kSmallcMaxTaps = 32;  // C*R*S at most (the rule's domain, conv2d_route.cpp)

// A register tile: forward k output channels x v vectors along q; weight gradient k channels x
// v taps. cost: cycles of the ISA's FMA peak per useful FMA (>= 1; lanes past Q included).
struct SmallcTiling {
  int64_t k = 1, v = 1;
  double cost = 0.0;
};
SmallcTiling smallc_fwd_tiling(const Conv2dParams& p);
SmallcTiling smallc_wgrad_tiling(const Conv2dParams& p, bool with_db);

// groups = 1, N, C, K, P, Q >= 1, pads >= 0, C*R*S <= kSmallcMaxTaps
bool smallc_applicable(const Conv2dParams& p);
// y (N, K, P, Q) = relu?(bias + conv(x (N, C, H, W), w (K, C, R, S))): every element written.
void conv2d_smallc_forward(const float* x, const float* w, const float* b, float* y,
                           const Conv2dParams& p, int relu);
// dw (K, C, R, S) = sum over n, p, q of dy (N, K, P, Q) x the input window; db (K) = the sum of
// dy per channel when db is not null (the same pass over dy). relu_y (N, K, P, Q): the forward's
// ReLU output, dy then taken through ReLU's backward as it is read (null: dy as it is).
// Returns whether db was written.
bool conv2d_smallc_weight_grad(const float* dy, const float* relu_y, const float* x, float* dw,
                               float* db, const Conv2dParams& p);

}  // namespace fastcnn::cpu
