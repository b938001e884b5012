// common.cuh -- what every CUDA file of fastcnn shares:
//  * errors: every CUDA error becomes std::runtime_error("fastcnn CUDA error in <op>: <name>:
//    <string>") (RuntimeError in Python); nothing exits or aborts;
//  * launch(): one kernel launch on the caller's stream, checked (cudaGetLastError);
//  * grid sizes that are valid for any shape: 1-D grids are capped and every kernel loops
//    (grid-stride), 2-D/3-D GEMM grids are capped at 65535 in y and z and loop too;
//  * FastDiv: division by a run-time constant with a multiply-high (31-bit dividends; larger
//    ones fall back to a 64-bit division, so int64 index maths stays exact for any size);
//  * block_sum: a fixed-shape tree reduction (deterministic);
//  * the one templated SGEMM core shared by conv2d.cu and linear.cu (gemm_core.cuh, included at
//    the end of this file).
//
// Test hooks (no effect on a normal build):
//  * compiled as C++ with -DFASTCNN_CUDA_EMULATE='"path.h"', the kernels run on a CPU emulator of
//    blocks, threads, shared memory, barriers and warp shuffles supplied by that header (launch()
//    below is the only code that knows about it);
//  * the launch caps and FASTCNN_CUDA_NARROW_LIMIT can be lowered with -D so that small tests
//    exercise the grid-stride loops and the 64-bit index paths.
#pragma once
#include <cstdint>
#include <initializer_list>
#include <stdexcept>
#include <string>

#ifdef FASTCNN_CUDA_EMULATE
#include FASTCNN_CUDA_EMULATE
#else
#include <cuda_runtime.h>
#endif

#include "common/check.h"
#include "cuda/launch.h"

#define FASTCNN_HD __host__ __device__ __forceinline__
#define FASTCNN_D __device__ __forceinline__

// Launch caps. y/z are the hardware limits; x is a policy (grid-stride loops do the rest).
#ifndef FASTCNN_CUDA_MAX_BLOCKS_1D
#define FASTCNN_CUDA_MAX_BLOCKS_1D 16384
#endif
#ifndef FASTCNN_CUDA_MAX_GRID_X
#define FASTCNN_CUDA_MAX_GRID_X 2147483647
#endif
#ifndef FASTCNN_CUDA_MAX_GRID_YZ
#define FASTCNN_CUDA_MAX_GRID_YZ 65535
#endif
// Values below this take FastDiv's 32-bit multiply-high path (at most 2^31; tests lower it to 0
// to run every division and every op through the 64-bit path).
#ifndef FASTCNN_CUDA_NARROW_LIMIT
#define FASTCNN_CUDA_NARROW_LIMIT (int64_t{1} << 31)
#endif

namespace fastcnn::cuda {

// ---- errors ------------------------------------------------------------------------------------

[[noreturn]] inline void throw_cuda_error(cudaError_t err, const char* what) {
  throw std::runtime_error(cat("fastcnn CUDA error in ", what, ": ", cudaGetErrorName(err), ": ",
                               cudaGetErrorString(err)));
}

inline void cuda_check(cudaError_t err, const char* what) {
  if (err != cudaSuccess) {
    (void)cudaGetLastError();  // clear a non-sticky error so later calls start clean
    throw_cuda_error(err, what);
  }
}

inline cudaStream_t as_stream(Stream s) { return reinterpret_cast<cudaStream_t>(s); }

// Launches kernel<<<grid, block, 0, stream>>>(args...) and throws on any error it reports.
template <typename... KArgs, typename... Args>
void launch(const char* what, void (*kernel)(KArgs...), dim3 grid, dim3 block, Stream stream,
            Args&&... args) {
#ifdef FASTCNN_CUDA_EMULATE
  fastcnn_emu::run(grid, block, [=] { kernel(args...); }, as_stream(stream));  // by value: a
  // capturing stream records the launch to replay it later
#else
  kernel<<<grid, block, 0, as_stream(stream)>>>(static_cast<Args&&>(args)...);
#endif
  cuda_check(cudaGetLastError(), what);
}

// ---- integer helpers (host and device) ---------------------------------------------------------

FASTCNN_HD int64_t imin(int64_t a, int64_t b) { return a < b ? a : b; }
FASTCNN_HD int64_t imax(int64_t a, int64_t b) { return a > b ? a : b; }
FASTCNN_HD int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }  // a >= 0, b > 0
FASTCNN_HD int64_t floor_div(int64_t a, int64_t b) {                          // b > 0
  return a >= 0 ? a / b : -((-a + b - 1) / b);
}
FASTCNN_HD int64_t pos_mod(int64_t a, int64_t b) { return a - floor_div(a, b) * b; }  // b > 0
FASTCNN_HD int64_t round_up(int64_t a, int64_t b) { return ceil_div(a, b) * b; }
FASTCNN_HD uint32_t umulhi32(uint32_t a, uint32_t b) {
#if defined(__CUDA_ARCH__)
  return __umulhi(a, b);
#else
  return static_cast<uint32_t>((static_cast<uint64_t>(a) * b) >> 32);
#endif
}

// n / d for a divisor fixed at launch (Granlund & Montgomery, "Division by invariant integers
// using multiplication", round-up variant): for 1 <= d < 2^31 and 0 <= n < 2^31,
//   l = ceil(log2 d), mul = floor(2^32 (2^l - d) / d) + 1, q = (mulhi(n, mul) + n) >> l
// is exact (mulhi(n, mul) <= n, so the sum fits in 32 bits). Anything else takes a 64-bit
// division, so callers may pass any int64 0 <= n < 2^63.
struct FastDiv {
  int64_t d = 1;
  uint32_t mul = 1, shift = 0;
  bool fast = true;

  FastDiv() = default;
  FASTCNN_HD explicit FastDiv(int64_t divisor) : d(divisor < 1 ? 1 : divisor) {
    static_assert(FASTCNN_CUDA_NARROW_LIMIT <= (int64_t{1} << 31), "narrow path is 31-bit");
    fast = d < FASTCNN_CUDA_NARROW_LIMIT;
    if (fast) {
      uint32_t l = 0;
      while ((int64_t{1} << l) < d) ++l;
      mul = static_cast<uint32_t>(((uint64_t{1} << 32) * ((uint64_t{1} << l) - static_cast<uint64_t>(d))) /
                                  static_cast<uint64_t>(d)) + 1u;
      shift = l;
    }
  }
  FASTCNN_HD int64_t div(int64_t n) const {
    if (fast && n >= 0 && n < FASTCNN_CUDA_NARROW_LIMIT) {
      const uint32_t n32 = static_cast<uint32_t>(n);
      return static_cast<int64_t>((umulhi32(n32, mul) + n32) >> shift);
    }
    return n / d;
  }
  // q = n / d, returns n - q*d
  FASTCNN_HD int64_t divmod(int64_t n, int64_t& q) const {
    q = div(n);
    return n - q * d;
  }
  // The same with the path fixed at compile time (hot loops; no 64-bit division code, and so
  // no register pressure from it, on the narrow path): kWide = false requires 0 <= n < 2^31
  // and d < 2^31, which the launcher establishes for the whole problem.
  template <bool kWide>
  FASTCNN_HD int64_t divmod_t(int64_t n, int64_t& q) const {
    if (kWide) {
      q = n / d;
    } else {
      const uint32_t n32 = static_cast<uint32_t>(n);
      q = static_cast<int64_t>((umulhi32(n32, mul) + n32) >> shift);
    }
    return n - q * d;
  }
};

// True when every value in the list is below 2^31 (the narrow FastDiv path is exact).
inline bool fits31(std::initializer_list<int64_t> values) {
  for (int64_t v : values)
    if (v < 0 || v >= FASTCNN_CUDA_NARROW_LIMIT) return false;
  return true;
}

// ---- grids -------------------------------------------------------------------------------------

constexpr int kThreads = 256;  // block size of the elementwise / reduction kernels

// 1-D grid for n work items of `per_block` each: at least 1 block, capped (kernels grid-stride).
inline dim3 grid_1d(int64_t n, int64_t per_block = kThreads) {
  const int64_t b = imax(1, imin(ceil_div(imax(n, 1), per_block), FASTCNN_CUDA_MAX_BLOCKS_1D));
  return dim3(static_cast<unsigned>(b));
}

FASTCNN_D int64_t global_thread() {
  return static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
}
FASTCNN_D int64_t grid_threads() { return static_cast<int64_t>(gridDim.x) * blockDim.x; }

// Sum of v over the kThreads threads of the block in a fixed tree (every thread gets the result).
// smem holds kThreads elements. Contains __syncthreads: call from all threads of the block.
template <typename T>
FASTCNN_D T block_sum(T v, T* smem) {
  const int t = threadIdx.x;
  smem[t] = v;
  __syncthreads();
#pragma unroll
  for (int h = kThreads / 2; h > 0; h >>= 1) {
    if (t < h) smem[t] = smem[t] + smem[t + h];
    __syncthreads();
  }
  const T r = smem[0];
  __syncthreads();  // smem may be reused right after
  return r;
}


// ReLU of the epilogues: PyTorch's clamp_min(v, 0), NaN kept (same bits as the CPU's store_tile).
FASTCNN_HD float relu_keep_nan(float v) { return (v > 0.0f || v != v) ? v : 0.0f; }

}  // namespace fastcnn::cuda

// The SGEMM core (tile shapes, the tile rule, split-K policy): gemm_core.cuh.
#include "cuda/gemm_core.cuh"
