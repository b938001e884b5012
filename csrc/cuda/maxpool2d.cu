// maxpool2d.cu -- 2-D max pooling, forward with int64 argmax indices and backward without atomics.
// Shapes: x (N, C, H, W) -> y, idx (N, C, P, Q); idx = h*W + w within the (n, c) plane.
// Semantics: PyTorch's, exactly as the CPU kernels (csrc/cpu/generic/maxpool2d.cpp): window (p, q)
// covers rows p*sh - ph + i*dh (i < kh) that lie inside the input (implicit -inf padding, never
// chosen), scanned in row-major tap order with `if (v > maxval || isnan(v))`: ties go to the
// first maximum, the last NaN wins, an all -inf window gives -inf and the index of its first
// in-bounds element.
// Forward: one thread per output element (grid-stride; 32-bit index maths when every index
// fits, int64 otherwise).
// Backward (gather): one thread per dx element (h, w) visits the windows that can contain it,
// p in [ceil((h + ph - (kh-1)*dh) / sh), floor((h + ph) / sh)] with (h + ph - p*sh) divisible by
// dh (q likewise), in increasing (p, q) order, and adds dy[p, q] where idx[p, q] == h*W + w:
// the CPU's scatter order, so the same bits, and no atomics. User-given indices are checked on
// the device first (two integer atomicMin flags, one 16-byte copy to the host): an index outside
// the plane is the CPU's ValueError; an index outside its own window (never produced by
// max_pool2d) selects a serial-per-plane scatter in the CPU's order instead of the gather.
// Napkin: 2x2/2 on 64 x 32 x 26 x 26: 1.4 M outputs x 4 taps; the gather reads <= 1 window per
// dx element; both are memory bound (~10 us each on an H100).
#include "cuda/common.cuh"

namespace fastcnn::cuda {
namespace {

struct PoolGeom {
  int64_t H, W, P, Q, kh, kw, sh, sw, ph, pw, dh, dw;
  FastDiv div_Q, div_P, div_W, div_H;
};

PoolGeom geom(const Pool2dParams& p) {
  PoolGeom g{p.H,        p.W,        p.P,      p.Q,      p.kh,     p.kw,
             p.stride_h, p.stride_w, p.pad_h,  p.pad_w,  p.dil_h,  p.dil_w,
             FastDiv(p.Q), FastDiv(p.P), FastDiv(p.W), FastDiv(p.H)};
  return g;
}

// The 32-bit kernels are exact when every element index, plane offset and window coordinate
// (padding and dilation included) stays below 2^31.
bool pool_fits31(const Pool2dParams& p) {
  const int64_t reach_h = p.H + p.pad_h + (p.kh - 1) * p.dil_h + p.stride_h;
  const int64_t reach_w = p.W + p.pad_w + (p.kw - 1) * p.dil_w + p.stride_w;
  return fits31({p.N * p.C * p.H * p.W, p.N * p.C * p.P * p.Q, reach_h * reach_w,
                 p.P * p.stride_h + reach_h, p.Q * p.stride_w + reach_w});
}

// first tap >= 0 of an axis starting at i0: PyTorch's `while (i0 < 0) i0 += dil;`
template <typename I>
FASTCNN_D I first_in_bounds(I i0, I dil) {
  return i0 < 0 ? i0 + ((-i0 + dil - 1) / dil) * dil : i0;
}

// Idx = int32_t (every index below 2^31, see pool_fits31) or int64_t. The grid-stride counter
// stays int64 (its last step may pass 2^31); the per-element maths is Idx.
template <typename Idx>
__global__ void __launch_bounds__(kThreads)
    maxpool_fwd_kernel(const float* __restrict__ x, float* __restrict__ y,
                       int64_t* __restrict__ idx, int64_t total, PoolGeom g) {
  const float ninf = -__int_as_float(0x7f800000);
  const Idx H = static_cast<Idx>(g.H), W = static_cast<Idx>(g.W);
  const Idx sh = static_cast<Idx>(g.sh), sw = static_cast<Idx>(g.sw);
  const Idx dh = static_cast<Idx>(g.dh), dw = static_cast<Idx>(g.dw);
  for (int64_t i = global_thread(); i < total; i += grid_threads()) {
    int64_t t, plane;
    const Idx oq = static_cast<Idx>(g.div_Q.divmod(i, t));
    const Idx op = static_cast<Idx>(g.div_P.divmod(t, plane));
    const float* xp = x + static_cast<Idx>(plane) * H * W;
    const Idx hs = op * sh - static_cast<Idx>(g.ph), ws = oq * sw - static_cast<Idx>(g.pw);
    const Idx h1 = hs + static_cast<Idx>(g.kh - 1) * dh + 1 < H
                       ? hs + static_cast<Idx>(g.kh - 1) * dh + 1 : H;
    const Idx w1 = ws + static_cast<Idx>(g.kw - 1) * dw + 1 < W
                       ? ws + static_cast<Idx>(g.kw - 1) * dw + 1 : W;
    const Idx h0 = first_in_bounds(hs, dh), w0 = first_in_bounds(ws, dw);
    float maxval = ninf;
    Idx maxidx = -1;
    if (h0 < h1 && w0 < w1) {
      maxidx = h0 * W + w0;
      for (Idx h = h0; h < h1; h += dh) {
        for (Idx w = w0; w < w1; w += dw) {
          const float v = xp[h * W + w];
          if (v > maxval || v != v) {
            maxval = v;
            maxidx = h * W + w;
          }
        }
      }
    }
    y[i] = maxval;
    if (idx) idx[i] = maxidx;
  }
}

// floor(a / b) for b > 0 in Idx
template <typename I>
FASTCNN_D I floor_div_t(I a, I b) {
  return a >= 0 ? a / b : -((-a + b - 1) / b);
}

// The windows of one axis containing input position h: [lo, hi] (empty when lo > hi).
template <typename I>
FASTCNN_D void window_range(I h, I pad, I k, I stride, I dil, I out, I& lo, I& hi) {
  lo = -floor_div_t<I>(-(h + pad - (k - 1) * dil), stride);  // ceil division
  lo = lo > 0 ? lo : I{0};
  hi = floor_div_t<I>(h + pad, stride);
  hi = hi < out - 1 ? hi : out - 1;
}

template <typename Idx>
__global__ void __launch_bounds__(kThreads)
    maxpool_bwd_gather_kernel(const float* __restrict__ dy, const int64_t* __restrict__ idx,
                              float* __restrict__ dx, int64_t total, PoolGeom g) {
  const Idx P = static_cast<Idx>(g.P), Q = static_cast<Idx>(g.Q), W = static_cast<Idx>(g.W);
  const Idx ph = static_cast<Idx>(g.ph), pw = static_cast<Idx>(g.pw);
  const Idx sh = static_cast<Idx>(g.sh), sw = static_cast<Idx>(g.sw);
  const Idx dh = static_cast<Idx>(g.dh), dw = static_cast<Idx>(g.dw);
  const Idx PQ = P * Q;
  for (int64_t i = global_thread(); i < total; i += grid_threads()) {
    int64_t t, plane;
    const Idx w = static_cast<Idx>(g.div_W.divmod(i, t));
    const Idx h = static_cast<Idx>(g.div_H.divmod(t, plane));
    const int64_t me = h * W + w;
    const float* dyp = dy + static_cast<Idx>(plane) * PQ;
    const int64_t* ip = idx + static_cast<Idx>(plane) * PQ;
    Idx p0, p1, q0, q1;
    window_range<Idx>(h, ph, static_cast<Idx>(g.kh), sh, dh, P, p0, p1);
    window_range<Idx>(w, pw, static_cast<Idx>(g.kw), sw, dw, Q, q0, q1);
    float acc = 0.0f;
    for (Idx p = p0; p <= p1; ++p) {
      if (dh != 1 && (h + ph - p * sh) % dh != 0) continue;
      for (Idx q = q0; q <= q1; ++q) {
        if (dw != 1 && (w + pw - q * sw) % dw != 0) continue;
        if (ip[p * Q + q] == me) acc += dyp[p * Q + q];
      }
    }
    dx[i] = acc;
  }
}

// flags[0]: smallest i with idx[i] outside [0, H*W); flags[1]: smallest i whose index lies
// outside its own window (both ~0 when none).
__global__ void __launch_bounds__(kThreads)
    maxpool_check_kernel(const int64_t* __restrict__ idx, int64_t total, PoolGeom g,
                         unsigned long long* flags) {
  const int64_t HW = g.H * g.W;
  for (int64_t i = global_thread(); i < total; i += grid_threads()) {
    const int64_t v = idx[i];
    if (v < 0 || v >= HW) {
      atomicMin(&flags[0], static_cast<unsigned long long>(i));
      continue;
    }
    int64_t t, plane, hv;
    const int64_t oq = g.div_Q.divmod(i, t);
    const int64_t op = g.div_P.divmod(t, plane);
    const int64_t wv = g.div_W.divmod(v, hv);
    const int64_t a = hv + g.ph - op * g.sh, b = wv + g.pw - oq * g.sw;
    const bool inside = a >= 0 && a <= (g.kh - 1) * g.dh && a % g.dh == 0 && b >= 0 &&
                        b <= (g.kw - 1) * g.dw && b % g.dw == 0;
    if (!inside) atomicMin(&flags[1], static_cast<unsigned long long>(i));
  }
}

// Exact CPU semantics for any in-plane indices: per plane, dx = 0 then dx[idx[i]] += dy[i] in
// order. One thread per plane (only for indices max_pool2d could not have produced).
__global__ void __launch_bounds__(kThreads)
    maxpool_bwd_scatter_kernel(const float* __restrict__ dy, const int64_t* __restrict__ idx,
                               float* __restrict__ dx, int64_t planes, int64_t HW, int64_t PQ) {
  for (int64_t pl = global_thread(); pl < planes; pl += grid_threads()) {
    float* d = dx + pl * HW;
    for (int64_t j = 0; j < HW; ++j) d[j] = 0.0f;
    const float* s = dy + pl * PQ;
    const int64_t* ix = idx + pl * PQ;
    for (int64_t j = 0; j < PQ; ++j) {
      const int64_t t = ix[j];
      if (t >= 0 && t < HW) d[t] += s[j];
    }
  }
}

}  // namespace

void max_pool2d_forward(const float* x, float* y, int64_t* idx, const Pool2dParams& p,
                        Stream stream) {
  const int64_t total = p.N * p.C * p.P * p.Q;
  if (total <= 0) return;
  if (pool_fits31(p))
    launch("max_pool2d", maxpool_fwd_kernel<int32_t>, grid_1d(total), dim3(kThreads), stream, x,
           y, idx, total, geom(p));
  else
    launch("max_pool2d", maxpool_fwd_kernel<int64_t>, grid_1d(total), dim3(kThreads), stream, x,
           y, idx, total, geom(p));
}

void max_pool2d_backward(const float* dy, const int64_t* idx, float* dx, const Pool2dParams& p,
                         bool check_indices, void* ws, Stream stream) {
  const int64_t total = p.N * p.C * p.H * p.W, outs = p.N * p.C * p.P * p.Q;
  if (total <= 0) return;
  const PoolGeom g = geom(p);
  bool scatter = false;
  if (check_indices && outs > 0) {
    auto* flags = static_cast<unsigned long long*>(ws);
    cudaStream_t s = as_stream(stream);
    cuda_check(cudaMemsetAsync(flags, 0xff, 2 * sizeof(unsigned long long), s),
               "max_pool2d_backward");
    launch("max_pool2d_backward (indices)", maxpool_check_kernel, grid_1d(outs), dim3(kThreads),
           stream, idx, outs, g, flags);
    unsigned long long host[2] = {0, 0};
    cuda_check(cudaMemcpyAsync(host, flags, sizeof(host), cudaMemcpyDeviceToHost, s),
               "max_pool2d_backward");
    cuda_check(cudaStreamSynchronize(s), "max_pool2d_backward");
    if (host[0] != ~0ull) {
      const int64_t i = static_cast<int64_t>(host[0]);
      int64_t v = 0;
      cuda_check(cudaMemcpyAsync(&v, idx + i, sizeof(v), cudaMemcpyDeviceToHost, s),
                 "max_pool2d_backward");
      cuda_check(cudaStreamSynchronize(s), "max_pool2d_backward");
      FASTCNN_CHECK(false, "max_pool2d_backward: indices[", i, "] = ", v,
                    " is outside the input plane of ", p.H, " x ", p.W, " = ", p.H * p.W,
                    " elements");
    }
    scatter = host[1] != ~0ull;
  }
  if (scatter) {
    launch("max_pool2d_backward", maxpool_bwd_scatter_kernel, grid_1d(p.N * p.C),
           dim3(kThreads), stream, dy, idx, dx, p.N * p.C, p.H * p.W, p.P * p.Q);
  } else {
    if (pool_fits31(p))
      launch("max_pool2d_backward", maxpool_bwd_gather_kernel<int32_t>, grid_1d(total),
             dim3(kThreads), stream, dy, idx, dx, total, g);
    else
      launch("max_pool2d_backward", maxpool_bwd_gather_kernel<int64_t>, grid_1d(total),
             dim3(kThreads), stream, dy, idx, dx, total, g);
  }
}

}  // namespace fastcnn::cuda
