// launch.h -- the CUDA launchers, as plain C++ declarations: module_cuda.cpp (compiled by the host
// compiler) includes this and nothing of CUDA. Definitions live in csrc/cuda/*.cu.
//
// Contract of every launcher:
//  * arguments are validated by the caller with check_<op>_args (common/args.h); buffers are
//    contiguous float32 (int64 where stated) device pointers of the sizes those checks imply,
//    any alignment of their element type (vector paths are taken only where aligned);
//  * all work is queued on `stream` (a cudaStream_t passed as void*; nullptr = legacy default);
//  * workspaces are provided by the caller (CuPy's pool), sized by the *_workspace functions;
//  * every CUDA error (launch configuration, errors left by earlier asynchronous work) is thrown
//    as std::runtime_error naming the op and the CUDA error; user errors that can only be seen on
//    the device (class labels, pooling indices) are thrown as std::invalid_argument with the CPU
//    binding's message. Nothing exits or aborts;
//  * results are deterministic: the same inputs and shapes give the same bits on any GPU and any
//    run (fixed reduction orders, fixed split-K chunking chosen from the shapes only, no float
//    atomics).
#pragma once
#include <cstdint>

#include "common/params.h"

namespace fastcnn::cuda {

using Stream = void*;

// ---- device facts (device.cu; never throw: 0 without a driver or a GPU) ----------------------
int device_count() noexcept;
int runtime_version() noexcept;  // e.g. 13000; the statically linked runtime's version
int driver_version() noexcept;   // 0 without a driver

// ---- conv2d (conv2d.cu) ------------------------------------------------------------------------
// conv2d_backward's column buffer, in floats, at most (conv2d.cu: images per col2im chunk);
// the bindings report it (_cuda.COL_BUDGET_FLOATS), tests lower it with -D
#ifndef FASTCNN_CUDA_COL_BUDGET
#define FASTCNN_CUDA_COL_BUDGET (int64_t{1} << 23)  // 32 MiB of floats
#endif
constexpr int64_t kColBudget = FASTCNN_CUDA_COL_BUDGET;
// Workspace sizes in floats (forward / backward-weights: 0 when the split-K path is not used for
// these shapes; backward-data: the column buffer of a chunk of images, 0 for an empty batch).
int64_t conv2d_forward_workspace(const Conv2dParams& p);
int64_t conv2d_backward_data_workspace(const Conv2dParams& p);
int64_t conv2d_backward_weights_workspace(const Conv2dParams& p);
// y (N, K, P, Q) = conv(x, w) + b, then ReLU when relu (fused epilogue). b may be null.
void conv2d_forward(const float* x, const float* w, const float* b, float* y, float* ws,
                    const Conv2dParams& p, bool relu, Stream stream);
// dx (N, C, H, W) from dy (N, K, P, Q) and w: dcol = W^T . dy per chunk of images into ws
// (conv2d_backward_data_workspace floats), then col2im as a gather (every dx element written
// once, only its real taps added). ws may be the one backward-weights uses afterwards (same
// stream: the passes run in order).
void conv2d_backward_data(const float* dy, const float* w, float* dx, float* ws,
                          const Conv2dParams& p, Stream stream);
// dw (K, C/groups, R, S) from dy and x: reduction over N*P*Q with a fixed split-K.
void conv2d_backward_weights(const float* dy, const float* x, float* dw, float* ws,
                             const Conv2dParams& p, Stream stream);

// db[k] = sum over n < N, l < L of dy[(n*K + k)*L + l]  (L = P*Q), a deterministic two-stage
// grid reduction (reduce.cu): ws holds conv2d_backward_bias_workspace floats of partials (0:
// ws may be null). ws may be the one the other backward passes use (same stream, in order).
int64_t conv2d_backward_bias_workspace(int64_t N, int64_t K, int64_t L);
void conv2d_backward_bias(const float* dy, float* db, float* ws, int64_t N, int64_t K, int64_t L,
                          Stream stream);

// ---- relu (relu.cu) ----------------------------------------------------------------------------
void relu_forward(const float* x, float* y, int64_t n, Stream stream);
void relu_backward(const float* dy, const float* y, float* dx, int64_t n, Stream stream);

// ---- max_pool2d (maxpool2d.cu) ------------------------------------------------------------------
// idx may be null. Bytes of the workspace max_pool2d_backward needs when indices are checked.
constexpr int64_t kPoolCheckWorkspaceBytes = 16;
void max_pool2d_forward(const float* x, float* y, int64_t* idx, const Pool2dParams& p,
                        Stream stream);
// dx (N, C, H, W) from dy (N, C, P, Q) and the argmax indices (N, C, P, Q).
// check_indices (user-provided indices): ws (kPoolCheckWorkspaceBytes) receives two flags; an
// index outside [0, H*W) throws std::invalid_argument (the CPU's message, one 16-byte copy to
// the host and a stream sync); an index outside its own window (never produced by
// max_pool2d) switches to an exact, serial-per-plane scatter in the CPU's order.
// Without check_indices (indices from max_pool2d_forward) the gather kernel runs directly.
void max_pool2d_backward(const float* dy, const int64_t* idx, float* dx, const Pool2dParams& p,
                         bool check_indices, void* ws, Stream stream);

// ---- linear (linear.cu) ------------------------------------------------------------------------
int64_t linear_forward_workspace(int64_t N, int64_t in, int64_t out);          // floats
int64_t linear_backward_data_workspace(int64_t N, int64_t in, int64_t out);     // floats
int64_t linear_backward_weights_workspace(int64_t N, int64_t in, int64_t out);  // floats
// y (N, out) = x (N, in) . w (out, in)^T + b, then ReLU when relu
void linear_forward(const float* x, const float* w, const float* b, float* y, float* ws,
                    int64_t N, int64_t in, int64_t out, bool relu, Stream stream);
// dx (N, in) = dy (N, out) . w (a fixed split-K for short grids: ws of
// linear_backward_data_workspace floats, may be the one backward-weights uses: same stream)
void linear_backward_data(const float* dy, const float* w, float* dx, float* ws, int64_t N,
                          int64_t in, int64_t out, Stream stream);
// dw (out, in) = dy^T . x (reduction over the batch, fixed split-K)
void linear_backward_weights(const float* dy, const float* x, float* dw, float* ws, int64_t N,
                             int64_t in, int64_t out, Stream stream);
// db[j] = sum over rows i < N of dy[i*cols + j], the same two-stage reduction (reduce.cu); ws:
// linear_backward_bias_workspace floats (may be backward-weights' workspace: same stream)
int64_t linear_backward_bias_workspace(int64_t N, int64_t cols);
void linear_backward_bias(const float* dy, float* db, float* ws, int64_t N, int64_t cols,
                          Stream stream);

// ---- the split-K reduction of the GEMM core (gemm.cu) ------------------------------------------
// out[i] = epilogue(sum over s < splits of ws[s*total + i]) in order of s; the epilogue adds
// bias[(i / bias_inner) % bias_period] when bias is not null, then ReLU when relu.
void splitk_reduce(const float* ws, int64_t splits, int64_t total, float* out, const float* bias,
                   int64_t bias_inner, int64_t bias_period, bool relu, Stream stream);

// ---- softmax / cross-entropy (softmax.cu) ------------------------------------------------------
void softmax_forward(const float* x, float* y, int64_t rows, int64_t L, bool log, Stream stream);
// Bytes of workspace cross_entropy needs (row losses in double + the bad-label flag).
int64_t cross_entropy_workspace_bytes(int64_t rows);
// Mean softmax cross-entropy over rows into *loss (a device double), dlogits (rows, L). labels
// (int64 class ids) or, when labels is null, targets (rows, L). Only queues work: no copy to the
// host, no synchronisation. With labels, check (2 device int64) receives {first row whose label
// is outside [0, L), that label} or {-1, 0}, and the loss is NaN when a label is bad: the caller
// reads the record later and raises (fastcnn._cuda_ops: the CPU's ValueError).
void cross_entropy(const float* logits, const int64_t* labels, const float* targets,
                   float* dlogits, void* ws, double* loss, int64_t* check, int64_t rows,
                   int64_t L, Stream stream);

// ---- optimizer updates (optim.cu), in place, elementwise, bit-identical to the NumPy formulas ----
// SGD (fastcnn.optimizers.SGD): buf may be null when momentum == 0.
// skip: null, or a device int: when non-zero at run time the update writes nothing (fit's
// deferred non-finite loss check, fastcnn._deferred).
void sgd_update(float* p, const float* g, float* buf, int64_t n, float lr, float momentum,
                float weight_decay, bool nesterov, bool first_step, Stream stream,
                const int* skip = nullptr);
void adam_update(float* p, const float* g, float* m, float* v, int64_t n, const AdamScalars& s,
                 Stream stream, const int* skip = nullptr);

// ---- normalization family (batch_norm.cu) -------------------------------------------------------
// Bytes of the workspace batch_norm_forward / batch_norm_backward need (8-byte aligned).
int64_t batch_norm_workspace(const BatchNormParams& p);
// The CPU driver's contract (cpu/ops.h batch_norm_forward): x, y (N, C, S); weight, bias,
// running_mean, running_var (C,) or null; writes y, mean, invstd (C,); training updates the
// running statistics in place. Fixed-shape reductions in double: deterministic.
void batch_norm_forward(const float* x, const float* weight, const float* bias,
                        float* running_mean, float* running_var, float* y, float* mean,
                        float* invstd, void* ws, const BatchNormParams& p, Stream stream);
// dx (N, C, S), dweight, dbias (C,), each may be null (cpu/ops.h batch_norm_backward); p.relu
// in the forward and relu_y (or null) here: the fused ReLU, as on the CPU.
void batch_norm_backward(const float* dy, const float* x, const float* weight, const float* mean,
                         const float* invstd, float* dx, float* dweight, float* dbias, void* ws,
                         const BatchNormParams& p, Stream stream, const float* relu_y = nullptr);
// ---- pooling family: avgpool2d.cu, global_pool2d.cu (issue 17) -------------------------------
// avg_pool2d: y (N, C, P, Q); its backward dx (N, C, H, W), a gather (no atomics). The CPU's bits.
void avg_pool2d_forward(const float* x, float* y, const AvgPool2dParams& a, Stream stream);
void avg_pool2d_backward(const float* dy, float* dx, const AvgPool2dParams& a, Stream stream);
// Global pools: y (N, C) (idx (N, C) int64 may be null); backward dx (N, C, H, W).
void global_avg_pool2d_forward(const float* x, float* y, const GlobalPool2dParams& p,
                               Stream stream);
void global_avg_pool2d_backward(const float* dy, float* dx, const GlobalPool2dParams& p,
                                Stream stream);
void global_max_pool2d_forward(const float* x, float* y, int64_t* idx,
                               const GlobalPool2dParams& p, Stream stream);
// check_indices (user-provided indices): ws (kPoolCheckWorkspaceBytes) receives a flag; an index
// outside [0, H*W) throws std::invalid_argument (the CPU's message; one copy and a stream sync).
void global_max_pool2d_backward(const float* dy, const int64_t* idx, float* dx,
                                const GlobalPool2dParams& p, bool check_indices, void* ws,
                                Stream stream);
// ---- activation family (activation.cu; issue 17) -----------------------------------------------
// Elementwise over n floats (any alignment; in place allowed). Backward from t = the forward
// OUTPUT y (sigmoid, tanh) or INPUT x (leaky_relu, gelu, gelu_tanh, silu); negative_slope is
// used by leaky_relu only.
enum class ActOp : int { sigmoid = 0, tanh = 1, leaky_relu = 2, gelu = 3, gelu_tanh = 4, silu = 5 };
void activation_forward(ActOp op, const float* x, float* y, int64_t n, float negative_slope,
                        Stream stream);
void activation_backward(ActOp op, const float* dy, const float* t, float* dx, int64_t n,
                         float negative_slope, Stream stream);

}  // namespace fastcnn::cuda
