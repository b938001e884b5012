// gemm.cpp -- the SGEMM driver (see gemm.h): work items, workspace, the KC loop, packers.
#include "cpu/gemm.h"

#include <algorithm>
#include <cstring>
#include <memory>
#include <vector>

#include "common/check.h"
#include "cpu/parallel.h"

namespace fastcnn::cpu {
namespace {

constexpr int64_t kKC = 256;      // fixed: part of the reduction order
constexpr int64_t kMCMax = 256;
constexpr int64_t kNCMax = 240;   // multiple of 8, 24 and 48

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
int64_t round_up(int64_t a, int64_t b) { return ceil_div(a, b) * b; }

struct AlignedFree {
  void operator()(float* p) const { std::free(p); }
};
using Buffer = std::unique_ptr<float[], AlignedFree>;

Buffer alloc_floats(int64_t n) {
  const size_t bytes = static_cast<size_t>(round_up(std::max<int64_t>(n, 16) * 4, 64));
  void* p = std::aligned_alloc(64, bytes);
  if (!p) throw std::bad_alloc();
  return Buffer(static_cast<float*>(p));
}

}  // namespace

void gemm(const GemmProblem& prob) {
  const KernelTable& kt = kernels();
  const int mr = kt.mr, nr = kt.nr;
  const int64_t G = prob.G, M = prob.M, N = prob.N, K = prob.K;
  if (G <= 0 || M <= 0 || N <= 0) return;
  // >= 2 MFLOP per thread, or the parallel region costs more than it saves
  const int nt = threads_for(2.0 * double(G) * double(M) * double(N) * double(std::max<int64_t>(K, 1)), 2e6);

  // Block sizes: as large as the caches allow, then smaller until there are enough items.
  int64_t mc = std::min(round_up(M, mr), round_up(kMCMax, mr));
  int64_t nc = std::min(round_up(N, nr), std::max<int64_t>(kNCMax / nr, 1) * nr);
  auto items = [&] { return G * ceil_div(M, mc) * ceil_div(N, nc); };
  const int64_t want = nt > 1 ? 4 * int64_t{nt} : 1;
  while (items() < want) {
    if (nc > nr && (nc >= mc || mc <= mr)) nc = round_up(nc / 2, nr);
    else if (mc > mr) mc = round_up(mc / 2, mr);
    else break;
  }
  const int64_t mblocks = ceil_div(M, mc), nblocks = ceil_div(N, nc);
  const int64_t nitems = G * mblocks * nblocks;
  const int64_t kc_max = std::min(K, kKC);
  const int64_t a_size = round_up(mc, mr) * std::max<int64_t>(kc_max, 1);
  const int64_t b_size = round_up(nc, nr) * std::max<int64_t>(kc_max, 1);
  const int64_t c_ld = round_up(nc, nr);
  const int64_t c_size = round_up(mc, mr) * c_ld;
  const int64_t per_thread = a_size + b_size + c_size + 64;
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

  parallel_for(
      nitems,
      [&](int t, int64_t begin, int64_t end) {
        float* abuf = work.get() + t * per_thread;
        float* bbuf = abuf + a_size;
        float* cbuf = bbuf + b_size;
        for (int64_t item = begin; item < end; ++item) {
          const int64_t g = item / (mblocks * nblocks);
          const int64_t rem = item % (mblocks * nblocks);
          const int64_t i0 = (rem / nblocks) * mc, j0 = (rem % nblocks) * nc;
          const int64_t m = std::min(mc, M - i0), n = std::min(nc, N - j0);
          const int64_t mpan = ceil_div(m, mr), npan = ceil_div(n, nr);
          if (K == 0) {
            std::memset(cbuf, 0, sizeof(float) * static_cast<size_t>(mpan * mr * c_ld));
          }
          for (int64_t k0 = 0; k0 < K; k0 += kKC) {
            const int64_t kc = std::min(kKC, K - k0);
            const float* ap;
            if (apre) {
              ap = apre.get() + (g % ag) * K * Mp + k0 * Mp + (i0 / mr) * kc * mr;
            } else {
              prob.pack_a(g, i0, m, k0, kc, abuf, mr);
              ap = abuf;
            }
            prob.pack_b(g, k0, kc, j0, n, bbuf, nr);
            const int acc = k0 > 0;
            for (int64_t jp = 0; jp < npan; ++jp) {
              const float* bp = bbuf + jp * kc * nr;
              for (int64_t ip = 0; ip < mpan; ++ip) {
                kt.gemm_ukernel(kc, ap + ip * kc * mr, bp, cbuf + ip * mr * c_ld + jp * nr, c_ld,
                                acc);
              }
            }
          }
          prob.store(g, i0, m, j0, n, cbuf, c_ld);
        }
      },
      use_threads);
}

void pack_a_strided(const float* base, int64_t rs, int64_t cs, int64_t i0, int64_t mc, int64_t k0,
                    int64_t kc, float* dst, int mr) {
  for (int64_t p0 = 0; p0 < mc; p0 += mr) {
    const int64_t rows = std::min<int64_t>(mr, mc - p0);
    float* d = dst + (p0 / mr) * kc * mr;
    if (cs == 1) {
      for (int64_t r = 0; r < rows; ++r) {
        const float* src = base + (i0 + p0 + r) * rs + k0;
        for (int64_t k = 0; k < kc; ++k) d[k * mr + r] = src[k];
      }
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
