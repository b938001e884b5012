// conv2d_im2col.cpp (generic) -- conv2d's implicit-im2col packers (conv2d_im2col_impl.h) with a
// portable segment copy.
// Segment: zeros, a contiguous (or strided) copy of the in-bounds part, zeros.
#include "cpu/kernels.h"

namespace fastcnn::cpu::generic {
namespace {

#include "cpu/conv2d_im2col_impl.h"

inline void segment_span(float* dst, const float* row, int64_t W, int64_t w0, int64_t ws,
                         int64_t len, int64_t lo, int64_t hi) {
  (void)W;
  for (int64_t t = 0; t < lo; ++t) dst[t] = 0.0f;
  for (int64_t t = lo; t < hi; ++t) dst[t] = row[w0 + t * ws];
  for (int64_t t = hi; t < len; ++t) dst[t] = 0.0f;
}

}  // namespace

void conv2d_im2col(const float* const* planes, const int64_t* bh, const int64_t* bw, int64_t kc,
                   int64_t j0, int64_t nc, int64_t Qo, int64_t Hs, int64_t Ws, int64_t a_h,
                   int64_t a_w, float* dst, int64_t nr) {
  im2col_impl(planes, bh, bw, kc, j0, nc, Qo, Hs, Ws, a_h, a_w, dst, nr);
}

void conv2d_im2col_batch(const float* const* planes, const int64_t* bh, const int64_t* bw,
                         int64_t kc, int64_t img_stride, int64_t j0, int64_t nc, int64_t P,
                         int64_t Q, int64_t Hs, int64_t Ws, int64_t a_h, int64_t a_w, float* dst,
                         int64_t nr) {
  im2col_batch_impl(planes, bh, bw, kc, img_stride, j0, nc, P, Q, Hs, Ws, a_h, a_w, dst, nr);
}

void conv2d_im2col_wgrad(const float* const* planes, const int64_t* bh, const int64_t* bw,
                         int64_t cols, int64_t img_stride, int64_t k0, int64_t kc, int64_t P,
                         int64_t Q, int64_t Hs, int64_t Ws, int64_t a_h, int64_t a_w, float* dst,
                         int64_t nr, float* scratch) {
  im2col_wgrad_two_pass(planes, bh, bw, cols, img_stride, k0, kc, P, Q, Hs, Ws, a_h, a_w, dst, nr,
                        scratch);
}

}  // namespace fastcnn::cpu::generic
