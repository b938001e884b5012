// gemm.cpp -- the SGEMM driver (see gemm.h): work items, workspace, the KC loop, packers.
#include "cpu/gemm.h"

#include <algorithm>
#include <cstring>
#include <memory>
#include <vector>

#include "common/check.h"
#include "cpu/buffer.h"
#include "cpu/parallel.h"

namespace fastcnn::cpu {
namespace {

constexpr int64_t kKC = kGemmKC;  // fixed: part of the reduction order
constexpr int64_t kMCMax = 256;
constexpr int64_t kNCMax = 480;   // multiple of 8, 24 and 48
constexpr int64_t kMaxChunks = 16;  // split_k: at most this many partial results

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
int64_t round_up(int64_t a, int64_t b) { return ceil_div(a, b) * b; }

// src[p*NR .. p*NR+NR) -> dst[p*kc*NR ..] for p < panels: one B row into consecutive panels.
template <int NR>
void copy_rows(const float* src, float* dst, int64_t panels, int64_t kc) {
  for (int64_t p = 0; p < panels; ++p)
    std::memcpy(dst + p * kc * NR, src + p * NR, sizeof(float) * NR);
}

// f(thread, item) for every item < n on up to nt threads, each thread one contiguous range
// (neighbouring output blocks, so fresh output pages are first touched by one thread). Work
// stealing was tried (a shared counter; then own range first and helping from the back of the
// others'): on the loaded 2-core machine it was 10-30 % slower for dx / dw at 2 threads, two
// threads faulting on the same fresh output pages costing more than the balance gained.
template <class F>
void for_each_item(int64_t n, int64_t nt, F&& f) {
  parallel_for(n, [&](int t, int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) f(t, i);
  }, static_cast<int>(std::max<int64_t>(std::min(nt, n), 1)));
}

}  // namespace

void gemm(const GemmProblem& prob) {
  const KernelTable& kt = kernels();
  const int mr = kt.mr, nr = kt.nr;
  const int64_t G = prob.G, M = prob.M, N = prob.N, K = prob.K;
  if (G <= 0 || M <= 0 || N <= 0) return;
  // >= 2 MFLOP per thread, or the parallel region costs more than it saves
  const int nt = threads_for(2.0 * double(G) * double(M) * double(N) * double(std::max<int64_t>(K, 1)), 2e6);

  // K chunks (split_k): fixed by the shape alone, so the sum order never depends on threads.
  const int64_t kchunk = prob.split_k && K > 0
                             ? std::max(4 * kKC, round_up(ceil_div(K, kMaxChunks), kKC))
                             : std::max<int64_t>(K, 1);
  const int64_t nchunks = K > 0 ? ceil_div(K, kchunk) : 1;

  // Block sizes: as large as the caches allow, then smaller until there are enough items.
  int64_t mc = std::min(round_up(M, mr), round_up(kMCMax, mr));
  int64_t nc = std::min(round_up(N, nr), std::max<int64_t>(kNCMax / nr, 1) * nr);
  auto items = [&] { return G * nchunks * ceil_div(M, mc) * ceil_div(N, nc); };
  const int64_t want = nt > 1 && !prob.serial_per_g ? 4 * int64_t{nt} : 1;
  while (items() < want) {
    if (nc > nr && (nc >= mc || mc <= mr)) nc = round_up(nc / 2, nr);
    else if (mc > mr) mc = round_up(mc / 2, mr);
    else break;
  }
  const int64_t mblocks = ceil_div(M, mc), nblocks = ceil_div(N, nc);
  const int64_t blocks = mblocks * nblocks;
  const int64_t kc_max = std::max<int64_t>(std::min(K, kKC), 1);
  const int64_t a_size = round_up(mc, mr) * kc_max, b_size = round_up(nc, nr) * kc_max;
  const int64_t c_ld = round_up(nc, nr);
  const int64_t c_size = round_up(mc, mr) * c_ld;
  const int64_t per_thread = a_size + 2 * b_size + c_size + 64;  // A, B, B scratch, C
  const int64_t nitems = prob.serial_per_g ? G : G * nchunks * blocks;
  const int use_threads = static_cast<int>(std::min<int64_t>(nt, nitems));
  Buffer work = alloc_floats(per_thread * use_threads);

  // Shared A: all of A_grp packed once, k-block by k-block: block k0 of group grp starts at
  // grp*K*Mp + k0*Mp and holds Mp/mr panels of kc*mr.
  const int64_t Mp = round_up(M, mr), kblocks = ceil_div(K, kKC);
  const int64_t ag = prob.a_groups;
  const bool a_inplace = prob.a_base != nullptr;
  // the tall edge kernel reads 3*mr rows in place at once: not when their row stride is a
  // multiple of 2 KiB (in = 9216 or 4096 floats: 36 / 16 KiB), which puts >= 6 of those rows'
  // lines in each L1 set they use (8 ways, with B's): the kernel would miss L1 on every
  // broadcast (x w^T, 1 thread, out = 8, batch 256, tall / narrow: 0.94x at in = 9216, 0.85x at
  // 4096, 1.12x at 9232; 1.24-1.37x at in = 1000, batch 512)
  const bool tall_ok = a_inplace && prob.a_rs % 512 != 0;
  FASTCNN_CHECK(!(a_inplace || prob.b_shared) || G == 1, "gemm: a_base / b_shared need G == 1");
  Buffer apre;
  if (ag > 0 && K > 0 && !a_inplace) {
    apre = alloc_floats(checked_mul(ag * Mp, K, "gemm packed A"));
    parallel_for(ag * kblocks, [&](int, int64_t b, int64_t e) {
      for (int64_t it = b; it < e; ++it) {
        const int64_t grp = it / kblocks, k0 = (it % kblocks) * kKC;
        prob.pack_a(grp, 0, M, k0, std::min(kKC, K - k0), apre.get() + grp * K * Mp + k0 * Mp, mr);
      }
    }, threads_for(double(ag) * double(Mp) * double(K), 1 << 16));
  }
  // Shared B: block k0 starts at k0*Np and holds Np/nr panels of kc*nr (columns j0.. of a
  // block at panel j0/nr), packed in (k slice, column block) pieces on the library's threads.
  const int64_t Np = round_up(N, nr);
  Buffer bpre;
  if (prob.b_shared && K > 0 && mblocks > 1) {
    bpre = alloc_floats(checked_mul(Np, K, "gemm packed B"));
    for_each_item(kblocks * nblocks, use_threads, [&](int t, int64_t it) {
      float* scratch = work.get() + t * per_thread + a_size + b_size;
      {
        const int64_t k0 = (it / nblocks) * kKC, kc = std::min(kKC, K - k0);
        const int64_t j0 = (it % nblocks) * nc;
        prob.pack_b(0, k0, kc, j0, std::min(nc, N - j0), bpre.get() + k0 * Np + (j0 / nr) * kc * nr,
                    nr, scratch);
      }
    });
  }

  // C block (g, i0.., j0..) over k in [kb, ke) into cbuf (row stride ldc >= round_up(n, nr)):
  // whole mr x nr tiles, so rows up to round_up(m, mr) and columns up to round_up(n, nr).
  auto compute = [&](float* abuf, float* bbuf, float* cbuf, int64_t ldc, int64_t g, int64_t i0,
                     int64_t m, int64_t j0, int64_t n, int64_t kb, int64_t ke) {
    const int64_t mpan = ceil_div(m, mr), npan = ceil_div(n, nr);
    const int64_t mfull = a_inplace ? m / mr : 0;  // panels read in place
    if (ke <= kb)
      for (int64_t i = 0; i < mpan * mr; ++i)
        std::memset(cbuf + i * ldc, 0, sizeof(float) * static_cast<size_t>(npan * nr));
    for (int64_t k0 = kb; k0 < ke; k0 += kKC) {
      const int64_t kc = std::min(kKC, ke - k0);
      const float* bp0;
      if (bpre) {
        bp0 = bpre.get() + k0 * Np + (j0 / nr) * kc * nr;
      } else {
        prob.pack_b(g, k0, kc, j0, n, bbuf, nr, bbuf + b_size);
        bp0 = bbuf;
      }
      const float* ap;  // packed panels: panel ip at ap + (ip - mfull) * kc * mr
      if (a_inplace) {
        if (mfull < mpan) prob.pack_a(g, i0 + mfull * mr, m - mfull * mr, k0, kc, abuf, mr);
        ap = abuf;
      } else if (apre) {
        ap = apre.get() + (g % ag) * K * Mp + k0 * Mp + (i0 / mr) * kc * mr;
      } else {
        prob.pack_a(g, i0, m, k0, kc, abuf, mr);
        ap = abuf;
      }
      const int acc = k0 > kb;
      auto tile = [&](int64_t ip, int64_t jp) {
        const float* bp = bp0 + jp * kc * nr;
        float* cp = cbuf + ip * mr * ldc + jp * nr;
        if (ip < mfull)
          kt.gemm_ukernel_sa(kc, prob.a_base + (i0 + ip * mr) * prob.a_rs + k0 * prob.a_cs,
                             prob.a_rs, prob.a_cs, bp, cp, ldc, acc, n - jp * nr);
        else
          kt.gemm_ukernel(kc, ap + (ip - mfull) * kc * mr, bp, cp, ldc, acc);
      };
      for (int64_t jp = 0; jp < npan; ++jp) {  // one B panel in L1, A streaming past it
        int64_t ip = 0;
        // a thin last panel (<= nr/3 columns) of rows read in place: three row panels a call
        // (gemm_ukernel_sa_tall: 3x the accumulators of the narrow kernel, FMA-bound again)
        if (tall_ok && 3 * (n - jp * nr) <= nr)
          for (; ip + 3 <= mfull; ip += 3)
            kt.gemm_ukernel_sa_tall(kc, prob.a_base + (i0 + ip * mr) * prob.a_rs + k0 * prob.a_cs,
                                    prob.a_rs, prob.a_cs, bp0 + jp * kc * nr,
                                    cbuf + ip * mr * ldc + jp * nr, ldc, acc, n - jp * nr);
        for (; ip < mpan; ++ip) tile(ip, jp);
      }
    }
  };

  if (nchunks == 1) {
    for_each_item(nitems, use_threads, [&](int t, int64_t item) {
      float* abuf = work.get() + t * per_thread;
      float* bbuf = abuf + a_size;
      float* cbuf = bbuf + 2 * b_size;
      {
        const int64_t b0 = prob.serial_per_g ? 0 : item % blocks;
        const int64_t b1 = prob.serial_per_g ? blocks : b0 + 1;
        const int64_t g = prob.serial_per_g ? item : item / blocks;
        for (int64_t blk = b0; blk < b1; ++blk) {
          const int64_t i0 = (blk / nblocks) * mc, j0 = (blk % nblocks) * nc;
          const int64_t m = std::min(mc, M - i0), n = std::min(nc, N - j0);
          compute(abuf, bbuf, cbuf, c_ld, g, i0, m, j0, n, 0, K);
          prob.store(g, i0, m, j0, n, cbuf, c_ld);
        }
      }
    });
    return;
  }

  // Split K: each (g, chunk, block) item computes its partial block straight into
  // part[(g, chunk)] (Mp x Np: whole tiles, row stride Np, no copy out of a C buffer), then each
  // (g, block) sums its chunks in chunk order and stores.
  const int64_t part_size = checked_mul(Mp, Np, "gemm K chunks");
  Buffer part = alloc_floats(checked_mul(checked_mul(G, nchunks, "gemm K chunks"), part_size,
                                         "gemm K chunks"));
  for_each_item(nitems, use_threads, [&](int t, int64_t item) {
    float* abuf = work.get() + t * per_thread;
    float* bbuf = abuf + a_size;
    {
      const int64_t blk = item % blocks, gc = item / blocks;  // gc = g * nchunks + chunk
      const int64_t g = gc / nchunks, chunk = gc % nchunks;
      const int64_t i0 = (blk / nblocks) * mc, j0 = (blk % nblocks) * nc;
      const int64_t m = std::min(mc, M - i0), n = std::min(nc, N - j0);
      compute(abuf, bbuf, part.get() + gc * part_size + i0 * Np + j0, Np, g, i0, m, j0, n,
              chunk * kchunk, std::min(K, (chunk + 1) * kchunk));
    }
  });
  for_each_item(G * blocks, use_threads, [&](int t, int64_t item) {
    float* cbuf = work.get() + t * per_thread + a_size + 2 * b_size;
    {
      const int64_t g = item / blocks, blk = item % blocks;
      const int64_t i0 = (blk / nblocks) * mc, j0 = (blk % nblocks) * nc;
      const int64_t m = std::min(mc, M - i0), n = std::min(nc, N - j0);
      for (int64_t i = 0; i < m; ++i) {
        float* c = cbuf + i * c_ld;
        const float* src = part.get() + g * nchunks * part_size + (i0 + i) * Np + j0;
        std::memcpy(c, src, sizeof(float) * static_cast<size_t>(n));
        for (int64_t chunk = 1; chunk < nchunks; ++chunk) kt.add(c, src + chunk * part_size, n);
      }
      prob.store(g, i0, m, j0, n, cbuf, c_ld);
    }
  });
}

void pack_a_strided(const float* base, int64_t rs, int64_t cs, int64_t i0, int64_t mc, int64_t k0,
                    int64_t kc, float* dst, int mr) {
  for (int64_t p0 = 0; p0 < mc; p0 += mr) {
    const int64_t rows = std::min<int64_t>(mr, mc - p0);
    float* d = dst + (p0 / mr) * kc * mr;
    if (cs == 1) {  // rows contiguous along k: a block transpose
      kernels().transpose(base + (i0 + p0) * rs + k0, rs, rows, kc, d, mr);
    } else {
      for (int64_t k = 0; k < kc; ++k) {
        const float* src = base + (k0 + k) * cs + (i0 + p0) * rs;
        for (int64_t r = 0; r < rows; ++r) d[k * mr + r] = src[r * rs];
      }
    }
    for (int64_t r = rows; r < mr; ++r)
      for (int64_t k = 0; k < kc; ++k) d[k * mr + r] = 0.0f;
  }
}

void pack_b_strided(const float* base, int64_t rs, int64_t cs, int64_t k0, int64_t kc, int64_t j0,
                    int64_t nc, float* dst, int nr) {
  if (cs == 1) {  // rows contiguous along j: each source row copied in order into the panels
    const int64_t full = nc / nr, tail = nc - full * nr;
    for (int64_t k = 0; k < kc; ++k) {
      const float* src = base + (k0 + k) * rs + j0;
      switch (nr) {  // a fixed-size copy the compiler inlines
        case 8: copy_rows<8>(src, dst + k * 8, full, kc); break;
        case 24: copy_rows<24>(src, dst + k * 24, full, kc); break;
        case 48: copy_rows<48>(src, dst + k * 48, full, kc); break;
        default:
          for (int64_t p = 0; p < full; ++p)
            std::memcpy(dst + p * kc * nr + k * nr, src + p * nr,
                        sizeof(float) * static_cast<size_t>(nr));
      }
      if (tail > 0) {
        float* d = dst + full * kc * nr + k * nr;
        std::memcpy(d, src + full * nr, sizeof(float) * static_cast<size_t>(tail));
        for (int64_t c = tail; c < nr; ++c) d[c] = 0.0f;
      }
    }
    return;
  }
  for (int64_t p0 = 0; p0 < nc; p0 += nr) {
    const int64_t cols = std::min<int64_t>(nr, nc - p0);
    float* d = dst + (p0 / nr) * kc * nr;
    if (rs == 1) {  // columns contiguous along k: a block transpose
      kernels().transpose(base + (j0 + p0) * cs + k0, cs, cols, kc, d, nr);
      for (int64_t k = 0; cols < nr && k < kc; ++k)
        for (int64_t c = cols; c < nr; ++c) d[k * nr + c] = 0.0f;
    } else {
      for (int64_t c = 0; c < cols; ++c) {
        const float* src = base + (j0 + p0 + c) * cs + k0 * rs;
        for (int64_t k = 0; k < kc; ++k) d[k * nr + c] = src[k * rs];
      }
      for (int64_t k = 0; k < kc; ++k)
        for (int64_t c = cols; c < nr; ++c) d[k * nr + c] = 0.0f;
    }
  }
}

}  // namespace fastcnn::cpu
