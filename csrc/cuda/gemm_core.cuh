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
//       static constexpr bool kAVec, kBVec;  // 16-byte copies: only for an operand whose rows
//           // m (n) are contiguous (!kXContigK) with no padding (x_ok always true), where the
//           // launcher has checked that x_ptr(x_row(mn), k) is 16-byte aligned for every mn
//           // that is a multiple of 4 (base pointer, leading dimension, group offsets)
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
//       // the epilogue: a row state per output row m of split s (member c = &C_s[m, 0], the
//       // row of split s's destination, and what the fused epilogue needs of the row, e.g. the
//       // conv bias b[m]), and the value stored at column n (bias, ReLU; none for a split's
//       // partial sums):
//       ERow e_row(int64_t s, int64_t m) const;  float e_val(const ERow&, int64_t n, float) const;
//       static constexpr bool kStore128;  // 128-bit stores where a row is aligned (else scalar)
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
// Copy widths: 4 bytes (cp.async.ca, zero-fill) per element for k-contiguous, gathered or
// padded operands; 16 bytes (cp.async.cg: four consecutive rows m / n of one k lane per thread,
// Vec) for an operand the launcher declares kXVec (rows contiguous and aligned: dcol's w^T and
// dy, dense dx's w and dw's dy / x, a 1 x 1 stride-1 unpadded conv's x). Epilogue: per row, the
// destination and the fused epilogue's row data once; each thread's TN columns are TN/4 groups
// of four contiguous outputs, one 128-bit store (st.global.v4) each where the row is 16-byte
// aligned and the group inside N, scalar stores otherwise.
// Each output element is the FMA chain over k in increasing order from its split's start, in
// every Cfg: the tile shape changes speed, never bits; only the split (chosen from the shapes
// alone) decides the summation order.
// Napkin (64 x 128): 2*64*128*8 = 131 kflop per block step from 6 KB of shared tiles; per k a
// thread does 32 FMAs for 3 shared float4 loads; ~12.8 KB shared per block, <= 128 registers,
// 2 blocks per SM. Per k step a block copies 512 + 1024 floats: 6 LDGSTS per thread at 4 bytes,
// 1-2 at 16 bytes (A: 128 of the 256 threads, B: all); its 8192 outputs leave as 2048 128-bit
// stores (8 per thread) on aligned rows instead of 8192 scalar ones.
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
// When issue: dst[0..3] = src[0..3] of which the first src_bytes bytes are read and the rest
// zero-filled, asynchronously (cp.async.cg, 16 bytes, L2 only; dst and src 16-byte aligned
// whatever src_bytes; 0: src is not read). issue is a predicate of the instruction (no branch
// around it: the threads of a tile with fewer groups than threads skip it in place).
FASTCNN_D void cp_async16(float* dst, const float* src, int src_bytes, bool issue) {
#if defined(FASTCNN_CUDA_EMULATE)
  if (issue) __emu_cp_async(dst, src, 16, src_bytes);
#else
  const unsigned d = static_cast<unsigned>(__cvta_generic_to_shared(dst));
  asm volatile(
      "{\n .reg .pred p;\n setp.ne.b32 p, %3, 0;\n"
      " @p cp.async.cg.shared.global [%0], [%1], 16, %2;\n}\n" ::"r"(d),
      "l"(src), "r"(src_bytes), "r"(static_cast<int>(issue))
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

// True when p is 16-byte aligned (what 16-byte copies and 128-bit stores need).
inline bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15u) == 0; }

// *p = v as one 128-bit store (st.global.v4.f32, a plain weak store: STG.E.128; p 16-byte
// aligned: the caller checked). Not a float4 assignment, which the compiler splits into four
// scalar stores when a scalar fallback stores the same values beside it; not __stwb, whose
// .wb operator becomes a strong store (STG.E.128.STRONG.SM) on sm_90.
FASTCNN_D void st128(float* p, const float4& v) {
#if defined(FASTCNN_CUDA_EMULATE)
  __emu_st128(p, &v);
#else
  asm volatile("st.global.v4.f32 [%0], {%1, %2, %3, %4};\n" ::"l"(p), "f"(v.x), "f"(v.y),
               "f"(v.z), "f"(v.w)
               : "memory");
#endif
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

// 16-byte operands (Op::kAVec / kBVec): a tile of `extent` rows by BK is BK*extent/4 groups of
// four consecutive rows of one k lane; thread t < BK*extent/4 copies group t: k lane
// t / (extent/4), rows 4*(t % (extent/4)) .. +3 (consecutive threads on consecutive 16 bytes).
template <class C, int kExtent>
struct Vec {
  static constexpr int PER_K = kExtent / 4, GROUPS = C::BK * PER_K;
  static_assert(kExtent % 4 == 0 && GROUPS <= C::THREADS, "one 16-byte group per thread");
  static FASTCNN_D int k_lane(int tid) { return tid / PER_K % C::BK; }  // (idle threads: any)
  static FASTCNN_D int row(int tid) { return 4 * (tid % PER_K); }
  static FASTCNN_D bool active(int tid) { return GROUPS == C::THREADS || tid < GROUPS; }
};

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
  // 16-byte operands (kAVec / kBVec: rows contiguous along m / n, no padding) take one group of
  // four rows per thread (Vec); a group that runs past M (N) reads only its rows that exist
  // (src-size; the rest zero-filled, never stored), a group wholly past it reads nothing (its
  // row state is the tile's first group's: a valid, aligned address).
  constexpr bool AV = Op::kAVec, BV = Op::kBVec;
  static_assert(!(AV && Op::kAContigK) && !(BV && Op::kBContigK),
                "16-byte copies need an operand whose rows are contiguous along m / n");
  using VA = Vec<C, C::BM>;
  using VB = Vec<C, C::BN>;
  constexpr int AN = AV ? 1 : C::A_LOADS, BN_ = BV ? 1 : C::B_LOADS;  // row states per thread
  const int ka = AV ? VA::k_lane(tid) : k_lane<C, Op::kAContigK>(tid);
  const int kb = BV ? VB::k_lane(tid) : k_lane<C, Op::kBContigK>(tid);
  auto a_mn = [&](int i) { return AV ? VA::row(tid) : mn_of<C, Op::kAContigK>(tid, i); };
  auto b_mn = [&](int i) { return BV ? VB::row(tid) : mn_of<C, Op::kBContigK>(tid, i); };
  typename Op::ARow ar[AN];
  typename Op::BRow br[BN_];
  [[maybe_unused]] int a_bytes = 16, b_bytes = 16;  // 16-byte operands: bytes that exist
#pragma unroll
  for (int i = 0; i < AN; ++i) {
    const Idx gm = m0 + a_mn(i);
    if (AV) a_bytes = gm < M ? 4 * static_cast<int>(M - gm < 4 ? M - gm : 4) : 0;
    ar[i] = v.a_row(gm < M ? gm : (AV ? m0 : M - 1));
  }
#pragma unroll
  for (int i = 0; i < BN_; ++i) {
    const Idx gn = n0 + b_mn(i);
    if (BV) b_bytes = gn < N ? 4 * static_cast<int>(N - gn < 4 ? N - gn : 4) : 0;
    br[i] = v.b_row(gn < N ? gn : (BV ? n0 : N - 1));
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
    if constexpr (AV) {
      cp_async16(&As[buf][ka][a_mn(0)], v.a_ptr(ar[0], ak), ina ? a_bytes : 0, VA::active(tid));
    } else {
#pragma unroll
      for (int i = 0; i < C::A_LOADS; ++i)
        cp_async4(&As[buf][ka][a_mn(i)], v.a_ptr(ar[i], ak), ina && v.a_ok(ar[i], ak));
    }
    if constexpr (BV) {
      cp_async16(&Bs[buf][kb][b_mn(0)], v.b_ptr(br[0], bk), inb ? b_bytes : 0, VB::active(tid));
    } else {
#pragma unroll
      for (int i = 0; i < C::B_LOADS; ++i)
        cp_async4(&Bs[buf][kb][b_mn(i)], v.b_ptr(br[i], bk), inb && v.b_ok(br[i], bk));
    }
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
  // (a 16-byte operand: its thread's group of four, element by element)
  constexpr int AE = AV ? 4 : C::A_LOADS, BE = BV ? 4 : C::B_LOADS;
  float ra[AE], rb[BE];
  auto load = [&]() {
    const bool ina = gka < kend, inb = gkb < kend;
#pragma unroll
    for (int i = 0; i < AE; ++i) {
      if (AV)
        ra[i] = ina && VA::active(tid) && 4 * i < a_bytes ? v.a_ptr(ar[0], ak)[i] : 0.0f;
      else
        ra[i] = ina && v.a_ok(ar[i], ak) ? *v.a_ptr(ar[i], ak) : 0.0f;
    }
#pragma unroll
    for (int i = 0; i < BE; ++i) {
      if (BV)
        rb[i] = inb && VB::active(tid) && 4 * i < b_bytes ? v.b_ptr(br[0], bk)[i] : 0.0f;
      else
        rb[i] = inb && v.b_ok(br[i], bk) ? *v.b_ptr(br[i], bk) : 0.0f;
    }
    gka += BK_, gkb += BK_;
    v.a_step(ak);
    v.b_step(bk);
  };
  auto stash = [&](int buf) {
#pragma unroll
    for (int i = 0; i < AE; ++i)
      if (!AV || VA::active(tid)) As[buf][ka][AV ? a_mn(0) + i : a_mn(i)] = ra[i];
#pragma unroll
    for (int i = 0; i < BE; ++i)
      if (!BV || VB::active(tid)) Bs[buf][kb][BV ? b_mn(0) + i : b_mn(i)] = rb[i];
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

  // Epilogue: per output row the op's row state (its destination &C_s[m, 0] and what the fused
  // epilogue needs of the row), the 16-byte alignment of the row checked once; each four-column
  // group goes out as one 128-bit store where the row is aligned and all four columns exist,
  // column by column otherwise (unaligned rows, the last group of a row). The values are the
  // same either way (e_val per element), so the store width never changes the bits.
#pragma unroll
  for (int i = 0; i < C::TM; ++i) {
    const int64_t gm = m0_ + (i / 4) * C::TY * 4 + ty * 4 + i % 4;
    if (gm >= v.M) continue;
    const typename Op::ERow er = v.e_row(split, gm);
    const bool aligned = (reinterpret_cast<uintptr_t>(er.c) & 15u) == 0;
#pragma unroll
    for (int g = 0; g < C::TN / 4; ++g) {
      const int64_t gn = n0_ + g * C::TX * 4 + tx * 4;
      const float* a = &acc[i][4 * g];
      if (Op::kStore128 && aligned && gn + 3 < v.N) {
        st128(er.c + gn, make_float4(v.e_val(er, gn, a[0]), v.e_val(er, gn + 1, a[1]),
                                     v.e_val(er, gn + 2, a[2]), v.e_val(er, gn + 3, a[3])));
        continue;
      }
#pragma unroll
      for (int j = 0; j < 4; ++j)
        if (gn + j < v.N) er.c[gn + j] = v.e_val(er, gn + j, a[j]);
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
