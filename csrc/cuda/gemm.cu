// gemm.cu -- the split-K reduction of the shared tiled SGEMM core (common.cuh), used by
// conv2d.cu and linear.cu: a product whose grid is too small to fill a GPU writes each of its
// fixed, shape-chosen K chunks to its own workspace slice, and this sums the slices in chunk
// order, then applies the epilogue (bias, ReLU). Deterministic, no atomics.
//   out[i] = epilogue(sum over s < splits of ws[s*total + i]),
//   bias index (i / bias_inner) % bias_period (conv: inner P*Q, period K; linear: 1, out)
// Napkin: 9216 -> 128 at batch 64 in 36 splits: a 36 x 8192 float reduction (~1 MB read).
#include <cstdlib>
#include <string>

#include "cuda/common.cuh"

namespace fastcnn::cuda {
namespace {

__global__ void __launch_bounds__(kThreads)
    splitk_reduce_kernel(const float* __restrict__ ws, int64_t splits, int64_t total,
                         float* __restrict__ out, const float* __restrict__ bias, FastDiv inner,
                         FastDiv period, int relu) {
  for (int64_t i = global_thread(); i < total; i += grid_threads()) {
    float s = ws[i];
    for (int64_t j = 1; j < splits; ++j) s += ws[j * total + i];
    if (bias) {
      int64_t ch;
      s += bias[period.divmod(inner.div(i), ch)];  // bias index (i / inner) mod period
    }
    if (relu) s = relu_keep_nan(s);
    out[i] = s;
  }
}

}  // namespace

namespace gemm {
// The multiprocessor count of the current device, cached per device (132 when it can't be
// read: the H100 / H200 SXM count, and what the emulator reports).
int sm_count() noexcept {
  constexpr int kDevices = 64;
  static int cache[kDevices] = {};
  int dev = 0;
  if (cudaGetDevice(&dev) != cudaSuccess || dev < 0) {
    (void)cudaGetLastError();
    return 132;
  }
  if (dev < kDevices && cache[dev] > 0) return cache[dev];
  int n = 0;
  if (cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess || n <= 0) {
    (void)cudaGetLastError();
    n = 132;
  }
  if (dev < kDevices) cache[dev] = n;
  return n;
}

int forced_tile() noexcept {
  const char* t = std::getenv("FASTCNN_CUDA_TILE");
  if (!t) return -1;
  const std::string s(t);
  if (s == "64x128") return static_cast<int>(TileKind::k64x128);
  if (s == "64x64") return static_cast<int>(TileKind::k64x64);
  if (s == "32x128") return static_cast<int>(TileKind::k32x128);
  return -1;
}
}  // namespace gemm

void splitk_reduce(const float* ws, int64_t splits, int64_t total, float* out, const float* bias,
                   int64_t bias_inner, int64_t bias_period, bool relu, Stream stream) {
  if (total <= 0) return;
  launch("splitk_reduce", splitk_reduce_kernel, grid_1d(total), dim3(kThreads), stream, ws,
         splits, total, out, bias, FastDiv(bias_inner), FastDiv(bias_period), relu ? 1 : 0);
}

}  // namespace fastcnn::cuda
