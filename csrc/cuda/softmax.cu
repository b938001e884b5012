// softmax.cu -- softmax / log-softmax over rows and the fused softmax cross-entropy.
// Shapes: x / logits (rows, L) contiguous (fastcnn.ops moves the softmax axis last); labels
// (rows,) int64 class ids, or targets (rows, L) float32 probabilities.
// Semantics: the CPU's (csrc/cpu/softmax.cpp): m = max of the row (NaN when any NaN; an infinite
// max is replaced by itself if +inf and 0 if -inf, so an all -inf row gives NaN like PyTorch),
// lse = log(sum exp(x - m)); softmax = exp(x - m) * (1 / exp(lse)), log_softmax = (x - m) - lse.
// Cross-entropy: loss = mean over rows of -sum_j t_j log_softmax_j (labels: lse - (x_t - m)),
// accumulated in double; dlogits = (softmax * sum(t) - t) / rows.
// Approach: one warp per row (8 rows per 256-thread block, grid-stride over rows): lanes stride
// the row, then xor-butterfly reductions (every lane gets the same bits; fixed order, so the
// same result on every run and GPU). Row losses go to a double buffer; one block sums them in a
// fixed order. Class labels are validated on the device: a bad label sets an integer atomicMin
// flag (the first bad row), its row is computed without the label term (no out-of-bounds read)
// and the loss becomes NaN; the final kernel writes the loss (a double) and the check record
// (bad row or -1, its label) to device memory the caller owns: nothing is copied back and the
// stream is not synchronised (the adapter reads the record at the next host read and raises the
// CPU's ValueError naming that row and label).
// Napkin: the seeds' (64, 10) logits are ~3 KB: launch-latency bound (two launches, ~5 us);
// (4096, 1000) is 16 MB: one pass of reads for max, one for the sum, one write (~15 us).
#include "cuda/common.cuh"

namespace fastcnn::cuda {
namespace {

constexpr int kRowsPerBlock = kThreads / 32;
constexpr unsigned kFull = 0xffffffffu;


FASTCNN_D float warp_max(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    const float u = __shfl_xor_sync(kFull, v, o);
    v = u > v ? u : v;
  }
  return __shfl_sync(kFull, v, 0);  // one value for all lanes (the sign of a zero max may differ)
}

template <typename T>
FASTCNN_D T warp_sum(T v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(kFull, v, o);
  return v;  // a + b == b + a exactly: every lane holds the same bits
}

FASTCNN_D int warp_any(int v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v |= __shfl_xor_sync(kFull, v, o);
  return v;
}

// m and lse of one row, computed by the 32 lanes of a warp (see the header for the rules).
FASTCNN_D void row_stats(const float* xr, int64_t L, int lane, float& mx, float& lse) {
  float m = -__int_as_float(0x7f800000);
  int nan = 0;
  for (int64_t j = lane; j < L; j += 32) {
    const float v = xr[j];
    if (v != v) nan = 1;
    m = v > m ? v : m;
  }
  m = warp_max(m);
  if (warp_any(nan)) {
    m = __int_as_float(0x7fc00000);
  } else if (m == __int_as_float(0x7f800000) || m == -__int_as_float(0x7f800000)) {
    m = m > 0.0f ? m : 0.0f;
  }
  float s = 0.0f;
  for (int64_t j = lane; j < L; j += 32) s += expf(xr[j] - m);
  s = warp_sum(s);
  mx = m;
  lse = logf(s);
}

// f(row, xr, mx, ls) for each row this warp owns (one warp per row, grid-stride over rows;
// xr: the row, mx / ls: its row_stats)
template <class F>
FASTCNN_D void for_each_row(const float* x, int64_t rows, int64_t L, int lane, const F& f) {
  const int warp = threadIdx.x / 32;
  for (int64_t row = static_cast<int64_t>(blockIdx.x) * kRowsPerBlock + warp; row < rows;
       row += static_cast<int64_t>(gridDim.x) * kRowsPerBlock) {
    const float* xr = x + row * L;
    float mx, ls;
    row_stats(xr, L, lane, mx, ls);
    f(row, xr, mx, ls);
  }
}

__global__ void __launch_bounds__(kThreads)
    softmax_kernel(const float* __restrict__ x, float* __restrict__ y, int64_t rows, int64_t L,
                   int log) {
  const int lane = threadIdx.x % 32;
  for_each_row(x, rows, L, lane, [&](int64_t row, const float* xr, float mx, float ls) {
    float* yr = y + row * L;
    if (log) {
      for (int64_t j = lane; j < L; j += 32) yr[j] = (xr[j] - mx) - ls;
    } else {
      const float inv = 1.0f / expf(ls);
      for (int64_t j = lane; j < L; j += 32) yr[j] = __fmul_rn(expf(xr[j] - mx), inv);
    }
  });
}

__global__ void __launch_bounds__(kThreads)
    ce_rows_kernel(const float* __restrict__ logits, const int64_t* __restrict__ labels,
                   const float* __restrict__ targets, float* __restrict__ dlogits,
                   double* __restrict__ row_loss, int64_t rows, int64_t L, float inv_rows,
                   unsigned long long* bad) {
  const int lane = threadIdx.x % 32;
  for_each_row(logits, rows, L, lane, [&](int64_t row, const float* xr, float mx, float ls) {
    float* dr = dlogits + row * L;
    const float inv = 1.0f / expf(ls);
    if (labels) {
      const int64_t t = labels[row];
      const bool valid = t >= 0 && t < L;
      if (!valid && lane == 0) atomicMin(bad, static_cast<unsigned long long>(row));
      for (int64_t j = lane; j < L; j += 32) {
        float d = __fmul_rn(__fmul_rn(expf(xr[j] - mx), inv), inv_rows);
        if (valid && j == t) d = __fsub_rn(d, inv_rows);
        dr[j] = d;
      }
      if (lane == 0)
        row_loss[row] = valid ? static_cast<double>(ls) -
                                    (static_cast<double>(xr[t]) - static_cast<double>(mx))
                              : 0.0;
    } else {
      const float* tr = targets + row * L;
      float tsum = 0.0f;
      double loss = 0.0;
      for (int64_t j = lane; j < L; j += 32) {
        const float tj = tr[j];
        tsum += tj;
        const float logp = (xr[j] - mx) - ls;
        loss -= static_cast<double>(tj) * static_cast<double>(logp);
      }
      tsum = warp_sum(tsum);
      loss = warp_sum(loss);
      for (int64_t j = lane; j < L; j += 32) {
        const float p = __fmul_rn(__fmul_rn(expf(xr[j] - mx), inv), tsum);
        dr[j] = __fmul_rn(__fsub_rn(p, tr[j]), inv_rows);
      }
      if (lane == 0) row_loss[row] = loss;
    }
  });
}

// One block: the mean of the row losses in a fixed order (NaN after a bad label); the check
// record {first bad row or -1, its label} (labels only; check may be null without labels).
__global__ void __launch_bounds__(kThreads)
    ce_final_kernel(const double* __restrict__ row_loss, int64_t rows,
                    const int64_t* __restrict__ labels, const unsigned long long* bad,
                    double* loss, int64_t* check) {
  __shared__ double smem[kThreads];
  double acc = 0.0;
  for (int64_t i = threadIdx.x; i < rows; i += kThreads) acc += row_loss[i];
  const double total = block_sum(acc, smem);
  if (threadIdx.x == 0) {
    const bool ok = !labels || *bad == ~0ull;
    *loss = ok ? total / static_cast<double>(rows) : static_cast<double>(__int_as_float(0x7fc00000));
    if (labels && check) {
      check[0] = ok ? -1 : static_cast<int64_t>(*bad);
      check[1] = ok ? 0 : labels[*bad];
    }
  }
}

}  // namespace

void softmax_forward(const float* x, float* y, int64_t rows, int64_t L, bool log, Stream stream) {
  if (rows <= 0 || L <= 0) return;
  launch(log ? "log_softmax" : "softmax", softmax_kernel, grid_1d(rows, kRowsPerBlock),
         dim3(kThreads), stream, x, y, rows, L, log ? 1 : 0);
}

int64_t cross_entropy_workspace_bytes(int64_t rows) {
  return imax(rows, 0) * static_cast<int64_t>(sizeof(double)) +
         static_cast<int64_t>(sizeof(unsigned long long));
}

void cross_entropy(const float* logits, const int64_t* labels, const float* targets,
                   float* dlogits, void* ws, double* loss, int64_t* check, int64_t rows,
                   int64_t L, Stream stream) {
  if (rows <= 0) return;
  const char* what = "cross_entropy";
  auto* row_loss = static_cast<double*>(ws);
  auto* bad = reinterpret_cast<unsigned long long*>(row_loss + rows);
  cuda_check(cudaMemsetAsync(bad, 0xff, sizeof(*bad), as_stream(stream)), what);
  const float inv_rows = 1.0f / static_cast<float>(rows);
  launch(what, ce_rows_kernel, grid_1d(rows, kRowsPerBlock), dim3(kThreads), stream, logits,
         labels, targets, dlogits, row_loss, rows, L, inv_rows, bad);
  launch(what, ce_final_kernel, dim3(1), dim3(kThreads), stream, row_loss, rows, labels,
         static_cast<const unsigned long long*>(bad), loss, check);
}

}  // namespace fastcnn::cuda
