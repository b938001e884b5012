// cuda_emu.h -- a tiny CPU emulator of the CUDA execution model, for testing fastcnn's kernels on
// a machine without a GPU. Each block runs its threads as fibers (ucontext) on one OS thread;
// a fiber runs until __syncthreads() / a warp shuffle, then the scheduler releases the barrier
// once every live thread (of the block / of the warp) has reached it. The order in which fibers
// run between barriers is shuffled (seeded), so a missing barrier shows up as a wrong result.
// Divergent barriers (some threads waiting on one that others never reach) abort with a message.
// Compile the .cu files as C++ (-x c++ -std=c++20) with -DFASTCNN_CUDA_EMULATE='"cuda_emu.h"'.
#pragma once
#include <ucontext.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <random>
#include <vector>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/common_interface_defs.h>
#define EMU_ASAN 1
#else
#define EMU_ASAN 0
#endif

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static
#define __align__(n) __attribute__((aligned(n)))

struct dim3 {
  unsigned x = 1, y = 1, z = 1;
  dim3(unsigned a = 1, unsigned b = 1, unsigned c = 1) : x(a), y(b), z(c) {}
};
struct uint3 {
  unsigned x = 0, y = 0, z = 0;
};
struct alignas(16) float4 {
  float x, y, z, w;
};
inline float4 make_float4(float a, float b, float c, float d) { return float4{a, b, c, d}; }

inline uint3 threadIdx, blockIdx;
inline dim3 blockDim, gridDim;

// ---- runtime API subset ----
typedef int cudaError_t;
constexpr cudaError_t cudaSuccess = 0;
typedef struct CUstream_st* cudaStream_t;
enum cudaMemcpyKind { cudaMemcpyHostToHost, cudaMemcpyHostToDevice, cudaMemcpyDeviceToHost,
                      cudaMemcpyDeviceToDevice, cudaMemcpyDefault };
// Counters of what a GPU would make the host wait for or copy back (read by the tests through
// fastcnn_emu_counter, see below), and the "kernels off" switch (host-cost measurement: launches,
// memsets and device-side copies return at once, so only the host's own work is timed).
namespace fastcnn_emu {
struct Counters {
  long long stream_syncs = 0;  // cudaStreamSynchronize / cudaDeviceSynchronize
  long long d2h_copies = 0;    // cudaMemcpy(Async) device -> host
  long long launches = 0;      // kernel launches (also counted with kernels off)
  // FASTCNN_EMU_KERNELS=0 in the environment starts with the kernels off
  bool kernels_off = [] {
    const char* e = std::getenv("FASTCNN_EMU_KERNELS");
    return e != nullptr && e[0] == '0';
  }();
};
inline Counters& C() {
  static Counters c;
  return c;
}
}  // namespace fastcnn_emu

// What: 0 stream syncs, 1 device-to-host copies, 2 launches; -1 resets them all.
extern "C" __attribute__((visibility("default"), used)) inline long long fastcnn_emu_counter(
    int what) {
  auto& c = fastcnn_emu::C();
  switch (what) {
    case 0: return c.stream_syncs;
    case 1: return c.d2h_copies;
    case 2: return c.launches;
    case -1: c.stream_syncs = c.d2h_copies = c.launches = 0; return 0;
    default: return -1;
  }
}
// on = 0: kernels, memsets and copies are skipped (host-cost mode); 1: normal. Returns the old.
extern "C" __attribute__((visibility("default"), used)) inline int fastcnn_emu_set_kernels(
    int on) {
  auto& c = fastcnn_emu::C();
  const int old = c.kernels_off ? 0 : 1;
  c.kernels_off = on == 0;
  return old;
}

inline cudaError_t cudaGetLastError() { return cudaSuccess; }
inline const char* cudaGetErrorName(cudaError_t) { return "cudaErrorEmulated"; }
inline const char* cudaGetErrorString(cudaError_t) { return "emulated error"; }
inline cudaError_t cudaMemsetAsync(void* p, int v, size_t n, cudaStream_t = nullptr) {
  if (!fastcnn_emu::C().kernels_off) std::memset(p, v, n);
  return cudaSuccess;
}
inline cudaError_t cudaMemcpyAsync(void* d, const void* s, size_t n, cudaMemcpyKind kind,
                                   cudaStream_t = nullptr) {
  if (kind == cudaMemcpyDeviceToHost) ++fastcnn_emu::C().d2h_copies;
  if (!fastcnn_emu::C().kernels_off || kind == cudaMemcpyDeviceToHost) std::memcpy(d, s, n);
  return cudaSuccess;
}
inline cudaError_t cudaStreamSynchronize(cudaStream_t) {
  ++fastcnn_emu::C().stream_syncs;
  return cudaSuccess;
}
inline cudaError_t cudaDeviceSynchronize() {
  ++fastcnn_emu::C().stream_syncs;
  return cudaSuccess;
}
inline cudaError_t cudaGetDeviceCount(int* n) {
  *n = 1;
  return cudaSuccess;
}
enum cudaDeviceAttr { cudaDevAttrMultiProcessorCount = 16 };
inline cudaError_t cudaGetDevice(int* d) {
  *d = 0;
  return cudaSuccess;
}
// The emulated device reports an H100 / H200 SXM's 132 multiprocessors (the tile rule's input).
inline cudaError_t cudaDeviceGetAttribute(int* v, cudaDeviceAttr a, int) {
  *v = a == cudaDevAttrMultiProcessorCount ? 132 : 0;
  return cudaSuccess;
}
inline cudaError_t cudaRuntimeGetVersion(int* v) {
  *v = 13000;
  return cudaSuccess;
}
inline cudaError_t cudaDriverGetVersion(int* v) {
  *v = 13000;
  return cudaSuccess;
}

// ---- math intrinsics (compile with -ffp-contract=off) ----
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fsub_rn(float a, float b) { return a - b; }
inline float __fdiv_rn(float a, float b) { return a / b; }
inline float __fsqrt_rn(float a) { return std::sqrt(a); }
inline float __int_as_float(int i) {
  float f;
  std::memcpy(&f, &i, 4);
  return f;
}
#include <math.h>
using std::fmaf;


namespace fastcnn_emu {

enum State { RUNNABLE, AT_BLOCK, AT_WARP, DONE };

struct Fiber {
  ucontext_t ctx;
  std::vector<char> stack;
  State state = RUNNABLE;
  uint3 tid;
};

struct Sched {
  std::vector<Fiber> fibers;
  ucontext_t main;
  int cur = -1;
  const std::function<void()>* body = nullptr;
  std::mt19937 rng{12345};
  // warp shuffle exchange: 8-byte slot per thread
  std::vector<unsigned long long> slots;
  long long launches = 0;
#if EMU_ASAN
  void* fake_main = nullptr;
  const void* main_bottom = nullptr;
  size_t main_size = 0;
#endif
};

inline Sched& S() {
  static Sched s;
  return s;
}

inline void fail(const char* msg) {
  std::fprintf(stderr, "cuda_emu: %s (block %u,%u,%u)\n", msg, blockIdx.x, blockIdx.y, blockIdx.z);
  std::abort();
}

inline void switch_to_main(Fiber& f, bool dying) {
  auto& s = S();
#if EMU_ASAN
  __sanitizer_start_switch_fiber(dying ? nullptr : &s.fake_main, s.main_bottom, s.main_size);
#else
  (void)dying;
#endif
  swapcontext(&f.ctx, &s.main);
#if EMU_ASAN
  __sanitizer_finish_switch_fiber(s.fake_main, nullptr, nullptr);
#endif
}

inline void trampoline() {
  auto& s = S();
#if EMU_ASAN
  __sanitizer_finish_switch_fiber(nullptr, &s.main_bottom, &s.main_size);
#endif
  (*s.body)();
  Fiber& f = s.fibers[s.cur];
  f.state = DONE;
  switch_to_main(f, true);
}

inline void wait(State st) {
  asm volatile("" ::: "memory");
  auto& s = S();
  Fiber& f = s.fibers[s.cur];
  f.state = st;
  switch_to_main(f, false);
  threadIdx = s.fibers[s.cur].tid;
  asm volatile("" ::: "memory");
}

inline int linear_tid() {
  return static_cast<int>(threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z));
}

template <typename F>
void run(dim3 grid, dim3 block, F&& f) {
  auto& s = S();
  ++s.launches;
  ++C().launches;
  if (C().kernels_off) return;
  const std::function<void()> body = f;
  s.body = &body;
  gridDim = grid;
  blockDim = block;
  const int nt = static_cast<int>(block.x * block.y * block.z);
  if (nt % 32 != 0) fail("block size must be a multiple of 32 in the emulator");
  s.fibers.resize(nt);
  s.slots.assign(nt, 0);
  for (auto& fb : s.fibers)
    if (fb.stack.empty()) fb.stack.resize(256 * 1024);
  for (unsigned bz = 0; bz < grid.z; ++bz)
    for (unsigned by = 0; by < grid.y; ++by)
      for (unsigned bx = 0; bx < grid.x; ++bx) {
        blockIdx = uint3{bx, by, bz};
        for (int t = 0; t < nt; ++t) {
          Fiber& fb = s.fibers[t];
          fb.tid = uint3{static_cast<unsigned>(t) % block.x,
                         (static_cast<unsigned>(t) / block.x) % block.y,
                         static_cast<unsigned>(t) / (block.x * block.y)};
          fb.state = RUNNABLE;
          getcontext(&fb.ctx);
          fb.ctx.uc_stack.ss_sp = fb.stack.data();
          fb.ctx.uc_stack.ss_size = fb.stack.size();
          fb.ctx.uc_link = nullptr;
          makecontext(&fb.ctx, trampoline, 0);
        }
        std::vector<int> order(nt);
        for (;;) {
          order.clear();
          for (int t = 0; t < nt; ++t)
            if (s.fibers[t].state == RUNNABLE) order.push_back(t);
          std::shuffle(order.begin(), order.end(), s.rng);
          for (int t : order) {
            s.cur = t;
            threadIdx = s.fibers[t].tid;
#if EMU_ASAN
            __sanitizer_start_switch_fiber(&s.fake_main, s.fibers[t].stack.data(),
                                           s.fibers[t].stack.size());
#endif
            swapcontext(&s.main, &s.fibers[t].ctx);
#if EMU_ASAN
            __sanitizer_finish_switch_fiber(s.fake_main, nullptr, nullptr);
#endif
          }
          // everyone is blocked or done: release a barrier
          int done = 0, at_block = 0;
          bool released = false;
          for (int w = 0; w < nt / 32; ++w) {
            int wdone = 0, wwarp = 0;
            for (int l = 0; l < 32; ++l) {
              const State st = s.fibers[w * 32 + l].state;
              wdone += st == DONE;
              wwarp += st == AT_WARP;
            }
            if (wwarp > 0) {
              if (wwarp + wdone != 32 || wdone != 0)
                fail("divergent warp shuffle (not all 32 lanes reached it)");
              for (int l = 0; l < 32; ++l) s.fibers[w * 32 + l].state = RUNNABLE;
              released = true;
            }
          }
          if (released) continue;
          for (auto& fb : s.fibers) {
            done += fb.state == DONE;
            at_block += fb.state == AT_BLOCK;
          }
          if (done == nt) break;
          if (at_block != nt) fail("divergent __syncthreads (some threads exited or wait elsewhere)");
          for (auto& fb : s.fibers) fb.state = RUNNABLE;
        }
      }
  s.body = nullptr;
}

}  // namespace fastcnn_emu

inline void __syncthreads() { fastcnn_emu::wait(fastcnn_emu::AT_BLOCK); }

template <typename T>
T __emu_shfl(T v, int src) {
  static_assert(sizeof(T) <= 8, "shuffle of at most 8 bytes");
  auto& s = fastcnn_emu::S();
  const int me = fastcnn_emu::linear_tid();
  const int base = me / 32 * 32;
  unsigned long long bits = 0;
  std::memcpy(&bits, &v, sizeof(T));
  s.slots[me] = bits;
  fastcnn_emu::wait(fastcnn_emu::AT_WARP);
  bits = s.slots[base + (src & 31)];
  fastcnn_emu::wait(fastcnn_emu::AT_WARP);
  T r;
  std::memcpy(&r, &bits, sizeof(T));
  return r;
}

template <typename T>
T __shfl_xor_sync(unsigned mask, T v, int lane_mask, int = 32) {
  if (mask != 0xffffffffu) fastcnn_emu::fail("partial shuffle masks are not emulated");
  return __emu_shfl(v, (fastcnn_emu::linear_tid() % 32) ^ lane_mask);
}

template <typename T>
T __shfl_sync(unsigned mask, T v, int src, int = 32) {
  if (mask != 0xffffffffu) fastcnn_emu::fail("partial shuffle masks are not emulated");
  return __emu_shfl(v, src);
}

inline unsigned long long atomicMin(unsigned long long* a, unsigned long long v) {
  const unsigned long long old = *a;
  if (v < old) *a = v;
  return old;
}
