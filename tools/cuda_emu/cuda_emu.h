// cuda_emu.h -- a tiny CPU emulator of the CUDA execution model, for testing fastcnn's kernels on
// a machine without a GPU. Each block runs its threads as fibers (ucontext) on one OS thread;
// a fiber runs until __syncthreads() / a warp shuffle, then the scheduler releases the barrier
// once every live thread (of the block / of the warp) has reached it. The order in which fibers
// run between barriers is shuffled (seeded), so a missing barrier shows up as a wrong result.
// Divergent barriers (some threads waiting on one that others never reach) abort with a message.
// cp.async (global -> shared copies) lands only at the issuing thread's matching wait_group and
// poisons its destination at issue (see __emu_cp_async below).
// Compile the .cu files as C++ (-x c++ -std=c++20) with -DFASTCNN_CUDA_EMULATE='"cuda_emu.h"'.
// Stream capture (CUDA graphs): while a stream captures (fastcnn_emu_begin_capture, called by
// fake_cupy's Stream.begin_capture), kernel launches, memsets and device-to-device copies issued
// on it are recorded as closures instead of run, and replayed by fastcnn_emu_graph_run; what CUDA
// refuses during a capture (a sync, a copy to / from pageable host memory, cudaMalloc outside
// relaxed mode, the legacy stream while a blocking stream captures) returns CUDA's error and
// invalidates the capture (ending it then gives cudaErrorStreamCaptureInvalidated).
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
#include <string>
#include <utility>
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
constexpr cudaError_t cudaErrorInvalidValue = 1;
constexpr cudaError_t cudaErrorInvalidResourceHandle = 400;
constexpr cudaError_t cudaErrorIllegalState = 401;
constexpr cudaError_t cudaErrorStreamCaptureUnsupported = 900;
constexpr cudaError_t cudaErrorStreamCaptureInvalidated = 901;
constexpr cudaError_t cudaErrorStreamCaptureUnmatched = 903;
constexpr cudaError_t cudaErrorStreamCaptureImplicit = 906;
enum cudaStreamCaptureMode { cudaStreamCaptureModeGlobal = 0, cudaStreamCaptureModeThreadLocal = 1,
                             cudaStreamCaptureModeRelaxed = 2 };
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
  long long launches = 0;      // kernels run (eagerly or as graph nodes; counted with kernels off)
  long long recorded = 0;      // kernels, memsets and copies recorded into a graph by a capture
  long long st128 = 0;         // 128-bit global stores (__emu_st128: the GEMM epilogues)
  long long cp16 = 0, cp4 = 0;  // cp.async copies of 16 bytes (cp.async.cg) and of 4 (.ca)
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

// The one capture in progress (CUDA allows one per stream; fastcnn uses one at a time) and the
// finished graphs (id = index; a destroyed graph's slot is emptied).
struct Capture {
  bool active = false;
  cudaStream_t stream = nullptr;
  int mode = cudaStreamCaptureModeRelaxed;
  bool blocking = false;  // a blocking stream: the legacy stream may not be touched meanwhile
  bool invalid = false;
  std::string why;  // what invalidated the last capture (kept after it ended)
  std::vector<std::function<void()>> nodes;
};
inline Capture& Cap() {
  static Capture c;
  return c;
}
inline std::vector<std::vector<std::function<void()>>>& Graphs() {
  static std::vector<std::vector<std::function<void()>>> g;
  return g;
}
inline cudaError_t& last_error() {
  static cudaError_t e = cudaSuccess;
  return e;
}
// Invalidates the capture (CUDA does so at the first illegal call) and returns err.
inline cudaError_t refuse(cudaError_t err, const char* what) {
  auto& c = Cap();
  if (!c.invalid) {
    c.invalid = true;
    c.why = what;
  }
  return err;
}
enum Action { RUN, RECORD, FAIL };
// What an operation issued on stream s does now: run, be recorded, or fail with *err.
inline Action classify(cudaStream_t s, cudaError_t* err, const char* what) {
  auto& c = Cap();
  if (!c.active) return RUN;
  if (s == c.stream) {
    if (c.invalid) {
      *err = cudaErrorStreamCaptureInvalidated;
      return FAIL;
    }
    return RECORD;
  }
  if (s == nullptr && c.blocking) {
    *err = refuse(cudaErrorStreamCaptureImplicit, what);
    return FAIL;
  }
  return RUN;  // another stream: runs as usual
}
inline void record(std::function<void()> node) {
  ++C().recorded;
  Cap().nodes.push_back(std::move(node));
}
}  // namespace fastcnn_emu

// What: 0 stream syncs, 1 device-to-host copies, 2 launches, 3 recorded graph nodes, 4 128-bit
// global stores, 5 16-byte cp.async copies, 6 4-byte cp.async copies; -1 resets.
extern "C" __attribute__((visibility("default"), used)) inline long long fastcnn_emu_counter(
    int what) {
  auto& c = fastcnn_emu::C();
  switch (what) {
    case 0: return c.stream_syncs;
    case 1: return c.d2h_copies;
    case 2: return c.launches;
    case 3: return c.recorded;
    case 4: return c.st128;
    case 5: return c.cp16;
    case 6: return c.cp4;
    case -1:
      c.stream_syncs = c.d2h_copies = c.launches = c.recorded = c.st128 = c.cp16 = c.cp4 = 0;
      return 0;
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

inline cudaError_t cudaGetLastError() {
  const cudaError_t e = fastcnn_emu::last_error();
  fastcnn_emu::last_error() = cudaSuccess;
  return e;
}
inline const char* cudaGetErrorName(cudaError_t e) {
  switch (e) {
    case cudaSuccess: return "cudaSuccess";
    case cudaErrorInvalidValue: return "cudaErrorInvalidValue";
    case cudaErrorInvalidResourceHandle: return "cudaErrorInvalidResourceHandle";
    case cudaErrorIllegalState: return "cudaErrorIllegalState";
    case cudaErrorStreamCaptureUnsupported: return "cudaErrorStreamCaptureUnsupported";
    case cudaErrorStreamCaptureInvalidated: return "cudaErrorStreamCaptureInvalidated";
    case cudaErrorStreamCaptureUnmatched: return "cudaErrorStreamCaptureUnmatched";
    case cudaErrorStreamCaptureImplicit: return "cudaErrorStreamCaptureImplicit";
    default: return "cudaErrorEmulated";
  }
}
inline const char* cudaGetErrorString(cudaError_t e) {  // the CUDA runtime's wording
  switch (e) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorInvalidResourceHandle: return "invalid resource handle";
    case cudaErrorIllegalState: return "the operation cannot be performed in the present state";
    case cudaErrorStreamCaptureUnsupported:
      return "operation not permitted when stream is capturing";
    case cudaErrorStreamCaptureInvalidated:
      return "operation failed due to a previous error during capture";
    case cudaErrorStreamCaptureUnmatched:
      return "capture was not initiated in this stream";
    case cudaErrorStreamCaptureImplicit:
      return "operation would make the legacy stream depend on a capturing blocking stream";
    default: return "emulated error";
  }
}
inline cudaError_t cudaMemsetAsync(void* p, int v, size_t n, cudaStream_t s = nullptr) {
  cudaError_t err = cudaSuccess;
  switch (fastcnn_emu::classify(s, &err, "cudaMemsetAsync on the legacy stream")) {
    case fastcnn_emu::RECORD:
      fastcnn_emu::record([p, v, n] {
        if (!fastcnn_emu::C().kernels_off) std::memset(p, v, n);
      });
      return cudaSuccess;
    case fastcnn_emu::FAIL: return err;
    case fastcnn_emu::RUN: break;
  }
  if (!fastcnn_emu::C().kernels_off) std::memset(p, v, n);
  return cudaSuccess;
}
// Device memory is host memory here: a copy's kind says which side is the host (pageable memory,
// as fastcnn's own host buffers are), which CUDA refuses to capture.
inline cudaError_t cudaMemcpyAsync(void* d, const void* s, size_t n, cudaMemcpyKind kind,
                                   cudaStream_t stream = nullptr) {
  const bool host = kind == cudaMemcpyDeviceToHost || kind == cudaMemcpyHostToDevice ||
                    kind == cudaMemcpyHostToHost;
  auto& cap = fastcnn_emu::Cap();
  if (host && cap.active && (stream == cap.stream || (stream == nullptr && cap.blocking)))
    return fastcnn_emu::refuse(cudaErrorStreamCaptureUnsupported,
                               "cudaMemcpyAsync between the device and pageable host memory");
  cudaError_t err = cudaSuccess;
  switch (fastcnn_emu::classify(stream, &err, "cudaMemcpyAsync on the legacy stream")) {
    case fastcnn_emu::RECORD:
      fastcnn_emu::record([d, s, n] {
        if (!fastcnn_emu::C().kernels_off) std::memcpy(d, s, n);
      });
      return cudaSuccess;
    case fastcnn_emu::FAIL: return err;
    case fastcnn_emu::RUN: break;
  }
  if (kind == cudaMemcpyDeviceToHost) ++fastcnn_emu::C().d2h_copies;
  if (!fastcnn_emu::C().kernels_off || kind == cudaMemcpyDeviceToHost) std::memcpy(d, s, n);
  return cudaSuccess;
}
inline cudaError_t cudaStreamSynchronize(cudaStream_t s) {
  ++fastcnn_emu::C().stream_syncs;
  auto& cap = fastcnn_emu::Cap();
  if (cap.active && (s == cap.stream || (s == nullptr && cap.blocking)))
    return fastcnn_emu::refuse(cudaErrorStreamCaptureUnsupported,
                               "cudaStreamSynchronize of the capturing stream");
  if (cap.active && s == nullptr && cap.mode != cudaStreamCaptureModeRelaxed)
    return fastcnn_emu::refuse(cudaErrorStreamCaptureUnsupported,
                               "cudaStreamSynchronize of the legacy stream (not relaxed mode)");
  return cudaSuccess;
}
inline cudaError_t cudaDeviceSynchronize() {
  ++fastcnn_emu::C().stream_syncs;
  if (fastcnn_emu::Cap().active)
    return fastcnn_emu::refuse(cudaErrorStreamCaptureUnsupported,
                               "cudaDeviceSynchronize while a stream captures");
  return cudaSuccess;
}
// cudaMalloc is "unsafe" during a capture unless the mode is relaxed (CuPy's default).
inline cudaError_t cudaMalloc(void** p, size_t n) {
  auto& cap = fastcnn_emu::Cap();
  if (cap.active && cap.mode != cudaStreamCaptureModeRelaxed)
    return fastcnn_emu::refuse(cudaErrorStreamCaptureUnsupported,
                               "cudaMalloc during a capture in global / thread-local mode");
  *p = std::malloc(n == 0 ? 1 : n);
  return *p == nullptr ? 2 : cudaSuccess;  // 2: cudaErrorMemoryAllocation
}
inline cudaError_t cudaFree(void* p) {
  auto& cap = fastcnn_emu::Cap();
  if (cap.active && cap.mode != cudaStreamCaptureModeRelaxed)
    return fastcnn_emu::refuse(cudaErrorStreamCaptureUnsupported,
                               "cudaFree during a capture in global / thread-local mode");
  std::free(p);
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

// One cp.async copy (global -> shared) in flight: lands at its thread's matching wait.
struct AsyncCopy {
  void* dst;
  const void* src;
  int bytes, src_bytes;  // src_bytes < bytes: the rest is zero-filled (0: all zeros, src unread)
};

struct Fiber {
  ucontext_t ctx;
  std::vector<char> stack;
  State state = RUNNABLE;
  uint3 tid;
  std::vector<AsyncCopy> open;                 // issued, not yet committed
  std::vector<std::vector<AsyncCopy>> groups;  // committed groups, oldest first
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
  if (!f.open.empty() || !f.groups.empty())
    fail("a thread exited with cp.async copies in flight (missing cp.async.wait_group)");
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

// Runs one kernel launch now: every block, one fiber per thread.
inline void exec(dim3 grid, dim3 block, const std::function<void()>& body) {
  auto& s = S();
  ++s.launches;
  ++C().launches;
  if (C().kernels_off) return;
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
          fb.open.clear();
          fb.groups.clear();
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

// A kernel launch on `stream`: run now, or recorded when the stream captures (f must own its
// arguments: common.cuh's launch() captures them by value), or refused with CUDA's error (left
// for cudaGetLastError, as a failed <<<>>> launch does).
template <typename F>
void run(dim3 grid, dim3 block, F&& f, cudaStream_t stream = nullptr) {
  std::function<void()> body(std::forward<F>(f));
  cudaError_t err = cudaSuccess;
  switch (classify(stream, &err, "a kernel launch on the legacy stream")) {
    case RECORD:
      record([grid, block, body] { exec(grid, block, body); });
      return;
    case FAIL:
      last_error() = err;
      return;
    case RUN:
      exec(grid, block, body);
      return;
  }
}

}  // namespace fastcnn_emu

// ---- stream capture and graphs, for fake_cupy (extern "C", read through ctypes) ----------------
// Begins capturing `stream` (mode: cudaStreamCaptureMode; blocking: the stream syncs with the
// legacy stream). 0 or CUDA's error (the legacy stream can't capture; one capture at a time).
extern "C" __attribute__((visibility("default"), used)) inline int fastcnn_emu_begin_capture(
    void* stream, int mode, int blocking) {
  auto& c = fastcnn_emu::Cap();
  if (stream == nullptr) return cudaErrorStreamCaptureUnsupported;
  if (c.active) return cudaErrorIllegalState;
  c.active = true;
  c.stream = static_cast<cudaStream_t>(stream);
  c.mode = mode;
  c.blocking = blocking != 0;
  c.invalid = false;
  c.why.clear();
  c.nodes.clear();
  return cudaSuccess;
}
// Nodes recorded so far by the capture in progress (-1 when none is).
extern "C" __attribute__((visibility("default"), used)) inline long long
fastcnn_emu_capture_size() {
  auto& c = fastcnn_emu::Cap();
  return c.active ? static_cast<long long>(c.nodes.size()) : -1;
}
// Invalidates the capture in progress from the Python side (a refused CuPy call); 0, or
// cudaErrorIllegalState when nothing captures.
extern "C" __attribute__((visibility("default"), used)) inline int fastcnn_emu_invalidate_capture(
    const char* why) {
  if (!fastcnn_emu::Cap().active) return cudaErrorIllegalState;
  fastcnn_emu::refuse(cudaErrorStreamCaptureUnsupported, why);
  return cudaSuccess;
}
// Ends the capture of `stream`: *id = the graph's handle, 0; or CUDA's error (the graph is then
// discarded: cudaErrorStreamCaptureInvalidated after a refused call).
extern "C" __attribute__((visibility("default"), used)) inline int fastcnn_emu_end_capture(
    void* stream, long long* id) {
  auto& c = fastcnn_emu::Cap();
  if (!c.active) return cudaErrorIllegalState;
  if (static_cast<cudaStream_t>(stream) != c.stream) return cudaErrorStreamCaptureUnmatched;
  c.active = false;
  if (c.invalid) {
    c.nodes.clear();
    return cudaErrorStreamCaptureInvalidated;
  }
  auto& g = fastcnn_emu::Graphs();
  g.push_back(std::move(c.nodes));
  c.nodes.clear();
  *id = static_cast<long long>(g.size()) - 1;
  return cudaSuccess;
}
// What invalidated the last capture ("" when nothing did).
extern "C" __attribute__((visibility("default"), used)) inline const char*
fastcnn_emu_capture_why() {
  return fastcnn_emu::Cap().why.c_str();
}
// Runs nodes [begin, end) of graph `id` (a replay runs them all, in capture order). 0, or
// cudaErrorInvalidResourceHandle for a destroyed graph or a bad range.
extern "C" __attribute__((visibility("default"), used)) inline int fastcnn_emu_graph_run(
    long long id, long long begin, long long end) {
  auto& g = fastcnn_emu::Graphs();
  if (id < 0 || id >= static_cast<long long>(g.size())) return cudaErrorInvalidResourceHandle;
  auto& nodes = g[static_cast<size_t>(id)];
  if (begin < 0 || end > static_cast<long long>(nodes.size()) || begin > end)
    return cudaErrorInvalidResourceHandle;
  for (long long i = begin; i < end; ++i) nodes[static_cast<size_t>(i)]();
  return cudaSuccess;
}
extern "C" __attribute__((visibility("default"), used)) inline void fastcnn_emu_graph_destroy(
    long long id) {
  auto& g = fastcnn_emu::Graphs();
  if (id >= 0 && id < static_cast<long long>(g.size())) g[static_cast<size_t>(id)].clear();
}

inline void __syncthreads() { fastcnn_emu::wait(fastcnn_emu::AT_BLOCK); }

// ---- cp.async (sm_80+: asynchronous copies from global to shared memory) ----
// Modelled as late and as hostile as the PTX ISA allows, so that a missing wait or barrier shows:
// at issue the destination is poisoned (all-ones bytes: a float NaN), so a thread still reading
// the old contents (no barrier between its reads and the copy) sees garbage; the data lands only
// when the issuing thread waits for the copy's group (cp.async.wait_group N: every committed
// group but the N most recent), so a read before that wait -- or, from another thread, before
// the barrier that follows every thread's wait -- sees the poison. Copies not yet committed are
// not landed by a wait (as on the GPU); a thread that exits with copies in flight aborts.
// src_bytes < bytes zero-fills the rest (cp.async's src-size operand; 0: src is not read).
// Sizes are those of the PTX forms: 4 or 8 (cp.async.ca) or 16 (cp.async.cg / .ca), both
// addresses aligned to the size whatever src_bytes (a misaligned copy faults on a GPU: here it
// aborts), 0 <= src_bytes <= bytes.
inline void __emu_cp_async(void* dst, const void* src, int bytes, int src_bytes) {
  auto& s = fastcnn_emu::S();
  if (bytes != 4 && bytes != 8 && bytes != 16) fastcnn_emu::fail("cp.async of 4, 8 or 16 bytes");
  if (src_bytes < 0 || src_bytes > bytes) fastcnn_emu::fail("cp.async src-size out of range");
  const auto mis = static_cast<uintptr_t>(bytes - 1);
  if ((reinterpret_cast<uintptr_t>(dst) & mis) || (reinterpret_cast<uintptr_t>(src) & mis))
    fastcnn_emu::fail("misaligned cp.async (addresses must be aligned to the copy size)");
  ++(bytes == 16 ? fastcnn_emu::C().cp16 : fastcnn_emu::C().cp4);
  std::memset(dst, 0xFF, static_cast<size_t>(bytes));
  s.fibers[s.cur].open.push_back(fastcnn_emu::AsyncCopy{dst, src, bytes, src_bytes});
}
inline void __emu_cp_async_commit() {
  auto& f = fastcnn_emu::S().fibers[fastcnn_emu::S().cur];
  f.groups.push_back(std::move(f.open));
  f.open.clear();
}
inline void __emu_cp_async_wait(int pending) {
  auto& f = fastcnn_emu::S().fibers[fastcnn_emu::S().cur];
  const size_t keep = static_cast<size_t>(pending < 0 ? 0 : pending);
  while (f.groups.size() > keep) {
    for (const auto& c : f.groups.front()) {
      unsigned char* d = static_cast<unsigned char*>(c.dst);
      if (c.src_bytes > 0) std::memcpy(d, c.src, static_cast<size_t>(c.src_bytes));
      std::memset(d + c.src_bytes, 0, static_cast<size_t>(c.bytes - c.src_bytes));
    }
    f.groups.erase(f.groups.begin());
  }
}

// A 128-bit global store (st.global.v4.f32): p must be 16-byte aligned (a GPU faults on a
// misaligned one: here it aborts); counted (fastcnn_emu_counter(4)) so tests see the path run.
inline void __emu_st128(void* p, const void* v) {
  if (reinterpret_cast<uintptr_t>(p) & 15u) fastcnn_emu::fail("misaligned 128-bit store");
  std::memcpy(p, v, 16);
  ++fastcnn_emu::C().st128;
}

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
