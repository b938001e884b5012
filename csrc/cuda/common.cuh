// common.cuh -- what every CUDA file of fastcnn shares:
//  * errors: every CUDA error becomes std::runtime_error("fastcnn CUDA error in <op>: <name>:
//    <string>") (RuntimeError in Python); nothing exits or aborts;
//  * launch(): one kernel launch on the caller's stream, checked (cudaGetLastError);
//  * grid sizes that are valid for any shape: 1-D grids are capped and every kernel loops
//    (grid-stride), 2-D/3-D GEMM grids are capped at 65535 in y and z and loop too;
//  * FastDiv: division by a run-time constant with a multiply-high (31-bit dividends; larger
//    ones fall back to a 64-bit division, so int64 index maths stays exact for any size);
//  * block_sum: a fixed-shape tree reduction (deterministic);
//  * the one templated SGEMM core shared by conv2d.cu and linear.cu (see "GEMM core" below).
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
  fastcnn_emu::run(grid, block, [&] { kernel(args...); });
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

// ================================================================================================
// GEMM core
// ================================================================================================
// For each "group" g < G (a batch item / conv group / stride phase; G*splits in grid z) and each
// split s < splits of the reduction:
//     C_g[m, n] (+)= sum over k in [s*chunk, min(K_g, (s+1)*chunk)) of A_g[m, k] * B_g[k, n]
// where A_g, B_g and the destination of C_g are described by an Op:
//     struct Op {
//       static constexpr bool kAContigK, kBContigK;   // which index is contiguous in memory
//       int64_t G, splits, chunk;                    // chunk: multiple of BK
//       int64_t M, N, K;                             // may be set per group by bind()
//       __device__ void bind(int64_t g);             // per-group geometry (a copy of the Op)
//       __device__ float a(int64_t m, int64_t k) const;    // m < M, k < K
//       __device__ float b(int64_t k, int64_t n) const;    // k < K, n < N
//       __device__ void store(int64_t s, int64_t m, int64_t n, float v) const;
//     };
// A and B are read through a() / b(), so im2col and strided or transposed operands are computed
// on the fly (zero for padding) and nothing is materialised.
//
// Tiling: a 64 x 128 block tile, BK = 8, 256 threads in a 16 x 16 grid, each thread a 4 x 8
// register tile (rows ty*4 .. +4, columns tx*4 .. +4 and 64 + tx*4 .. +4, so that its float4
// reads of a shared B row are conflict-free). A (64 x 8) and B (8 x 128) tiles are staged in
// registers (2 + 4 loads per thread, mapped so that consecutive threads read consecutive
// addresses along the operand's contiguous index), stored to shared memory k-major (As[k][m],
// Bs[k][n], rows padded by 4 floats: conflict-free stores for both mappings), double-buffered:
// the next tile's global loads are issued before the current tile's 8 x 32 FMAs, one barrier per
// step. Per k step a thread does 32 FMAs for 3 shared float4 loads.
// Napkin: 2*64*128*8 = 131 kflop per block step from 6 KB of shared tiles; ~12.8 KB shared per
// block, <= 128 registers, 2+ blocks per SM.
namespace gemm {

constexpr int BM = 64, BN = 128, BK = 8, TM = 4, TN = 8, THREADS = 256;
constexpr int APAD = 4, BPAD = 4;
// Split-K policy (a function of the shapes only, so results are identical on every GPU): aim at
// kTargetBlocks blocks, never below kMinChunk reduction steps per split, at most kMaxSplits.
constexpr int64_t kTargetBlocks = 264, kMinChunk = 256, kMaxSplits = 64;

struct Split {
  int64_t splits = 1, chunk = BK;
};

inline int64_t tiles(int64_t G, int64_t M, int64_t N) {
  return G * ceil_div(imax(M, 1), BM) * ceil_div(imax(N, 1), BN);
}

// A fixed split of a reduction of length K (allow = false: never split).
inline Split choose_split(int64_t G, int64_t M, int64_t N, int64_t K, bool allow) {
  Split s;
  s.chunk = round_up(imax(K, 1), BK);
  if (!allow || K < 2 * kMinChunk) return s;
  const int64_t want = ceil_div(kTargetBlocks, tiles(G, M, N));
  const int64_t n = imax(1, imin(imin(want, K / kMinChunk), kMaxSplits));
  if (n <= 1) return s;
  s.chunk = round_up(ceil_div(K, n), BK);
  s.splits = ceil_div(K, s.chunk);
  if (s.splits <= 1) s = Split{1, round_up(imax(K, 1), BK)};
  return s;
}

// The element thread tid loads in its i-th load of a tile that is kExtent (BM for A, BN for B)
// by BK: (k, mn), with consecutive threads along k when the operand is contiguous in k
// (kContigK), along m / n otherwise (coalesced either way).
template <bool kContigK, int kExtent>
FASTCNN_D void tile_coord(int tid, int i, int& k, int& mn) {
  if (kContigK) {
    k = tid % BK;
    mn = tid / BK + i * (THREADS / BK);
  } else {
    mn = tid % kExtent;
    k = tid / kExtent + i * (THREADS / kExtent);
  }
}

constexpr int A_LOADS = BM * BK / THREADS;  // 2
constexpr int B_LOADS = BK * BN / THREADS;  // 4
static_assert(A_LOADS * THREADS == BM * BK && B_LOADS * THREADS == BK * BN, "tile split");
static_assert(BM == 16 * TM && BN == 16 * TN, "16 x 16 threads");

template <class Op>
FASTCNN_D void tile(const Op& v, int64_t m0, int64_t n0, int64_t kbeg, int64_t kend, int64_t split,
                    float (*As)[BK][BM + APAD], float (*Bs)[BK][BN + BPAD]) {
  const int tid = threadIdx.x;
  const int ty = tid / 16, tx = tid % 16;
  float acc[TM][TN];
#pragma unroll
  for (int i = 0; i < TM; ++i)
#pragma unroll
    for (int j = 0; j < TN; ++j) acc[i][j] = 0.0f;

  float ra[A_LOADS], rb[B_LOADS];
  auto load = [&](int64_t k0) {
#pragma unroll
    for (int i = 0; i < A_LOADS; ++i) {
      int m, k;
      tile_coord<Op::kAContigK, BM>(tid, i, k, m);
      const int64_t gm = m0 + m, gk = k0 + k;
      ra[i] = (gm < v.M && gk < kend) ? v.a(gm, gk) : 0.0f;
    }
#pragma unroll
    for (int i = 0; i < B_LOADS; ++i) {
      int k, n;
      tile_coord<Op::kBContigK, BN>(tid, i, k, n);
      const int64_t gk = k0 + k, gn = n0 + n;
      rb[i] = (gk < kend && gn < v.N) ? v.b(gk, gn) : 0.0f;
    }
  };
  auto stash = [&](int buf) {
#pragma unroll
    for (int i = 0; i < A_LOADS; ++i) {
      int m, k;
      tile_coord<Op::kAContigK, BM>(tid, i, k, m);
      As[buf][k][m] = ra[i];
    }
#pragma unroll
    for (int i = 0; i < B_LOADS; ++i) {
      int k, n;
      tile_coord<Op::kBContigK, BN>(tid, i, k, n);
      Bs[buf][k][n] = rb[i];
    }
  };

  if (kbeg < kend) {
    load(kbeg);
    stash(0);
  }
  __syncthreads();
  int buf = 0;
  for (int64_t k0 = kbeg; k0 < kend; k0 += BK) {
    const bool more = k0 + BK < kend;
    if (more) load(k0 + BK);
#pragma unroll
    for (int kk = 0; kk < BK; ++kk) {
      const float4 a4 = *reinterpret_cast<const float4*>(&As[buf][kk][ty * TM]);
      const float4 b0 = *reinterpret_cast<const float4*>(&Bs[buf][kk][tx * 4]);
      const float4 b1 = *reinterpret_cast<const float4*>(&Bs[buf][kk][BN / 2 + tx * 4]);
      const float a[TM] = {a4.x, a4.y, a4.z, a4.w};
      const float b[TN] = {b0.x, b0.y, b0.z, b0.w, b1.x, b1.y, b1.z, b1.w};
#pragma unroll
      for (int i = 0; i < TM; ++i)
#pragma unroll
        for (int j = 0; j < TN; ++j) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
    }
    if (more) stash(buf ^ 1);
    __syncthreads();
    buf ^= 1;
  }

#pragma unroll
  for (int i = 0; i < TM; ++i) {
    const int64_t gm = m0 + ty * TM + i;
    if (gm >= v.M) continue;
#pragma unroll
    for (int j = 0; j < TN; ++j) {
      const int64_t gn = n0 + (j < 4 ? tx * 4 + j : BN / 2 + tx * 4 + (j - 4));
      if (gn < v.N) v.store(split, gm, gn, acc[i][j]);
    }
  }
}

template <class Op>
__global__ void __launch_bounds__(THREADS, 2) gemm_kernel(const Op op) {
  __shared__ __align__(16) float As[2][BK][BM + APAD];
  __shared__ __align__(16) float Bs[2][BK][BN + BPAD];
  const int64_t GS = op.G * op.splits;
  for (int64_t z = blockIdx.z; z < GS; z += gridDim.z) {
    const int64_t g = z / op.splits, split = z - g * op.splits;
    Op v = op;
    v.bind(g);
    const int64_t kbeg = split * op.chunk;
    const int64_t kend = imin(v.K, kbeg + op.chunk);
    const int64_t mtiles = ceil_div(v.M, BM), ntiles = ceil_div(v.N, BN);
    for (int64_t my = blockIdx.y; my < mtiles; my += gridDim.y)
      for (int64_t nx = blockIdx.x; nx < ntiles; nx += gridDim.x)
        tile(v, my * BM, nx * BN, kbeg, kend, split, As, Bs);
  }
}

// Launches the GEMM for op; max_m / max_n bound M and N over all groups (grid size only).
template <class Op>
void run(const char* what, const Op& op, int64_t max_m, int64_t max_n, Stream stream) {
  const int64_t gx = imax(1, imin(ceil_div(max_n, BN), FASTCNN_CUDA_MAX_GRID_X));
  const int64_t gy = imax(1, imin(ceil_div(max_m, BM), FASTCNN_CUDA_MAX_GRID_YZ));
  const int64_t gz = imax(1, imin(op.G * op.splits, FASTCNN_CUDA_MAX_GRID_YZ));
  if (op.G * op.splits == 0 || max_m <= 0 || max_n <= 0) return;
  launch(what, gemm_kernel<Op>,
         dim3(static_cast<unsigned>(gx), static_cast<unsigned>(gy), static_cast<unsigned>(gz)),
         dim3(THREADS), stream, op);
}

}  // namespace gemm

// ReLU of the epilogues: PyTorch's clamp_min(v, 0), NaN kept (same bits as the CPU's store_tile).
FASTCNN_HD float relu_keep_nan(float v) { return (v > 0.0f || v != v) ? v : 0.0f; }

}  // namespace fastcnn::cuda
