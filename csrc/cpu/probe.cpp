// probe.cpp -- what this machine can do, for the benchmarks' "share of peak": FMA throughput of
// the active ISA (independent FMA chains on every thread at once) and memory bandwidth (a
// parallel copy of buffers far larger than the caches; bytes read + written per second).
#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <vector>

#include "cpu/kernels.h"
#include "cpu/ops.h"
#include "cpu/parallel.h"

namespace fastcnn::cpu {
namespace {
double now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}
}  // namespace

double probe_fma_gflops(double seconds, int threads) {
  const KernelTable& kt = kernels();
  volatile float sink = 0.0f;
  // calibrate on one thread: about 10 ms
  int64_t iters = 1 << 16;
  for (;;) {
    const double t0 = now();
    sink = sink + kt.fma_probe(iters);
    const double dt = now() - t0;
    if (dt > 0.01 || iters > (int64_t{1} << 40)) {
      iters = std::max<int64_t>(1, static_cast<int64_t>(static_cast<double>(iters) * seconds / dt));
      break;
    }
    iters *= 4;
  }
  std::vector<float> out(static_cast<size_t>(threads), 0.0f);
  const double t0 = now();
  parallel_for(threads, [&](int, int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) out[static_cast<size_t>(i)] = kt.fma_probe(iters);
  }, threads);
  const double dt = now() - t0;
  for (float v : out) sink = sink + v;
  return static_cast<double>(iters) * static_cast<double>(kt.fma_probe_flops_per_iter) *
         threads / dt / 1e9;
}

double probe_copy_gbps(int64_t bytes, int threads) {
  const size_t n = static_cast<size_t>(bytes);
  std::unique_ptr<char[]> src(new char[n]), dst(new char[n]);
  std::memset(src.get(), 1, n);
  std::memset(dst.get(), 0, n);
  const int64_t chunk = 1 << 20, chunks = (bytes + chunk - 1) / chunk;
  double best = 1e30;
  for (int rep = 0; rep < 5; ++rep) {
    const double t0 = now();
    parallel_for(chunks, [&](int, int64_t b, int64_t e) {
      const int64_t lo = b * chunk, hi = std::min(bytes, e * chunk);
      std::memcpy(dst.get() + lo, src.get() + lo, static_cast<size_t>(hi - lo));
    }, threads);
    best = std::min(best, now() - t0);
  }
  return 2.0 * static_cast<double>(bytes) / best / 1e9;
}

}  // namespace fastcnn::cpu
