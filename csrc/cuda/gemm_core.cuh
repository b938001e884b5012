// gemm_core.cuh -- the one templated SGEMM core shared by conv2d.cu and linear.cu (included by
// common.cuh, so every CUDA file sees the same definitions).
//
// For each "group" g < G (a batch item / conv group; G*splits in grid z) and each split s of the
// reduction:
//     C_g[m, n] (+)= sum over k in [s*chunk, min(K_g, (s+1)*chunk)) of A_g[m, k] * B_g[k, n]
// where A_g, B_g and the destination of C_g are described by an Op:
//     struct Op {
//       using Idx = int32_t or int64_t;                 // index type of the main loop
//       static constexpr bool kAContigK, kBContigK;     // which index is contiguous in memory
//       int64_t G, splits, chunk;                       // chunk: multiple of BK
//       int64_t M, N, K;                                // may be set per group by bind()
//       __device__ void bind(int64_t g);                // per-group geometry (a copy of the Op)
//       // per operand X in {a, b}: a row state (m of A / n of B, computed once per tile), a
//       // k state (computed once per tile, stepped by BK between k steps: no division in the
//       // k loop), and where an element with m < M (n < N) and k < K lives: its address
//       // (x_ptr) and whether it exists (x_ok: false for a padding zero, whose address is
//       // then never read):
//       XRow x_row(Idx mn) const;  KX x_k(Idx k) const;  void x_step(KX&) const;
//       const float* a_ptr(const ARow&, const KA&) const;  bool a_ok(...) const;  (b likewise)
//       __device__ void store(int64_t s, int64_t m, int64_t n, float v) const;
//       static constexpr bool kStore4;  // and, when true, columns n..n+3 in one store:
//       __device__ bool store4(int64_t s, int64_t m, int64_t n, float4 v) const;  // false
//                                       // (nothing written) when not 16-byte aligned
//     };
// A and B are read through these, so im2col and strided or transposed operands are computed on
// the fly (zero for padding) and nothing is materialised. Idx = int32_t when the launcher has
// established that every offset of the problem fits in 31 bits (the usual case), so the main
// loop's address maths is 32-bit; int64_t otherwise.
//
// Tiling (Cfg): BM x BN block tile, BK = 8, THREADS = (BM/TM)*(BN/TN) threads, each a TM x TN
// register tile whose rows / columns are float4 groups spread over the block tile (conflict-free
// float4 reads of shared memory). Every thread loads one k lane of each operand tile (k-contiguous
// operands: k = tid % BK; others: k = tid / (THREADS/BK)) and extent/(THREADS/BK) rows of it,
// consecutive threads on consecutive addresses along the operand's contiguous index (coalesced),
// so its k state is one object per operand. Tiles go to shared memory k-major (As[k][m],
// Bs[k][n], rows padded by 4 floats: conflict-free stores for both mappings), double-buffered,
// one barrier per step: on sm_80+ the next tile's cp.async copies (LDGSTS, zero-fill for
// padding, no staging registers) are in flight during the current tile's BK x TM x TN FMAs;
// before sm_80 its global loads go to registers before the FMAs and to shared memory after.
// Each output element is the FMA chain over k in increasing order from its split's start, in
// every Cfg: the tile shape changes speed, never bits; only the split (chosen from the shapes
// alone) decides the summation order.
// Napkin (64 x 128): 2*64*128*8 = 131 kflop per block step from 6 KB of shared tiles; per k a
// thread does 32 FMAs for 3 shared float4 loads; ~12.8 KB shared per block, <= 128 registers,
// 2 blocks per SM.
#pragma once
#include <type_traits>

#include "cuda/gemm_rule.h"

namespace fastcnn::cuda {
namespace gemm {

template <int BM_, int BN_, int TM_, int TN_, int MinBlocks_>
struct Cfg {
  static constexpr int BM = BM_, BN = BN_, BK = 8, TM = TM_, TN = TN_;
  static constexpr int TY = BM / TM, TX = BN / TN, THREADS = TX * TY, MIN_BLOCKS = MinBlocks_;
  static constexpr int PAD = 4;
  static constexpr int KROW = THREADS / BK;  // threads per k row of a tile
  static constexpr int A_LOADS = BM / KROW, B_LOADS = BN / KROW;
  static_assert(TM % 4 == 0 && TN % 4 == 0, "float4 groups");
  static_assert(A_LOADS * KROW == BM && B_LOADS * KROW == BN, "tile split");
  static_assert(THREADS % 32 == 0, "whole warps");
};

// The tile shapes (the rule in gemm_rule.h's choose_tile picks one per problem).
using Tile64x128 = Cfg<64, 128, 4, 8, 2>;
using Tile64x64 = Cfg<64, 64, 4, 4, 2>;
using Tile32x128 = Cfg<32, 128, 4, 4, 2>;

// The historical names (the split rule and the workspaces are defined on the 64 x 128 tile).
constexpr int BM = Tile64x128::BM, BN = Tile64x128::BN, BK = 8;
// The split and tile rule (choose_split, choose_tile, Split, TileKind, tiles) is host-only C++
// in gemm_rule.h, shared with the bindings' tile report; it must describe these Cfgs.
static_assert(BK == kRuleBK, "gemm_rule.h's BK");
static_assert(tile_dims(TileKind::k64x128).bm == Tile64x128::BM &&
                  tile_dims(TileKind::k64x128).bn == Tile64x128::BN &&
                  tile_dims(TileKind::k64x64).bm == Tile64x64::BM &&
                  tile_dims(TileKind::k64x64).bn == Tile64x64::BN &&
                  tile_dims(TileKind::k32x128).bm == Tile32x128::BM &&
                  tile_dims(TileKind::k32x128).bn == Tile32x128::BN,
              "gemm_rule.h's tile shapes");
static_assert(Tile64x128::MIN_BLOCKS == kBlocksPerSm && Tile64x64::MIN_BLOCKS == kBlocksPerSm &&
                  Tile32x128::MIN_BLOCKS == kBlocksPerSm,
              "gemm_rule.h's blocks per SM");

// ---- asynchronous global -> shared copies (cp.async) ---------------------------------------------
// On sm_80 and newer the main loop fills its shared tiles with cp.async (LDGSTS: no staging
// registers, the next tile's copies in flight during the current tile's FMAs); older
// architectures keep the synchronous register-staged path. The emulator runs the asynchronous
// path (tools/cuda_emu/cuda_emu.h models cp.async: poison at issue, data at the wait);
// -DFASTCNN_CUDA_NO_CP_ASYNC forces the synchronous one (tests of the old-arch path).
#if defined(FASTCNN_CUDA_NO_CP_ASYNC)
#define FASTCNN_GEMM_ASYNC 0
#elif defined(FASTCNN_CUDA_EMULATE) || (defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800)
#define FASTCNN_GEMM_ASYNC 1
#else
#define FASTCNN_GEMM_ASYNC 0
#endif

#if FASTCNN_GEMM_ASYNC
// *dst = ok ? *src : 0.0f, asynchronously (cp.async.ca, 4 bytes; src-size 0 zero-fills without
// reading src). Lands at the thread's next cp_async_wait_all after a cp_async_commit.
FASTCNN_D void cp_async4(float* dst, const float* src, bool ok) {
#if defined(FASTCNN_CUDA_EMULATE)
  __emu_cp_async(dst, src, 4, ok ? 4 : 0);
#else
  const unsigned d = static_cast<unsigned>(__cvta_generic_to_shared(dst));
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(d), "l"(src),
               "r"(ok ? 4 : 0)
               : "memory");
#endif
}
FASTCNN_D void cp_async_commit() {
#if defined(FASTCNN_CUDA_EMULATE)
  __emu_cp_async_commit();
#else
  asm volatile("cp.async.commit_group;\n" ::: "memory");
#endif
}
FASTCNN_D void cp_async_wait_all() {
#if defined(FASTCNN_CUDA_EMULATE)
  __emu_cp_async_wait(0);
#else
  asm volatile("cp.async.wait_group 0;\n" ::: "memory");
#endif
}
#endif

// *p = v as one 128-bit store when p is 16-byte aligned (true), else nothing (false).
FASTCNN_D bool store_float4(float* p, const float4& v) {
  if ((reinterpret_cast<uintptr_t>(p) & 15u) != 0) return false;
  *reinterpret_cast<float4*>(p) = v;
  return true;
}

// k lane and the i-th row (m / n) a thread loads of a tile of `extent` rows by BK.
template <class C, bool kContigK>
FASTCNN_D int k_lane(int tid) {
  return kContigK ? tid % C::BK : tid / C::KROW;
}
template <class C, bool kContigK>
FASTCNN_D int mn_of(int tid, int i) {
  return kContigK ? tid / C::BK + i * C::KROW : tid % C::KROW + i * C::KROW;
}

template <class C, class Op>
FASTCNN_D void tile(const Op& v, int64_t m0_, int64_t n0_, int64_t kbeg_, int64_t kend_,
                    int64_t split, float (*As)[C::BK][C::BM + C::PAD],
                    float (*Bs)[C::BK][C::BN + C::PAD]) {
  using Idx = typename Op::Idx;
  constexpr int BK_ = C::BK;
  const int tid = threadIdx.x;
  const int ty = tid / C::TX, tx = tid % C::TX;
  const Idx m0 = static_cast<Idx>(m0_), n0 = static_cast<Idx>(n0_);
  const Idx kbeg = static_cast<Idx>(kbeg_), kend = static_cast<Idx>(kend_);
  const Idx M = static_cast<Idx>(v.M), N = static_cast<Idx>(v.N);

  float acc[C::TM][C::TN];
#pragma unroll
  for (int i = 0; i < C::TM; ++i)
#pragma unroll
    for (int j = 0; j < C::TN; ++j) acc[i][j] = 0.0f;

  // per-thread operand state: rows fixed for the tile, one k state per operand. A row past M
  // (a column past N) only feeds outputs that are never stored, so it is clamped to the last
  // row and loaded without a predicate; only k past the end must read as zero.
  const int ka = k_lane<C, Op::kAContigK>(tid), kb = k_lane<C, Op::kBContigK>(tid);
  typename Op::ARow ar[C::A_LOADS];
  typename Op::BRow br[C::B_LOADS];
#pragma unroll
  for (int i = 0; i < C::A_LOADS; ++i) {
    const Idx gm = m0 + mn_of<C, Op::kAContigK>(tid, i);
    ar[i] = v.a_row(gm < M ? gm : M - 1);
  }
#pragma unroll
  for (int i = 0; i < C::B_LOADS; ++i) {
    const Idx gn = n0 + mn_of<C, Op::kBContigK>(tid, i);
    br[i] = v.b_row(gn < N ? gn : N - 1);
  }
  Idx gka = kbeg + ka, gkb = kbeg + kb;
  typename Op::KA ak = v.a_k(gka);
  typename Op::KB bk = v.b_k(gkb);

  // BK x TM x TN FMAs of the tile in buffer buf
  auto fmas = [&](int buf) {
#pragma unroll
    for (int kk = 0; kk < BK_; ++kk) {
      float a[C::TM], b[C::TN];
#pragma unroll
      for (int g = 0; g < C::TM / 4; ++g) {
        const float4 t = *reinterpret_cast<const float4*>(&As[buf][kk][g * C::TY * 4 + ty * 4]);
        a[4 * g] = t.x, a[4 * g + 1] = t.y, a[4 * g + 2] = t.z, a[4 * g + 3] = t.w;
      }
#pragma unroll
      for (int g = 0; g < C::TN / 4; ++g) {
        const float4 t = *reinterpret_cast<const float4*>(&Bs[buf][kk][g * C::TX * 4 + tx * 4]);
        b[4 * g] = t.x, b[4 * g + 1] = t.y, b[4 * g + 2] = t.z, b[4 * g + 3] = t.w;
      }
#pragma unroll
      for (int i = 0; i < C::TM; ++i)
#pragma unroll
        for (int j = 0; j < C::TN; ++j) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
    }
  };

#if FASTCNN_GEMM_ASYNC
  // Asynchronous double buffering, one barrier per step: at the top of step k every thread
  // waits for its own copies of tile k, and the barrier makes all of them visible and ends
  // every thread's reads of tile k-1, whose buffer the copies of tile k+1 (issued right
  // after, in flight during tile k's FMAs) then overwrite.
  auto issue = [&](int buf) {
    const bool ina = gka < kend, inb = gkb < kend;
#pragma unroll
    for (int i = 0; i < C::A_LOADS; ++i)
      cp_async4(&As[buf][ka][mn_of<C, Op::kAContigK>(tid, i)], v.a_ptr(ar[i], ak),
                ina && v.a_ok(ar[i], ak));
#pragma unroll
    for (int i = 0; i < C::B_LOADS; ++i)
      cp_async4(&Bs[buf][kb][mn_of<C, Op::kBContigK>(tid, i)], v.b_ptr(br[i], bk),
                inb && v.b_ok(br[i], bk));
    cp_async_commit();
    gka += BK_, gkb += BK_;
    v.a_step(ak);
    v.b_step(bk);
  };
  if (kbeg < kend) issue(0);
  int buf = 0;
  for (Idx k0 = kbeg; k0 < kend; k0 += BK_) {
    cp_async_wait_all();
    __syncthreads();
    if (k0 + BK_ < kend) issue(buf ^ 1);
    fmas(buf);
    buf ^= 1;
  }
  __syncthreads();  // every read of the shared tiles done before the block's next tile
#else
  // Synchronous double buffering (before sm_80): the next tile's global loads go to registers
  // before the current tile's FMAs and to shared memory after them, one barrier per step.
  float ra[C::A_LOADS], rb[C::B_LOADS];
  auto load = [&]() {
    const bool ina = gka < kend, inb = gkb < kend;
#pragma unroll
    for (int i = 0; i < C::A_LOADS; ++i)
      ra[i] = ina && v.a_ok(ar[i], ak) ? *v.a_ptr(ar[i], ak) : 0.0f;
#pragma unroll
    for (int i = 0; i < C::B_LOADS; ++i)
      rb[i] = inb && v.b_ok(br[i], bk) ? *v.b_ptr(br[i], bk) : 0.0f;
    gka += BK_, gkb += BK_;
    v.a_step(ak);
    v.b_step(bk);
  };
  auto stash = [&](int buf) {
#pragma unroll
    for (int i = 0; i < C::A_LOADS; ++i) As[buf][ka][mn_of<C, Op::kAContigK>(tid, i)] = ra[i];
#pragma unroll
    for (int i = 0; i < C::B_LOADS; ++i) Bs[buf][kb][mn_of<C, Op::kBContigK>(tid, i)] = rb[i];
  };

  if (kbeg < kend) {
    load();
    stash(0);
  }
  __syncthreads();
  int buf = 0;
  for (Idx k0 = kbeg; k0 < kend; k0 += BK_) {
    const bool more = k0 + BK_ < kend;
    if (more) load();
    fmas(buf);
    if (more) stash(buf ^ 1);
    __syncthreads();
    buf ^= 1;
  }
#endif

  // Epilogue. Ops with kStore4 send each row's four-column groups out as one 128-bit store where
  // the destination is 16-byte aligned and all four columns exist (store4 returns false, writing
  // nothing, otherwise); the rest store column by column. (The conv forward and weight-gradient
  // ops stay scalar: at their 128-register cap the vector epilogue spills.)
#pragma unroll
  for (int i = 0; i < C::TM; ++i) {
    const int64_t gm = m0_ + (i / 4) * C::TY * 4 + ty * 4 + i % 4;
    if (gm >= v.M) continue;
#pragma unroll
    for (int g = 0; g < C::TN / 4; ++g) {
      const int64_t gn = n0_ + g * C::TX * 4 + tx * 4;
      if constexpr (Op::kStore4) {
        const float4 q = make_float4(acc[i][4 * g], acc[i][4 * g + 1], acc[i][4 * g + 2],
                                     acc[i][4 * g + 3]);
        if (gn + 3 < v.N && v.store4(split, gm, gn, q)) continue;
      }
#pragma unroll
      for (int j = 0; j < 4; ++j)
        if (gn + j < v.N) v.store(split, gm, gn + j, acc[i][4 * g + j]);
    }
  }
}

template <class C, class Op>
__global__ void __launch_bounds__(C::THREADS, C::MIN_BLOCKS) gemm_kernel(const Op op) {
  __shared__ __align__(16) float As[2][C::BK][C::BM + C::PAD];
  __shared__ __align__(16) float Bs[2][C::BK][C::BN + C::PAD];
  const int64_t GS = op.G * op.splits;
  for (int64_t z = blockIdx.z; z < GS; z += gridDim.z) {
    const int64_t g = z / op.splits, split = z - g * op.splits;
    Op v = op;
    v.bind(g);
    const int64_t kbeg = split * op.chunk;
    const int64_t kend = imin(v.K, kbeg + op.chunk);
    const int64_t mtiles = ceil_div(v.M, C::BM), ntiles = ceil_div(v.N, C::BN);
    for (int64_t my = blockIdx.y; my < mtiles; my += gridDim.y)
      for (int64_t nx = blockIdx.x; nx < ntiles; nx += gridDim.x)
        tile<C>(v, my * C::BM, nx * C::BN, kbeg, kend, split, As, Bs);
  }
}

template <class C, class Op>
void run_cfg(const char* what, const Op& op, int64_t max_m, int64_t max_n, Stream stream) {
  const int64_t gx = imax(1, imin(ceil_div(max_n, C::BN), FASTCNN_CUDA_MAX_GRID_X));
  const int64_t gy = imax(1, imin(ceil_div(max_m, C::BM), FASTCNN_CUDA_MAX_GRID_YZ));
  const int64_t gz = imax(1, imin(op.G * op.splits, FASTCNN_CUDA_MAX_GRID_YZ));
  launch(what, gemm_kernel<C, Op>,
         dim3(static_cast<unsigned>(gx), static_cast<unsigned>(gy), static_cast<unsigned>(gz)),
         dim3(C::THREADS), stream, op);
}

// The SM count the tile rule sizes grids for (cached per process; 132 = an H100 / H200 SXM when
// no device answers, as in the emulator).
int sm_count() noexcept;
// Test hook: FASTCNN_CUDA_TILE=64x128 / 64x64 / 32x128 in the environment forces that tile
// (-1: the rule decides). Tiles never change results, so tests compare the bits across tiles.
int forced_tile() noexcept;

// Launches the GEMM for op on the tile the rule picks; max_m / max_n bound M and N over all
// groups (grid size only).
template <class Op>
void run(const char* what, const Op& op, int64_t max_m, int64_t max_n, Stream stream) {
  if (op.G * op.splits == 0 || max_m <= 0 || max_n <= 0) return;
  const int forced = forced_tile();
  const TileKind kind = forced >= 0 ? static_cast<TileKind>(forced)
                                    : choose_tile(op.G, max_m, max_n, op.splits, sm_count());
  switch (kind) {
    case TileKind::k32x128:
      run_cfg<Tile32x128>(what, op, max_m, max_n, stream);
      break;
    case TileKind::k64x64:
      run_cfg<Tile64x64>(what, op, max_m, max_n, stream);
      break;
    default:
      run_cfg<Tile64x128>(what, op, max_m, max_n, stream);
  }
}

}  // namespace gemm
}  // namespace fastcnn::cuda
