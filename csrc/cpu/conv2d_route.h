// conv2d_route.h -- which form runs each pass of a convolution: the blocked direct convolution
// (conv2d_blocked*.cpp; every pass), the wide grid (conv2d_wide.cpp) or the
// implicit GEMM (conv2d.cpp), and how many images one GEMM problem's columns span. The
// choice is a rule on the shape and the active ISA's register tile (kernels().mr x nr), never a
// timing; conv2d_route.cpp holds the rule and its napkin maths.
#pragma once
#include <cstdint>

#include "common/params.h"

namespace fastcnn::cpu {

struct ConvRoute {
  bool wide = false;  // the wide-grid direct convolution; else the implicit GEMM
  // the blocked direct convolution: the forward (conv2d_blocked.cpp), or backward-data (stride 1
  // there, stride > 1 as phase sub-convolutions in conv2d_blocked_bwd.cpp)
  bool blocked = false;
  // GEMM: images whose (image, pixel) columns form one problem's N dimension; wide: images side
  // by side in one grid (WideConv::imgs)
  int64_t imgs = 1;
  // the small-channel direct convolution (conv2d_smallc.cpp), ahead of the other forms
  bool smallc = false;
};

// The forward pass (wide only where wide_fwd_applicable(p)).
ConvRoute route_forward(const Conv2dParams& p);
// Backward-data; w_finite: no NaN / inf weight (the wide form needs that, see conv2d.cpp).
ConvRoute route_backward_data(const Conv2dParams& p, bool w_finite);
// The weight gradient: whether it runs on the wide grid (where wide_wgrad_applicable(p)); the
// GEMM form already reduces over the whole batch (K = N*P*Q).
bool route_wgrad_wide(const Conv2dParams& p);
// The weight gradient: whether it runs as the blocked direct convolution
// (conv2d_blocked_wgrad.cpp), before the wide and GEMM forms; blocked_wgrad_wins is the rule.
bool route_wgrad_blocked(const Conv2dParams& p);
bool blocked_wgrad_wins(const Conv2dParams& p);
// The small-channel direct convolution (conv2d_smallc.cpp), ahead of every other form: whether
// the rule takes it for the forward / the weight gradient (smallc_*_wins), and the routing with
// FASTCNN_CONV_ROUTE's "smallc" (wherever it applies) / "nosmallc" (never) applied.
bool smallc_fwd_wins(const Conv2dParams& p);
bool smallc_wgrad_wins(const Conv2dParams& p);
bool route_wgrad_smallc(const Conv2dParams& p);

// The cost estimates behind the rule, in "computed micro-kernel flops + packing, per useful
// flop" (>= 1; exposed for the header's tables and tests of the rule's monotonicity).
double wide_fwd_cost(const Conv2dParams& p);
// Whether the forward of p runs as the blocked direct convolution (conv2d_blocked.cpp) under
// the rule (conv2d_route.cpp's header).
bool blocked_fwd_wins(const Conv2dParams& p);
double gemm_fwd_cost(const Conv2dParams& p, int64_t imgs);
double wide_bwd_data_cost(const Conv2dParams& p);
double gemm_bwd_data_cost(const Conv2dParams& p, int64_t imgs);
double wide_wgrad_cost(const Conv2dParams& p);
double gemm_wgrad_cost(const Conv2dParams& p);
// Images per GEMM problem for p (1 for planes of >= half a column block).
int64_t gemm_images(const Conv2dParams& p);
// Images side by side on the wide grid of the forward / backward-data pass.
int64_t wide_fwd_images(const Conv2dParams& p);
int64_t wide_bwd_data_images(const Conv2dParams& p);

}  // namespace fastcnn::cpu
