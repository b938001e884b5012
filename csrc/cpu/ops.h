// ops.h -- the CPU op drivers: they split work over threads and call the active kernel table.
// Drivers take contiguous float32 buffers validated by common/args.h (check_<op>_args) and write
// every element of their outputs. The checks of values in host memory (class labels, user-given
// pooling indices) are here: they are CPU work, run before any parallel kernel that relies on them.
#pragma once
#include <cstdint>

#include "common/params.h"

namespace fastcnn::cpu {

// ---- conv2d ---------------------------------------------------------------------------------
// The per-channel batch statistics of a convolution's output that conv2d_forward gathers when
// given them (for a following batch_norm_forward's `given`): mean and biased variance, (K,)
// each, in double (conv2d_stats.h: fixed chunks, a fixed combine, any thread count's bits).
struct ConvBatchStats {
  double* mean = nullptr;
  double* var = nullptr;
};
// y (N, K, P, Q) = conv(x, w) + b, then ReLU when relu != 0 (fused epilogue). stats: also the
// statistics of y (needs relu == 0: they are the convolution's output's), gathered chunk by
// chunk in the blocked form's epilogue, right after the other forms.
void conv2d_forward(const float* x, const float* w, const float* b, float* y,
                    const Conv2dParams& p, int relu, const ConvBatchStats* stats = nullptr);
// The pooled-gradient fusion (conv2d_backward's pool_indices= in Python): the gradient given is
// that of max_pool2d(conv output), dy (N, K, P', Q'), to be routed back through the pooling
// (max_pool2d_backward's rule) into the conv output's gradient (N, K, P, Q).
struct PooledGrad {
  const int64_t* idx = nullptr;  // (N, K, P', Q') argmax indices, each in [0, P*Q) (checked by
                                 // check_max_pool2d_indices)
  Pool2dParams pp;               // the pooling: input (N, K, P, Q) -> (N, K, P', Q')
};
// Gradients of conv2d_forward for the outputs that are not null: dx (N, C, H, W), dw (K, C/groups,
// R, S), db (K,). relu_y (optional, the conv output's layout): the gradient is first passed
// through the backward of the ReLU whose output is relu_y (a Conv2D(relu)'s own output), fused
// into the passes' dy reads. pooled (optional): dy is a pooled gradient (PooledGrad), routed back
// through the pooling first, then through the ReLU; unpooled plane by plane inside the passes
// where they can (the wide-grid forms; the blocked forms image by image into their scratch,
// conv2d_blocked_dy.cpp, with db from the same planes), materialised once otherwise.
void conv2d_backward(const float* dy, const float* relu_y, const PooledGrad* pooled,
                     const float* x, const float* w, float* dx, float* dw, float* db,
                     const Conv2dParams& p);
// db[k] = sum over n, p, q of dy[n, k, p, q] (used by conv2d; layout (N, K, L) with L = P*Q)
void conv2d_backward_bias(const float* dy, float* db, int64_t N, int64_t K, int64_t L);

// ---- relu -----------------------------------------------------------------------------------
void relu_forward(const float* x, float* y, int64_t n);
void relu_backward(const float* dy, const float* y, float* dx, int64_t n);

// ---- max_pool2d -----------------------------------------------------------------------------
// Checks that every index lies in [0, H*W) (indices from the user); throws otherwise, naming
// the first one outside. Parallel scan; the error path rescans serially.
void check_max_pool2d_indices(const int64_t* idx, const Pool2dParams& p);
void max_pool2d_forward(const float* x, float* y, int64_t* idx, const Pool2dParams& p);
// dx = max pooling's gradient; indices outside [0, H*W) are skipped and make it return false
// (the caller then reports them with check_max_pool2d_indices, outside any parallel region).
bool max_pool2d_backward(const float* dy, const int64_t* idx, float* dx, const Pool2dParams& p);

// ---- linear ---------------------------------------------------------------------------------
// y (N, out) = x (N, in) . w (out, in)^T + b, then ReLU when relu != 0
void linear_forward(const float* x, const float* w, const float* b, float* y, const LinearParams& p,
                    int relu);
void linear_backward_data(const float* dy, const float* w, float* dx, const LinearParams& p);
void linear_backward_weights(const float* dy, const float* x, float* dw, const LinearParams& p);
// db[j] = sum over rows i of dy[i, j] (dy is (N, out))
void linear_backward_bias(const float* dy, float* db, const LinearParams& p);

// ---- softmax / cross-entropy (rows of length L; the binding moves the axis last) -----------
void softmax_forward(const float* x, float* y, int64_t rows, int64_t L, bool log);
// Mean cross-entropy over rows: labels are class ids (int64, validated by check_class_labels)
// or, when labels == nullptr, targets (rows, L) probabilities. Writes dlogits (rows, L).
double cross_entropy(const float* logits, const int64_t* labels, const float* targets,
                     float* dlogits, int64_t rows, int64_t L);
void check_class_labels(const int64_t* labels, int64_t n, int64_t classes);

// ---- optimizer updates (optim.cpp), in place, elementwise, bit-identical to the NumPy formulas
// of fastcnn.optimizers and to the CUDA updates. SGD: buf may be null when momentum == 0.
void sgd_update(float* p, const float* g, float* buf, int64_t n, float lr, float momentum,
                float weight_decay, bool nesterov, bool first_step);
void adam_update(float* p, const float* g, float* m, float* v, int64_t n, const AdamScalars& s);

// ---- machine probes (benchmarks) -----------------------------------------------------------
// GFLOP/s of the active ISA's FMA units on `threads` threads running at once for ~`seconds`.
double probe_fma_gflops(double seconds, int threads);
// GB/s (bytes read + written) of a parallel copy of `bytes` bytes, best of 5.
double probe_copy_gbps(int64_t bytes, int threads);

// ---- normalization family (batch_norm.cpp) ----------------------------------------------------
// x, y (N, C, S) with S = p.S; weight, bias (C,) or null (1, 0); running_mean / running_var
// (C,) or null (both or neither; read in inference, updated in place in training when given);
// writes y and the per-channel mean and invstd = 1/sqrt(var + eps) used (C,). Training: the
// batch's statistics (biased variance; the unbiased one for running_var); an empty batch
// gives NaN mean / invstd and leaves the running statistics alone. p.relu: y = relu(bn(x))
// (the ReLU fused into the apply pass: the bits of relu_forward on the unfused y).
// given (training only, optional): the batch's statistics already gathered (conv2d_forward's
// ConvBatchStats of x), used instead of pass 1; the rest as without.
void batch_norm_forward(const float* x, const float* weight, const float* bias,
                        float* running_mean, float* running_var, float* y, float* mean,
                        float* invstd, const BatchNormParams& p,
                        const ConvBatchStats* given = nullptr);
// Gradients for the outputs that are not null: dx (N, C, S), dweight = sum dy * xhat and
// dbias = sum dy (C,), with xhat = (x - mean) * invstd; p.training: through the batch
// statistics, else through fixed ones (dx = dy * invstd * weight). weight null = 1.
// relu_y (N, C, S) or null: the output of a forward with p.relu; dy is then the ReLU output's
// gradient, masked (relu_y <= 0 -> 0, relu_backward's rule) inside the passes.
void batch_norm_backward(const float* dy, const float* x, const float* weight, const float* mean,
                         const float* invstd, float* dx, float* dweight, float* dbias,
                         const BatchNormParams& p, const float* relu_y = nullptr);
// ---- pooling family: average and global pooling (issue 17) ------------------------------------
// y (N, C, P, Q) = avg_pool2d(x) (PyTorch's semantics and bits; avgpool2d.cpp builds the
// divisor table); dx (N, C, H, W) its gradient, a deterministic gather.
void avg_pool2d_forward(const float* x, float* y, const AvgPool2dParams& a);
void avg_pool2d_backward(const float* dy, float* dx, const AvgPool2dParams& a);
// y (N, C) = mean of each plane; dx (N, C, H, W) = dy / (H*W).
void global_avg_pool2d_forward(const float* x, float* y, const GlobalPool2dParams& p);
void global_avg_pool2d_backward(const float* dy, float* dx, const GlobalPool2dParams& p);
// y (N, C) = max of each plane, idx (N, C) its flat index (may be null; max_pool2d's rule).
void global_max_pool2d_forward(const float* x, float* y, int64_t* idx,
                               const GlobalPool2dParams& p);
// dx = dy routed to idx; an index outside [0, H*W) throws ValueError naming it (after the
// parallel pass: no exception leaves a parallel region).
void global_max_pool2d_backward(const float* dy, const int64_t* idx, float* dx,
                                const GlobalPool2dParams& p);
// ---- activation family (issue 17; activation.cpp): elementwise over n floats, fixed 64 Ki
// chunks over the threads (bit-identical for any thread count); in place allowed (y == x,
// dx == dy or dx == the forward tensor). Backward from the forward OUTPUT y (sigmoid, tanh) or
// INPUT x (leaky_relu, gelu, silu). gelu: tanh_approx selects PyTorch's approximate="tanh".
void sigmoid_forward(const float* x, float* y, int64_t n);
void sigmoid_backward(const float* dy, const float* y, float* dx, int64_t n);
void tanh_forward(const float* x, float* y, int64_t n);
void tanh_backward(const float* dy, const float* y, float* dx, int64_t n);
void leaky_relu_forward(const float* x, float* y, int64_t n, float negative_slope);
void leaky_relu_backward(const float* dy, const float* x, float* dx, int64_t n,
                         float negative_slope);
void gelu_forward(const float* x, float* y, int64_t n, bool tanh_approx);
void gelu_backward(const float* dy, const float* x, float* dx, int64_t n, bool tanh_approx);
void silu_forward(const float* x, float* y, int64_t n);
void silu_backward(const float* dy, const float* x, float* dx, int64_t n);

}  // namespace fastcnn::cpu
