// gemm.h -- the packed, cache-blocked SGEMM driver shared by convolution and dense layers.
//
// Computes, for each of G independent problems g, C_g[M x N] = A_g[M x K] * B_g[K x N], where
// A and B are never materialised: the caller gives packers that write blocks of A into MR-row
// panels and blocks of B into NR-column panels straight from their source (a weight matrix, an
// implicit im2col of an image, a transposed gradient ...), and a store that receives each
// finished tile of C (and applies bias / ReLU / scatter to the real layout).
//
// Blocking (BLIS-style): K is cut in fixed KC = 128 slices (fixed, so every element's reduction
// order never depends on the thread count); each work item is a (g, MC rows, NC columns) block
// of C owned by one thread, which packs A (MC x KC, <= 256 KB) and B (KC x NC, <= 240 KB) for
// each slice into its own workspace (L2-resident) and runs the MR x NR micro-kernel over them,
// the B micro-panel (KC x NR) staying in L1. Workspace: per thread, bounded by the block sizes,
// never by the batch. Work items are split finer when there are too few for the threads; each
// thread runs one contiguous range of them, and which thread runs an item never changes its
// result.
#pragma once
#include <cstdint>
#include <functional>

#include "cpu/kernels.h"

namespace fastcnn::cpu {

// K slice of the blocking: fixed (it is part of every element's reduction order). Packers may
// rely on kc <= kGemmKC.
constexpr int64_t kGemmKC = 128;

struct GemmProblem {
  int64_t G = 1, M = 0, N = 0, K = 0;
  // Write rows [i0, i0+mc) x cols [k0, k0+kc) of A_g as ceil(mc/mr) panels, panel p at
  // dst + p*kc*mr holding element (i0 + p*mr + r, k0 + k) at [k*mr + r]; rows >= mc are zero.
  std::function<void(int64_t g, int64_t i0, int64_t mc, int64_t k0, int64_t kc, float* dst, int mr)>
      pack_a;
  // Write rows [k0, k0+kc) x cols [j0, j0+nc) of B_g as ceil(nc/nr) panels, panel p at
  // dst + p*kc*nr holding element (k0 + k, j0 + p*nr + c) at [k*nr + c]; cols >= nc are zero.
  // `scratch` is the thread's own kc x nc_max workspace for packers that stage their data.
  std::function<void(int64_t g, int64_t k0, int64_t kc, int64_t j0, int64_t nc, float* dst, int nr,
                     float* scratch)>
      pack_b;
  // When > 0, A_g depends only on g % a_groups (weights shared by every image): the driver packs
  // each distinct A once per call (weight-sized workspace) instead of once per work item.
  int64_t a_groups = 0;
  // When a_base is set (G == 1 only), A(i, k) = a_base[i*a_rs + k*a_cs] is read in place by the
  // micro-kernel (kernels().gemm_ukernel_sa: no packing; A costs 16 bytes per k step of the
  // 4 x 24 tile against B's 96, so reading it from L2 in place keeps the kernel FMA-bound);
  // pack_a is then called only for a last panel of fewer than mr rows.
  const float* a_base = nullptr;
  int64_t a_rs = 0, a_cs = 0;
  // G == 1 only: pack all of B once per call (every K slice and column, in parallel) into one
  // shared workspace (round_up(N, nr) x K floats) that every row block reads, instead of once
  // per (block, K slice): for a B that several row blocks would each pack again.
  bool b_shared = false;
  // Split a long reduction (weight gradients: K = batch x pixels) into at most 16 chunks of
  // >= 4*KC rows each, fixed by K alone; chunks run in parallel, the micro-kernels writing
  // straight into a (chunks x G x round_up(M, mr) x round_up(N, nr)) workspace, and are summed
  // in chunk order, so results never depend on the thread count.
  bool split_k = false;
  // One thread computes every block of a given g, in order: the store may then accumulate into
  // output regions that blocks of the same g share (col2im).
  bool serial_per_g = false;
  // Receive the finished block C_g[i0:i0+mc, j0:j0+nc] at src (row stride lds).
  std::function<void(int64_t g, int64_t i0, int64_t mc, int64_t j0, int64_t nc, const float* src,
                     int64_t lds)>
      store;
};

// Runs the problem on the library's threads (validated sizes; never throws inside the region:
// the workspace is allocated before it, and std::bad_alloc surfaces as MemoryError).
void gemm(const GemmProblem& prob);

// ---- packers for plain strided matrices: element (i, k) at base[i*rs + k*cs] ----------------
void pack_a_strided(const float* base, int64_t rs, int64_t cs, int64_t i0, int64_t mc, int64_t k0,
                    int64_t kc, float* dst, int mr);
// element (k, j) at base[k*rs + j*cs]
void pack_b_strided(const float* base, int64_t rs, int64_t cs, int64_t k0, int64_t kc, int64_t j0,
                    int64_t nc, float* dst, int nr);

}  // namespace fastcnn::cpu
