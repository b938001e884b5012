// relu.cu -- ReLU forward / backward, elementwise over any shape (n elements).
//   relu_forward   y[i]  = x[i] < 0 ? 0 : x[i]     NaN and -0.0 pass through unchanged (the CPU
//                  kernels' bits, PyTorch's clamp_min)
//   relu_backward  dx[i] = y[i] <= 0 ? 0 : dy[i]   (PyTorch threshold_backward: NaN y passes dy)
// Approach: grid-stride loops over float4 when every pointer is 16-byte aligned (scalar
// otherwise and for the tail); in-place (x == y, dy == dx) is fine.
// Napkin: ReLU moves 8 B/element (12 backward): 64 M elements ~ 0.16 ms at 3 TB/s.
#include "cuda/common.cuh"

namespace fastcnn::cuda {
namespace {

FASTCNN_D float relu_f(float v) { return v < 0.0f ? 0.0f : v; }
FASTCNN_D float relu_b(float d, float y) { return y <= 0.0f ? 0.0f : d; }

__global__ void __launch_bounds__(kThreads)
    relu_fwd_kernel(const float* x, float* y, int64_t n, int vec) {
  const int64_t start = global_thread(), step = grid_threads();
  int64_t done = 0;
  if (vec) {
    const int64_t n4 = n / 4;
    const float4* x4 = reinterpret_cast<const float4*>(x);
    float4* y4 = reinterpret_cast<float4*>(y);
    for (int64_t i = start; i < n4; i += step) {
      float4 v = x4[i];
      v.x = relu_f(v.x), v.y = relu_f(v.y), v.z = relu_f(v.z), v.w = relu_f(v.w);
      y4[i] = v;
    }
    done = n4 * 4;
  }
  for (int64_t i = done + start; i < n; i += step) y[i] = relu_f(x[i]);
}

__global__ void __launch_bounds__(kThreads)
    relu_bwd_kernel(const float* dy, const float* y, float* dx, int64_t n, int vec) {
  const int64_t start = global_thread(), step = grid_threads();
  int64_t done = 0;
  if (vec) {
    const int64_t n4 = n / 4;
    const float4* d4 = reinterpret_cast<const float4*>(dy);
    const float4* y4 = reinterpret_cast<const float4*>(y);
    float4* o4 = reinterpret_cast<float4*>(dx);
    for (int64_t i = start; i < n4; i += step) {
      const float4 d = d4[i], yy = y4[i];
      o4[i] = make_float4(relu_b(d.x, yy.x), relu_b(d.y, yy.y), relu_b(d.z, yy.z),
                          relu_b(d.w, yy.w));
    }
    done = n4 * 4;
  }
  for (int64_t i = done + start; i < n; i += step) dx[i] = relu_b(dy[i], y[i]);
}

bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15u) == 0; }

}  // namespace

void relu_forward(const float* x, float* y, int64_t n, Stream stream) {
  if (n <= 0) return;
  const int vec = aligned16(x) && aligned16(y);
  launch("relu", relu_fwd_kernel, grid_1d(vec ? ceil_div(n, 4) : n), dim3(kThreads), stream, x,
         y, n, vec);
}

void relu_backward(const float* dy, const float* y, float* dx, int64_t n, Stream stream) {
  if (n <= 0) return;
  const int vec = aligned16(dy) && aligned16(y) && aligned16(dx);
  launch("relu_backward", relu_bwd_kernel, grid_1d(vec ? ceil_div(n, 4) : n), dim3(kThreads),
         stream, dy, y, dx, n, vec);
}

}  // namespace fastcnn::cuda
