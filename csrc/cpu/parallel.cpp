// parallel.cpp -- the library's thread setting (default: OpenMP's max threads at load).
#include "cpu/parallel.h"

#include <atomic>

namespace fastcnn::cpu {
namespace {
std::atomic<int>& thread_setting() {
#ifdef _OPENMP
  static std::atomic<int> n{std::max(1, omp_get_max_threads())};
#else
  static std::atomic<int> n{1};
#endif
  return n;
}
}  // namespace

int num_threads() { return thread_setting().load(std::memory_order_relaxed); }
void set_num_threads(int n) { thread_setting().store(std::max(1, n), std::memory_order_relaxed); }

}  // namespace fastcnn::cpu
