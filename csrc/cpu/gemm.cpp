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
  Buffer apre;
  if (ag > 0 && K > 0) {
    apre = alloc_floats(checked_mul(ag * Mp, K, "gemm packed A"));
    parallel_for(ag * kblocks, [&](int, int64_t b, int64_t e) {
      for (int64_t it = b; it < e; ++it) {
        const int64_t grp = it / kblocks, k0 = (it % kblocks) * kKC;
        prob.pack_a(grp, 0, M, k0, std::min(kKC, K - k0), apre.get() + grp * K * Mp + k0 * Mp, mr);
      }
    }, threads_for(double(ag) * double(Mp) * double(K), 1 << 16));
  }

  // C block (g, i0.., j0..) over k in [kb, ke) into cbuf (row stride c_ld).
  auto compute = [&](float* abuf, float* bbuf, float* cbuf, int64_t g, int64_t i0, int64_t m,
                     int64_t j0, int64_t n, int64_t kb, int64_t ke) {
    const int64_t mpan = ceil_div(m, mr), npan = ceil_div(n, nr);
    if (ke <= kb) std::memset(cbuf, 0, sizeof(float) * static_cast<size_t>(mpan * mr * c_ld));
    for (int64_t k0 = kb; k0 < ke; k0 += kKC) {
      const int64_t kc = std::min(kKC, ke - k0);
      const float* ap;
      if (apre) {
        ap = apre.get() + (g % ag) * K * Mp + k0 * Mp + (i0 / mr) * kc * mr;
      } else {
        prob.pack_a(g, i0, m, k0, kc, abuf, mr);
        ap = abuf;
      }
      prob.pack_b(g, k0, kc, j0, n, bbuf, nr, bbuf + b_size);
      const int acc = k0 > kb;
      for (int64_t jp = 0; jp < npan; ++jp) {
        const float* bp = bbuf + jp * kc * nr;
        for (int64_t ip = 0; ip < mpan; ++ip)
          kt.gemm_ukernel(kc, ap + ip * kc * mr, bp, cbuf + ip * mr * c_ld + jp * nr, c_ld, acc);
      }
    }
  };

  if (nchunks == 1) {
    parallel_for(nitems, [&](int t, int64_t begin, int64_t end) {
      float* abuf = work.get() + t * per_thread;
      float* bbuf = abuf + a_size;
      float* cbuf = bbuf + 2 * b_size;
      for (int64_t item = begin; item < end; ++item) {
        const int64_t b0 = prob.serial_per_g ? 0 : item % blocks;
        const int64_t b1 = prob.serial_per_g ? blocks : b0 + 1;
        const int64_t g = prob.serial_per_g ? item : item / blocks;
        for (int64_t blk = b0; blk < b1; ++blk) {
          const int64_t i0 = (blk / nblocks) * mc, j0 = (blk % nblocks) * nc;
          const int64_t m = std::min(mc, M - i0), n = std::min(nc, N - j0);
          compute(abuf, bbuf, cbuf, g, i0, m, j0, n, 0, K);
          prob.store(g, i0, m, j0, n, cbuf, c_ld);
        }
      }
    }, use_threads);
    return;
  }

  // Split K: each (g, chunk, block) item writes its partial block to part[(g, chunk)] (M x N),
  // then each (g, block) sums its chunks in chunk order and stores.
  Buffer part = alloc_floats(checked_mul(checked_mul(G, nchunks, "gemm K chunks"), M * N,
                                         "gemm K chunks"));
  parallel_for(nitems, [&](int t, int64_t begin, int64_t end) {
    float* abuf = work.get() + t * per_thread;
    float* bbuf = abuf + a_size;
    float* cbuf = bbuf + 2 * b_size;
    for (int64_t item = begin; item < end; ++item) {
      const int64_t blk = item % blocks, gc = item / blocks;  // gc = g * nchunks + chunk
      const int64_t g = gc / nchunks, chunk = gc % nchunks;
      const int64_t i0 = (blk / nblocks) * mc, j0 = (blk % nblocks) * nc;
      const int64_t m = std::min(mc, M - i0), n = std::min(nc, N - j0);
      compute(abuf, bbuf, cbuf, g, i0, m, j0, n, chunk * kchunk, std::min(K, (chunk + 1) * kchunk));
      float* dst = part.get() + gc * M * N + i0 * N + j0;
      for (int64_t i = 0; i < m; ++i)
        std::memcpy(dst + i * N, cbuf + i * c_ld, sizeof(float) * static_cast<size_t>(n));
    }
  }, use_threads);
  parallel_for(G * blocks, [&](int t, int64_t begin, int64_t end) {
    float* cbuf = work.get() + t * per_thread + a_size + 2 * b_size;
    for (int64_t item = begin; item < end; ++item) {
      const int64_t g = item / blocks, blk = item % blocks;
      const int64_t i0 = (blk / nblocks) * mc, j0 = (blk % nblocks) * nc;
      const int64_t m = std::min(mc, M - i0), n = std::min(nc, N - j0);
      for (int64_t i = 0; i < m; ++i) {
        float* c = cbuf + i * c_ld;
        const float* src = part.get() + g * nchunks * M * N + (i0 + i) * N + j0;
        std::memcpy(c, src, sizeof(float) * static_cast<size_t>(n));
        for (int64_t chunk = 1; chunk < nchunks; ++chunk) kt.add(c, src + chunk * M * N, n);
      }
      prob.store(g, i0, m, j0, n, cbuf, c_ld);
    }
  }, std::min<int64_t>(use_threads, G * blocks));
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
  for (int64_t p0 = 0; p0 < nc; p0 += nr) {
    const int64_t cols = std::min<int64_t>(nr, nc - p0);
    float* d = dst + (p0 / nr) * kc * nr;
    if (cs == 1) {
      for (int64_t k = 0; k < kc; ++k) {
        const float* src = base + (k0 + k) * rs + j0 + p0;
        std::memcpy(d + k * nr, src, sizeof(float) * static_cast<size_t>(cols));
        for (int64_t c = cols; c < nr; ++c) d[k * nr + c] = 0.0f;
      }
    } else if (rs == 1) {  // columns contiguous along k: a block transpose
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
