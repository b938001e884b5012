// global_pool2d.cu -- global average / max pooling over each (H, W) plane, and their backwards.
// Shapes: x (N, C, H, W) -> y (N, C) [, idx (N, C) int64 into H*W]; dx (N, C, H, W) from dy (N, C).
// Semantics: exactly the CPU kernels' (csrc/cpu/generic/global_pool2d.cpp), so the same bits:
//   average: one warp per plane, lane l summing x[l], x[l+32], ... in increasing order from 0:
//     the CPU's 32 lane sums s[l]; then an xor-butterfly of shuffles adds s[l] + s[l+16], + 8,
//     + 4, + 2, + 1 (IEEE addition commutes exactly, so lane 0 holds the CPU's fixed tree);
//     y = sum / float(H*W). Loads: each warp reads 128 contiguous bytes per step (coalesced);
//     128-bit loads would change which lane sums which element, i.e. the bits.
//   max: one warp per plane, each lane max_pool2d's sequential rule over its elements (`v > best
//     || isnan(v)`, from -inf and no index), then a butterfly merge under the rule's total
//     order (a NaN with a larger index > a NaN > larger values; equal values: the smaller
//     index): the first maximum in row-major order, the last NaN; an all -inf plane gives
//     index 0. y = x[idx].
//   backward: one thread per dx element (float4 stores when H*W % 4 == 0 and dx is 16-byte
//     aligned): dy / float(H*W), or 0 + dy at the plane's index and 0 elsewhere. User-given
//     indices are checked first on the device (an atomicMin flag, one 8-byte copy and a sync):
//     an index outside the plane is the CPU's ValueError.
// Napkin: ResNet's 8x8 x 64 channels x batch 256: 16k planes of 256 B = 4 MB, read once: a few
// us at 3 TB/s; a warp per 64-float plane does 2 loads per lane + 5 shuffles.
#include "cuda/common.cuh"

namespace fastcnn::cuda {
namespace {

constexpr int kWarp = 32;

FASTCNN_D int64_t global_warp() { return global_thread() / kWarp; }
FASTCNN_D int64_t grid_warps() { return grid_threads() / kWarp; }

__global__ void __launch_bounds__(kThreads)
    gavg_fwd_kernel(const float* __restrict__ x, float* __restrict__ y, int64_t planes,
                    int64_t HW) {
  const int lane = static_cast<int>(threadIdx.x % kWarp);
  for (int64_t pl = global_warp(); pl < planes; pl += grid_warps()) {  // warp-uniform
    const float* xp = x + pl * HW;
    float s = 0.0f;
    for (int64_t i = lane; i < HW; i += kWarp) s += xp[i];
#pragma unroll
    for (int h = 16; h >= 1; h >>= 1) s = s + __shfl_xor_sync(0xffffffffu, s, h);
    if (lane == 0) y[pl] = s / static_cast<float>(HW);
  }
}

// Is (v2, i2) chosen over (v1, i1) by max_pool2d's rule? (i: the element's index in the plane)
FASTCNN_D bool prefer(float v1, int64_t i1, float v2, int64_t i2) {
  const bool n1 = v1 != v1, n2 = v2 != v2;
  if (n1 || n2) return n2 && (!n1 || i2 > i1);
  return v2 > v1 || (v2 == v1 && i2 < i1);
}

__global__ void __launch_bounds__(kThreads)
    gmax_fwd_kernel(const float* __restrict__ x, float* __restrict__ y, int64_t* __restrict__ idx,
                    int64_t planes, int64_t HW) {
  constexpr int64_t kNone = 0x7fffffffffffffffLL;
  const int lane = static_cast<int>(threadIdx.x % kWarp);
  const float ninf = -__int_as_float(0x7f800000);
  for (int64_t pl = global_warp(); pl < planes; pl += grid_warps()) {  // warp-uniform
    const float* xp = x + pl * HW;
    float best = ninf;
    int64_t bi = kNone;
    for (int64_t i = lane; i < HW; i += kWarp) {
      const float v = xp[i];
      if (v > best || v != v) {
        best = v;
        bi = i;
      }
    }
#pragma unroll
    for (int h = 16; h >= 1; h >>= 1) {
      const float ov = __shfl_xor_sync(0xffffffffu, best, h);
      const int64_t oi = __shfl_xor_sync(0xffffffffu, bi, h);
      if (prefer(best, bi, ov, oi)) {
        best = ov;
        bi = oi;
      }
    }
    if (lane == 0) {
      const int64_t j = bi == kNone ? 0 : bi;  // nothing above -inf: the first element
      y[pl] = xp[j];
      if (idx) idx[pl] = j;
    }
  }
}

__global__ void __launch_bounds__(kThreads)
    gavg_bwd_kernel(const float* __restrict__ dy, float* __restrict__ dx, int64_t total,
                    int64_t HW, FastDiv div_HW, int vec) {
  const float hw = static_cast<float>(HW);
  if (vec) {  // HW % 4 == 0: a float4 never straddles two planes
    float4* d4 = reinterpret_cast<float4*>(dx);
    const FastDiv div_q(HW / 4);
    for (int64_t i = global_thread(); i < total / 4; i += grid_threads()) {
      const float v = dy[div_q.div(i)] / hw;
      d4[i] = make_float4(v, v, v, v);
    }
    return;
  }
  for (int64_t i = global_thread(); i < total; i += grid_threads()) dx[i] = dy[div_HW.div(i)] / hw;
}

__global__ void __launch_bounds__(kThreads)
    gmax_bwd_kernel(const float* __restrict__ dy, const int64_t* __restrict__ idx,
                    float* __restrict__ dx, int64_t total, FastDiv div_HW, int vec) {
  if (vec) {
    float4* d4 = reinterpret_cast<float4*>(dx);
    for (int64_t i = global_thread(); i < total / 4; i += grid_threads()) {
      int64_t plane;
      const int64_t w = div_HW.divmod(4 * i, plane);
      const int64_t j = idx[plane] - w;
      const float v = 0.0f + dy[plane];
      d4[i] = make_float4(j == 0 ? v : 0.0f, j == 1 ? v : 0.0f, j == 2 ? v : 0.0f,
                          j == 3 ? v : 0.0f);
    }
    return;
  }
  for (int64_t i = global_thread(); i < total; i += grid_threads()) {
    int64_t plane;
    const int64_t w = div_HW.divmod(i, plane);
    dx[i] = idx[plane] == w ? 0.0f + dy[plane] : 0.0f;
  }
}

// flag: the smallest plane whose index lies outside [0, HW) (~0 when none)
__global__ void __launch_bounds__(kThreads)
    gmax_check_kernel(const int64_t* __restrict__ idx, int64_t planes, int64_t HW,
                      unsigned long long* flag) {
  for (int64_t i = global_thread(); i < planes; i += grid_threads()) {
    const int64_t v = idx[i];
    if (v < 0 || v >= HW) atomicMin(flag, static_cast<unsigned long long>(i));
  }
}

bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15u) == 0; }

}  // namespace

void global_avg_pool2d_forward(const float* x, float* y, const GlobalPool2dParams& p,
                               Stream stream) {
  if (p.planes() <= 0) return;
  launch("global_avg_pool2d", gavg_fwd_kernel, grid_1d(p.planes() * kWarp), dim3(kThreads),
         stream, x, y, p.planes(), p.HW());
}

void global_avg_pool2d_backward(const float* dy, float* dx, const GlobalPool2dParams& p,
                                Stream stream) {
  const int64_t total = p.planes() * p.HW();
  if (total <= 0) return;
  const int vec = p.HW() % 4 == 0 && aligned16(dx);
  launch("global_avg_pool2d_backward", gavg_bwd_kernel, grid_1d(vec ? total / 4 : total),
         dim3(kThreads), stream, dy, dx, total, p.HW(), FastDiv(p.HW()), vec);
}

void global_max_pool2d_forward(const float* x, float* y, int64_t* idx,
                               const GlobalPool2dParams& p, Stream stream) {
  if (p.planes() <= 0) return;
  launch("global_max_pool2d", gmax_fwd_kernel, grid_1d(p.planes() * kWarp), dim3(kThreads),
         stream, x, y, idx, p.planes(), p.HW());
}

void global_max_pool2d_backward(const float* dy, const int64_t* idx, float* dx,
                                const GlobalPool2dParams& p, bool check_indices, void* ws,
                                Stream stream) {
  const int64_t total = p.planes() * p.HW();
  if (total <= 0) return;
  if (check_indices) {
    auto* flag = static_cast<unsigned long long*>(ws);
    cudaStream_t s = as_stream(stream);
    const char* op = "global_max_pool2d_backward";
    cuda_check(cudaMemsetAsync(flag, 0xff, sizeof(unsigned long long), s), op);
    launch("global_max_pool2d_backward (indices)", gmax_check_kernel, grid_1d(p.planes()),
           dim3(kThreads), stream, idx, p.planes(), p.HW(), flag);
    unsigned long long host = 0;
    cuda_check(cudaMemcpyAsync(&host, flag, sizeof(host), cudaMemcpyDeviceToHost, s), op);
    cuda_check(cudaStreamSynchronize(s), op);
    if (host != ~0ull) {
      const int64_t i = static_cast<int64_t>(host);
      int64_t v = 0;
      cuda_check(cudaMemcpyAsync(&v, idx + i, sizeof(v), cudaMemcpyDeviceToHost, s), op);
      cuda_check(cudaStreamSynchronize(s), op);
      FASTCNN_CHECK(false, op, ": indices[", i / p.C, ", ", i % p.C, "] = ", v,
                    " is outside the input plane of ", p.H, " x ", p.W, " = ", p.HW(),
                    " elements");
    }
  }
  const int vec = p.HW() % 4 == 0 && aligned16(dx);
  launch("global_max_pool2d_backward", gmax_bwd_kernel, grid_1d(vec ? total / 4 : total),
         dim3(kThreads), stream, dy, idx, dx, total, FastDiv(p.HW()), vec);
}

}  // namespace fastcnn::cuda
