// batch_norm.cu -- batch normalisation forward / backward on the GPU, deterministic (no atomics:
// every reduction has a fixed shape chosen from the problem's shape alone).
// x seen as (N, C, S) (S = L or H*W, 1 for (N, C)); M = N*S values per channel, value i of
// channel c at ((i / S) * C + c) * S + i % S.
//  Forward, training:
//   1. bn_stats_kernel: one block per (channel c, chunk g of kChunk = 4096 values): each of the
//      256 threads loads its 16 values into registers, the block sums them (fixed tree, double)
//      -> chunk mean m0, then from the registers sum(x - m0), sum((x - m0)^2) (a chunked
//      two-pass: no E[x^2] - E[x]^2 cancellation) -> record (mean, M2) in the workspace.
//   2. bn_finalize_kernel: one block per channel merges its G records in a fixed tree (Chan's
//      formula, double), writes mean, invstd, the running statistics and the coefficients
//      (mean_hi, a = invstd * weight, b = bias - mean_lo * a).
//   3. bn_apply_kernel: grid-stride over x, y = (x - mean_hi) * a + b (float4 when S % 4 == 0 and
//      the pointers are 16-byte aligned).
//  Inference: only a coefficients kernel (from the running statistics) and the apply.
//  Fused ReLU: p.relu applies relu_f (relu.cu's rule: x < 0 ? 0 : x) in the apply kernel; the
//  backward's relu_y masks dy (y <= 0 ? 0 : dy, relu.cu's relu_b) where the sums and the dx
//  kernels load it: the unfused pair's bits, one array (relu_y) more read per pass.
//  Backward: bn_bwd_sums_kernel (sum dy, sum dy * (x - mean) per chunk, double tree), a
//  finalize per channel (fixed tree over the chunks: dweight, dbias, p, s, q), then
//  dx = (dy - p) * s - (x - mean) * q; inference dx = dy * invstd * weight (dy only).
// Workspace: 2 doubles per (channel, chunk) + 4 floats per channel (batch_norm_workspace).
// Coalescing: consecutive threads read consecutive values of one channel, i.e. contiguous
// memory when S >= 32; for S < 32 (e.g. (N, C) inputs) the stats / sums loads are strided
// (a known limit of this version; the elementwise passes are coalesced for every S).
// Napkin (H200, ~4.8 TB/s): (256, 64, 56, 56) = 205 MB: forward 2 reads + 1 write ~ 0.13 ms,
// backward 2 x (dy, x) + dx ~ 0.2 ms at bandwidth.
#include <cmath>

#include "cuda/common.cuh"

namespace fastcnn::cuda {
namespace {

constexpr int kPerThread = 16;
constexpr int64_t kChunk = int64_t{kThreads} * kPerThread;  // 4096 values per block

int64_t chunks_of(const BatchNormParams& p) { return ceil_div(p.N * p.S, kChunk); }

struct Geo {
  FastDiv s_div;   // i / S
  FastDiv sc_div;  // j / (S) then % C for flat indices: (j / S) % C
  int64_t C, S, M, G;
};

// Address of value i of channel c.
FASTCNN_D int64_t addr(const Geo& g, int64_t c, int64_t i) {
  const int64_t n = g.s_div.div(i);
  return (n * g.C + c) * g.S + (i - n * g.S);
}

__global__ void __launch_bounds__(kThreads)
    bn_stats_kernel(const float* x, double* rec, Geo g) {
  __shared__ double smem[kThreads];
  const int t = threadIdx.x;
  for (int64_t blk = blockIdx.x; blk < g.C * g.G; blk += gridDim.x) {
    const int64_t c = blk / g.G, k = blk - c * g.G;
    const int64_t i0 = k * kChunk, n = imin(kChunk, g.M - i0);
    float v[kPerThread];
    float s = 0.0f;
#pragma unroll
    for (int q = 0; q < kPerThread; ++q) {
      const int64_t i = q * kThreads + t;
      v[q] = i < n ? x[addr(g, c, i0 + i)] : 0.0f;
      s += v[q];
    }
    const double total = block_sum<double>(s, smem);
    const float m0 = static_cast<float>(total / static_cast<double>(n));
    float sd = 0.0f, sq = 0.0f;
#pragma unroll
    for (int q = 0; q < kPerThread; ++q) {
      const int64_t i = q * kThreads + t;
      const float d = i < n ? v[q] - m0 : 0.0f;
      sd += d;
      sq += d * d;
    }
    const double tsd = block_sum<double>(sd, smem);
    const double tsq = block_sum<double>(sq, smem);
    if (t == 0) {
      const double dn = static_cast<double>(n);
      rec[2 * blk] = m0 + tsd / dn;
      rec[2 * blk + 1] = tsq - tsd * tsd / dn;
    }
  }
}

struct Moments {
  double n, mean, m2;
};

FASTCNN_D Moments merge(Moments a, Moments b) {
  const double n = a.n + b.n;
  if (n == 0.0) return a;
  const double delta = b.mean - a.mean;
  return {n, a.mean + delta * (b.n / n), a.m2 + b.m2 + delta * delta * (a.n * (b.n / n))};
}

// One block per channel: the G records merged in a fixed tree (thread t folds records t,
// t + 256, ... in order, then a shared-memory tree over the threads).
__global__ void __launch_bounds__(kThreads)
    bn_finalize_kernel(const double* rec, const float* weight, const float* bias,
                       float* running_mean, float* running_var, float* mean, float* invstd,
                       float* coef, Geo g, double momentum, double eps) {
  __shared__ double sn[kThreads], sm[kThreads], s2[kThreads];
  const int t = threadIdx.x;
  for (int64_t c = blockIdx.x; c < g.C; c += gridDim.x) {
    Moments acc{0.0, 0.0, 0.0};
    for (int64_t k = t; k < g.G; k += kThreads) {
      const double cnt = static_cast<double>(imin(kChunk, g.M - k * kChunk));
      const int64_t r = 2 * (c * g.G + k);
      acc = merge(acc, Moments{cnt, rec[r], rec[r + 1]});
    }
    sn[t] = acc.n, sm[t] = acc.mean, s2[t] = acc.m2;
    __syncthreads();
    for (int h = kThreads / 2; h > 0; h >>= 1) {
      if (t < h) {
        const Moments m = merge(Moments{sn[t], sm[t], s2[t]}, Moments{sn[t + h], sm[t + h], s2[t + h]});
        sn[t] = m.n, sm[t] = m.mean, s2[t] = m.m2;
      }
      __syncthreads();
    }
    if (t == 0) {
      const double M = static_cast<double>(g.M);
      double mu, var;
      if (g.M == 0) {
        mu = var = NAN;
      } else {
        mu = sm[0];
        var = s2[0] / M;
        var = var < 0.0 ? 0.0 : var;
        if (running_mean) {
          running_mean[c] = static_cast<float>((1.0 - momentum) * running_mean[c] + momentum * mu);
          running_var[c] = static_cast<float>((1.0 - momentum) * running_var[c] +
                                              momentum * var * (M / (M - 1.0)));
        }
      }
      const double is = 1.0 / sqrt(var + eps);
      const float mf = static_cast<float>(mu);
      const float af = static_cast<float>(is * (weight ? weight[c] : 1.0f));
      const double lo = mu - static_cast<double>(mf);
      mean[c] = mf;
      invstd[c] = static_cast<float>(is);
      coef[c] = mf;
      coef[g.C + c] = af;
      coef[2 * g.C + c] = static_cast<float>((bias ? bias[c] : 0.0f) - (isfinite(lo) ? lo * af : 0.0));
    }
    __syncthreads();  // the shared arrays are reused by the next channel
  }
}

// Inference: coefficients from the running statistics (threads over channels).
__global__ void __launch_bounds__(kThreads)
    bn_coef_eval_kernel(const float* weight, const float* bias, const float* running_mean,
                        const float* running_var, float* mean, float* invstd, float* coef,
                        int64_t C, double eps) {
  for (int64_t c = global_thread(); c < C; c += grid_threads()) {
    const double is = 1.0 / sqrt(static_cast<double>(running_var[c]) + eps);
    const float af = static_cast<float>(is * (weight ? weight[c] : 1.0f));
    mean[c] = running_mean[c];
    invstd[c] = static_cast<float>(is);
    coef[c] = running_mean[c];
    coef[C + c] = af;
    coef[2 * C + c] = bias ? bias[c] : 0.0f;
  }
}

// Channel of flat element j: (j / S) % C.
FASTCNN_D int64_t channel_of(const Geo& g, int64_t j) {
  const int64_t r = g.s_div.div(j);
  return r - g.sc_div.div(r) * g.C;
}

FASTCNN_D float relu_f(float v) { return v < 0.0f ? 0.0f : v; }         // relu.cu's forward
FASTCNN_D float relu_b(float d, float y) { return y <= 0.0f ? 0.0f : d; }  // and backward

// y = (x - m[c]) * a[c] + b[c] over all n elements (coef = m | a | b, C each), then ReLU when
// relu.
__global__ void __launch_bounds__(kThreads)
    bn_apply_kernel(const float* x, float* y, const float* coef, Geo g, int64_t n, int vec,
                    int relu) {
  const int64_t start = global_thread(), step = grid_threads();
  const float* m = coef;
  const float* a = coef + g.C;
  const float* b = coef + 2 * g.C;
  int64_t done = 0;
  if (vec) {
    const int64_t n4 = n / 4;
    const float4* x4 = reinterpret_cast<const float4*>(x);
    float4* y4 = reinterpret_cast<float4*>(y);
    for (int64_t i = start; i < n4; i += step) {
      const int64_t c = channel_of(g, 4 * i);
      const float mc = m[c], ac = a[c], bc = b[c];
      float4 v = x4[i];
      v.x = fmaf(v.x - mc, ac, bc), v.y = fmaf(v.y - mc, ac, bc);
      v.z = fmaf(v.z - mc, ac, bc), v.w = fmaf(v.w - mc, ac, bc);
      if (relu) v.x = relu_f(v.x), v.y = relu_f(v.y), v.z = relu_f(v.z), v.w = relu_f(v.w);
      y4[i] = v;
    }
    done = n4 * 4;
  }
  for (int64_t i = done + start; i < n; i += step) {
    const int64_t c = channel_of(g, i);
    const float v = fmaf(x[i] - m[c], a[c], b[c]);
    y[i] = relu ? relu_f(v) : v;
  }
}

__global__ void __launch_bounds__(kThreads)
    bn_bwd_sums_kernel(const float* dy, const float* ry, const float* x, const float* mean,
                       double* rec, Geo g) {
  __shared__ double smem[kThreads];
  const int t = threadIdx.x;
  for (int64_t blk = blockIdx.x; blk < g.C * g.G; blk += gridDim.x) {
    const int64_t c = blk / g.G, k = blk - c * g.G;
    const int64_t i0 = k * kChunk, n = imin(kChunk, g.M - i0);
    const float mc = mean[c];
    float sg = 0.0f, sh = 0.0f;
#pragma unroll 4
    for (int q = 0; q < kPerThread; ++q) {
      const int64_t i = q * kThreads + t;
      if (i < n) {
        const int64_t a = addr(g, c, i0 + i);
        const float d = ry ? relu_b(dy[a], ry[a]) : dy[a];
        sg += d;
        sh = fmaf(d, x[a] - mc, sh);
      }
    }
    const double tg = block_sum<double>(sg, smem);
    const double th = block_sum<double>(sh, smem);
    if (t == 0) rec[2 * blk] = tg, rec[2 * blk + 1] = th;
  }
}

// One block per channel: fixed-tree sums of the chunk records; dweight, dbias and the dx
// coefficients m | p | s | q (C each).
__global__ void __launch_bounds__(kThreads)
    bn_bwd_finalize_kernel(const double* rec, const float* weight, const float* mean,
                           const float* invstd, float* dweight, float* dbias, float* coef,
                           Geo g) {
  __shared__ double smem[kThreads];
  const int t = threadIdx.x;
  for (int64_t c = blockIdx.x; c < g.C; c += gridDim.x) {
    double a = 0.0, b = 0.0;
    for (int64_t k = t; k < g.G; k += kThreads) {
      a += rec[2 * (c * g.G + k)];
      b += rec[2 * (c * g.G + k) + 1];
    }
    const double sdy = block_sum<double>(a, smem);
    const double sdxm = block_sum<double>(b, smem);
    if (t == 0) {
      const double is = invstd[c], M = static_cast<double>(g.M);
      const double s = is * (weight ? weight[c] : 1.0f);
      if (dweight) dweight[c] = static_cast<float>(sdxm * is);
      if (dbias) dbias[c] = static_cast<float>(sdy);
      coef[c] = mean[c];
      coef[g.C + c] = g.M ? static_cast<float>(sdy / M) : 0.0f;
      coef[2 * g.C + c] = static_cast<float>(s);
      coef[3 * g.C + c] = g.M ? static_cast<float>(is * is * (sdxm / M) * s) : 0.0f;
    }
  }
}

// dx = (dy - p[c]) * s[c] - (x - m[c]) * q[c] (training) or dy * s[c] (x == nullptr), dy first
// masked by ry (the fused ReLU's output) when ry is not null.
__global__ void __launch_bounds__(kThreads)
    bn_bwd_apply_kernel(const float* dy, const float* ry, const float* x, float* dx,
                        const float* coef, Geo g, int64_t n, int vec) {
  const int64_t start = global_thread(), step = grid_threads();
  const float* m = coef;
  const float* p = coef + g.C;
  const float* s = coef + 2 * g.C;
  const float* q = coef + 3 * g.C;
  int64_t done = 0;
  if (vec) {
    const int64_t n4 = n / 4;
    const float4* d4 = reinterpret_cast<const float4*>(dy);
    const float4* x4 = reinterpret_cast<const float4*>(x);
    const float4* r4 = reinterpret_cast<const float4*>(ry);
    float4* o4 = reinterpret_cast<float4*>(dx);
    for (int64_t i = start; i < n4; i += step) {
      const int64_t c = channel_of(g, 4 * i);
      const float mc = m[c], pc = p[c], sc = s[c], qc = q[c];
      float4 d = d4[i];
      if (ry) {
        const float4 r = r4[i];
        d.x = relu_b(d.x, r.x), d.y = relu_b(d.y, r.y), d.z = relu_b(d.z, r.z), d.w = relu_b(d.w, r.w);
      }
      if (x) {
        const float4 v = x4[i];
        o4[i] = make_float4(fmaf(d.x - pc, sc, -(v.x - mc) * qc), fmaf(d.y - pc, sc, -(v.y - mc) * qc),
                            fmaf(d.z - pc, sc, -(v.z - mc) * qc), fmaf(d.w - pc, sc, -(v.w - mc) * qc));
      } else {
        o4[i] = make_float4(d.x * sc, d.y * sc, d.z * sc, d.w * sc);
      }
    }
    done = n4 * 4;
  }
  for (int64_t i = done + start; i < n; i += step) {
    const int64_t c = channel_of(g, i);
    const float d = ry ? relu_b(dy[i], ry[i]) : dy[i];
    dx[i] = x ? fmaf(d - p[c], s[c], -(x[i] - m[c]) * q[c]) : d * s[c];
  }
}

bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15u) == 0; }

Geo geo_of(const BatchNormParams& p) {
  Geo g;
  g.C = p.C, g.S = p.S, g.M = p.N * p.S, g.G = chunks_of(p);
  g.s_div = FastDiv(p.S);
  g.sc_div = FastDiv(p.C);
  return g;
}

dim3 grid_blocks(int64_t n) {
  return dim3(static_cast<unsigned>(imax(1, imin(n, FASTCNN_CUDA_MAX_BLOCKS_1D))));
}

}  // namespace

int64_t batch_norm_workspace(const BatchNormParams& p) {
  return 16 * p.C * imax(1, chunks_of(p)) + 16 * p.C;
}

void batch_norm_forward(const float* x, const float* weight, const float* bias,
                        float* running_mean, float* running_var, float* y, float* mean,
                        float* invstd, void* ws, const BatchNormParams& p, Stream stream) {
  if (p.C == 0) return;
  const Geo g = geo_of(p);
  double* rec = static_cast<double*>(ws);
  float* coef = reinterpret_cast<float*>(rec + 2 * p.C * imax(1, g.G));
  if (p.training) {
    if (g.G > 0)
      launch("batch_norm", bn_stats_kernel, grid_blocks(p.C * g.G), dim3(kThreads), stream, x,
             rec, g);
    launch("batch_norm", bn_finalize_kernel, grid_blocks(p.C), dim3(kThreads), stream,
           static_cast<const double*>(rec), weight, bias, running_mean, running_var, mean, invstd,
           coef, g, p.momentum, p.eps);
  } else {
    launch("batch_norm", bn_coef_eval_kernel, grid_1d(p.C), dim3(kThreads), stream, weight, bias,
           static_cast<const float*>(running_mean), static_cast<const float*>(running_var), mean,
           invstd, coef, p.C, p.eps);
  }
  const int64_t n = p.N * p.C * p.S;
  if (n == 0) return;
  const int vec = p.S % 4 == 0 && aligned16(x) && aligned16(y);
  launch("batch_norm", bn_apply_kernel, grid_1d(vec ? ceil_div(n, 4) : n), dim3(kThreads), stream,
         x, y, static_cast<const float*>(coef), g, n, vec, p.relu ? 1 : 0);
}

void batch_norm_backward(const float* dy, const float* x, const float* weight, const float* mean,
                         const float* invstd, float* dx, float* dweight, float* dbias, void* ws,
                         const BatchNormParams& p, Stream stream, const float* relu_y) {
  if (p.C == 0) return;
  const Geo g = geo_of(p);
  double* rec = static_cast<double*>(ws);
  float* coef = reinterpret_cast<float*>(rec + 2 * p.C * imax(1, g.G));
  const bool sums = p.training ? (dx || dweight || dbias) : (dweight || dbias);
  Geo gf = g;  // the finalize's view: no records when the sums are not needed (they are then 0)
  if (sums && g.G > 0)
    launch("batch_norm_backward", bn_bwd_sums_kernel, grid_blocks(p.C * g.G), dim3(kThreads),
           stream, dy, relu_y, x, mean, rec, g);
  else
    gf.G = 0;
  launch("batch_norm_backward", bn_bwd_finalize_kernel, grid_blocks(p.C), dim3(kThreads), stream,
         static_cast<const double*>(rec), weight, mean, invstd, dweight, dbias, coef, gf);
  const int64_t n = p.N * p.C * p.S;
  if (!dx || n == 0) return;
  const float* xs = p.training ? x : nullptr;
  const int vec = p.S % 4 == 0 && aligned16(dy) && aligned16(dx) && (!xs || aligned16(xs)) &&
                  (!relu_y || aligned16(relu_y));
  launch("batch_norm_backward", bn_bwd_apply_kernel, grid_1d(vec ? ceil_div(n, 4) : n),
         dim3(kThreads), stream, dy, relu_y, xs, dx, static_cast<const float*>(coef), g, n, vec);
}

}  // namespace fastcnn::cuda
