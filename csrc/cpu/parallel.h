// parallel.h -- the library's thread setting and one static parallel-for over OpenMP.
// Work is split into contiguous ranges of items; which thread runs an item never changes what
// the item computes, so results are identical for any thread count. With one thread (or one
// item) no OpenMP region is entered at all (a forked child that falls back to one thread can
// never hang in libgomp).
#pragma once
#include <algorithm>
#include <cstdint>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace fastcnn::cpu {

int num_threads();
void set_num_threads(int n);   // n >= 1 (validated by the caller)

// Threads worth waking for `work` units when each should get at least `grain` of them: a
// parallel region costs microseconds (up to a millisecond on a busy machine), so small calls
// stay on the calling thread.
inline int threads_for(double work, double grain) {
  const double want = work / grain;
  const int nt = num_threads();
  return want >= nt ? nt : (want < 1.0 ? 1 : static_cast<int>(want));
}

// f(thread_index, begin, end) over [0, n) split into nt contiguous ranges; nt <= num_threads().
template <typename F>
void parallel_for(int64_t n, F&& f, int max_threads = 0) {
  if (n <= 0) return;
  int64_t nt = max_threads > 0 ? max_threads : num_threads();
  nt = std::min<int64_t>(nt, n);
  if (nt <= 1) {
    f(0, int64_t{0}, n);
    return;
  }
#ifdef _OPENMP
#pragma omp parallel num_threads(static_cast<int>(nt))
  {
    const int64_t t = omp_get_thread_num(), T = omp_get_num_threads();
    const int64_t b = n * t / T, e = n * (t + 1) / T;
    if (b < e) f(static_cast<int>(t), b, e);
  }
#else
  f(0, int64_t{0}, n);
#endif
}

}  // namespace fastcnn::cpu
