// module_cuda.cpp -- fastcnn._cuda: shape checks, GIL release, nothing else.
//
// The raw door to the CUDA kernels. Arrays are passed as device pointers (int, e.g. CuPy's
// `a.data.ptr`) with their shapes (tuples) and the CUDA stream to launch on (int, e.g.
// `cupy.cuda.get_current_stream().ptr`; 0 = the legacy default stream). Buffers must be
// C-contiguous, of the element type the argument names (float32; int64 for class labels and
// pooling indices), and sized as the shapes say: the Python adapter fastcnn._cuda_ops (what
// fastcnn.ops calls for CuPy arrays) checks dtypes, makes inputs contiguous and allocates every
// output and workspace with CuPy, sized by the *_plan functions here.
//
// Every shape and option is validated by the same check_<op>_args functions as the CPU module
// (csrc/common/args.h), so the ValueError messages are the same; the checks run before any launch
// (the *_plan functions run them too, before the adapter allocates). CUDA errors are raised as
// RuntimeError naming the op and the CUDA error (never an exit or abort). Launches run with the
// GIL released. device_count / runtime_version / driver_version / available never raise.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/args.h"
#include "common/check.h"
#include "cuda/launch.h"
#include "bindings/cuda_args.h"

namespace py = pybind11;
using namespace fastcnn;

namespace {

using namespace fastcnn::bind;

// ---- conv2d ------------------------------------------------------------------------------------

Conv2dParams conv_params(const py::handle& x_shape, const py::handle& w_shape,
                         const py::handle& b_shape, int64_t sh, int64_t sw, int64_t pt,
                         int64_t pl, int64_t pb, int64_t pr, int64_t dh, int64_t dw,
                         int64_t groups, const char* op) {
  const Shape xs = shape_of(x_shape, op, "x_shape"), ws = shape_of(w_shape, op, "w_shape");
  const auto bs = shape_opt(b_shape, op, "b_shape");
  return check_conv2d_args(xs, ws, bs ? &*bs : nullptr, sh, sw, pt, pl, pb, pr, dh, dw,
                                groups);
}

py::dict conv2d_plan(py::handle x_shape, py::handle w_shape, py::handle b_shape, int64_t sh,
                     int64_t sw, int64_t pt, int64_t pl, int64_t pb, int64_t pr, int64_t dh,
                     int64_t dw, int64_t groups, py::handle dy_shape) {
  const auto p = conv_params(x_shape, w_shape, b_shape, sh, sw, pt, pl, pb, pr, dh, dw, groups,
                             "conv2d");
  if (!dy_shape.is_none()) check_conv2d_grad(shape_of(dy_shape, "conv2d_backward", "dy_shape"), p);
  py::dict d;
  d["y_shape"] = to_tuple({p.N, p.K, p.P, p.Q});
  d["forward_workspace"] = cuda::conv2d_forward_workspace(p);
  d["backward_data_workspace"] = cuda::conv2d_backward_data_workspace(p);
  d["backward_weights_workspace"] = cuda::conv2d_backward_weights_workspace(p);
  d["backward_bias_workspace"] = cuda::conv2d_backward_bias_workspace(p.N, p.K, p.P * p.Q);
  return d;
}

void conv2d_forward(Ptr x, py::handle x_shape, Ptr w, py::handle w_shape, Ptr b,
                    py::handle b_shape, Ptr y, Ptr ws, int64_t ws_floats, int64_t sh, int64_t sw,
                    int64_t pt, int64_t pl, int64_t pb, int64_t pr, int64_t dh, int64_t dw,
                    int64_t groups, bool relu, Ptr stream) {
  const py::handle bs = b ? b_shape : py::handle(Py_None);
  const auto p = conv_params(x_shape, w_shape, bs, sh, sw, pt, pl, pb, pr, dh, dw, groups,
                             "conv2d");
  check_workspace(ws_floats, cuda::conv2d_forward_workspace(p), "conv2d");
  py::gil_scoped_release nogil;
  cuda::conv2d_forward(dev<const float>(x), dev<const float>(w), dev<const float>(b),
                       dev<float>(y), dev<float>(ws), p, relu, stream_of(stream));
}

// dx, dw, db: 0 to skip that gradient.
void conv2d_backward(Ptr dy, py::handle dy_shape, Ptr x, py::handle x_shape, Ptr w,
                     py::handle w_shape, Ptr dx, Ptr dwt, Ptr db, Ptr ws, int64_t ws_floats,
                     int64_t sh, int64_t sw, int64_t pt, int64_t pl, int64_t pb, int64_t pr,
                     int64_t dh, int64_t dw, int64_t groups, Ptr stream) {
  const char* op = "conv2d_backward";
  const auto p = conv_params(x_shape, w_shape, py::handle(Py_None), sh, sw, pt, pl, pb, pr, dh, dw,
                             groups, op);
  check_conv2d_grad(shape_of(dy_shape, op, "dy_shape"), p);
  // one workspace serves both passes (queued in order on one stream)
  const int64_t need = std::max({dx ? cuda::conv2d_backward_data_workspace(p) : int64_t{0},
                                 dwt ? cuda::conv2d_backward_weights_workspace(p) : int64_t{0},
                                 db ? cuda::conv2d_backward_bias_workspace(p.N, p.K, p.P * p.Q)
                                    : int64_t{0}});
  check_workspace(ws_floats, need, op);
  py::gil_scoped_release nogil;
  const cuda::Stream s = stream_of(stream);
  if (dx)
    cuda::conv2d_backward_data(dev<const float>(dy), dev<const float>(w), dev<float>(dx),
                               dev<float>(ws), p, s);
  if (dwt)
    cuda::conv2d_backward_weights(dev<const float>(dy), dev<const float>(x), dev<float>(dwt),
                                  dev<float>(ws), p, s);
  if (db)
    cuda::conv2d_backward_bias(dev<const float>(dy), dev<float>(db), dev<float>(ws), p.N, p.K,
                               p.P * p.Q, s);
}

// ---- relu --------------------------------------------------------------------------------------

void relu(Ptr x, Ptr y, int64_t n, Ptr stream) {
  FASTCNN_CHECK(n >= 0, "relu: n must be >= 0, got ", n);
  py::gil_scoped_release nogil;
  cuda::relu_forward(dev<const float>(x), dev<float>(y), n, stream_of(stream));
}

void relu_backward(Ptr dy, Ptr y, Ptr dx, int64_t n, Ptr stream) {
  FASTCNN_CHECK(n >= 0, "relu_backward: n must be >= 0, got ", n);
  py::gil_scoped_release nogil;
  cuda::relu_backward(dev<const float>(dy), dev<const float>(y), dev<float>(dx), n,
                      stream_of(stream));
}

// ---- max_pool2d ------------------------------------------------------------------------------

Pool2dParams pool_params(py::handle x_shape, int64_t kh, int64_t kw, int64_t sh, int64_t sw,
                         int64_t ph, int64_t pw, int64_t dh, int64_t dw, bool ceil_mode,
                         const char* op) {
  return check_max_pool2d_args(shape_of(x_shape, op, "x_shape"), kh, kw, sh, sw, ph, pw, dh,
                                    dw, ceil_mode);
}

py::tuple max_pool2d_plan(py::handle x_shape, int64_t kh, int64_t kw, int64_t sh, int64_t sw,
                          int64_t ph, int64_t pw, int64_t dh, int64_t dw, bool ceil_mode,
                          py::handle dy_shape) {
  const auto p = pool_params(x_shape, kh, kw, sh, sw, ph, pw, dh, dw, ceil_mode, "max_pool2d");
  if (!dy_shape.is_none())
    check_max_pool2d_grad(shape_of(dy_shape, "max_pool2d_backward", "dy_shape"), p);
  return to_tuple({p.N, p.C, p.P, p.Q});
}

void max_pool2d_forward(Ptr x, py::handle x_shape, Ptr y, Ptr idx, int64_t kh, int64_t kw,
                        int64_t sh, int64_t sw, int64_t ph, int64_t pw, int64_t dh, int64_t dw,
                        bool ceil_mode, Ptr stream) {
  const auto p = pool_params(x_shape, kh, kw, sh, sw, ph, pw, dh, dw, ceil_mode, "max_pool2d");
  py::gil_scoped_release nogil;
  cuda::max_pool2d_forward(dev<const float>(x), dev<float>(y), dev<int64_t>(idx), p,
                           stream_of(stream));
}

// check_indices: the indices came from the user (validated on the device; ws >= 16 bytes).
void max_pool2d_backward(Ptr dy, py::handle dy_shape, py::handle x_shape, Ptr idx,
                         py::handle idx_shape, bool check_indices, Ptr ws, int64_t ws_bytes,
                         Ptr dx, int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t ph,
                         int64_t pw, int64_t dh, int64_t dw, bool ceil_mode, Ptr stream) {
  const char* op = "max_pool2d_backward";
  const auto p = pool_params(x_shape, kh, kw, sh, sw, ph, pw, dh, dw, ceil_mode, op);
  const Shape dys = shape_of(dy_shape, op, "dy_shape");
  check_max_pool2d_grad(dys, p);
  check_indices_shape(shape_of(idx_shape, op, "indices_shape"), dys, op, "indices");
  if (check_indices) check_workspace(ws_bytes, cuda::kPoolCheckWorkspaceBytes, op);
  py::gil_scoped_release nogil;
  cuda::max_pool2d_backward(dev<const float>(dy), dev<const int64_t>(idx), dev<float>(dx), p,
                            check_indices, dev<void>(ws), stream_of(stream));
}

// ---- linear ------------------------------------------------------------------------------------

LinearParams linear_params(py::handle x_shape, py::handle w_shape, py::handle b_shape,
                                const char* op) {
  const Shape xs = shape_of(x_shape, op, "x_shape"), ws = shape_of(w_shape, op, "w_shape");
  const auto bs = shape_opt(b_shape, op, "b_shape");
  return check_linear_args(xs, ws, bs ? &*bs : nullptr);
}

py::dict linear_plan(py::handle x_shape, py::handle w_shape, py::handle b_shape,
                     py::handle dy_shape) {
  const auto p = linear_params(x_shape, w_shape, b_shape, "linear");
  if (!dy_shape.is_none())
    check_linear_grad(shape_of(dy_shape, "linear_backward", "dy_shape"), p);
  py::dict d;
  d["y_shape"] = to_tuple({p.N, p.out});
  d["forward_workspace"] = cuda::linear_forward_workspace(p.N, p.in, p.out);
  d["backward_data_workspace"] = cuda::linear_backward_data_workspace(p.N, p.in, p.out);
  d["backward_weights_workspace"] = cuda::linear_backward_weights_workspace(p.N, p.in, p.out);
  d["backward_bias_workspace"] = cuda::linear_backward_bias_workspace(p.N, p.out);
  return d;
}

void linear_forward(Ptr x, py::handle x_shape, Ptr w, py::handle w_shape, Ptr b,
                    py::handle b_shape, Ptr y, Ptr ws, int64_t ws_floats, bool relu, Ptr stream) {
  const py::handle bs = b ? b_shape : py::handle(Py_None);
  const auto p = linear_params(x_shape, w_shape, bs, "linear");
  check_workspace(ws_floats, cuda::linear_forward_workspace(p.N, p.in, p.out), "linear");
  py::gil_scoped_release nogil;
  cuda::linear_forward(dev<const float>(x), dev<const float>(w), dev<const float>(b),
                       dev<float>(y), dev<float>(ws), p.N, p.in, p.out, relu, stream_of(stream));
}

void linear_backward(Ptr dy, py::handle dy_shape, Ptr x, py::handle x_shape, Ptr w,
                     py::handle w_shape, Ptr dx, Ptr dwt, Ptr db, Ptr ws, int64_t ws_floats,
                     Ptr stream) {
  const char* op = "linear_backward";
  const auto p = linear_params(x_shape, w_shape, py::handle(Py_None), op);
  check_linear_grad(shape_of(dy_shape, op, "dy_shape"), p);
  // one workspace serves every pass (queued in order on one stream)
  const int64_t need =
      std::max({dx ? cuda::linear_backward_data_workspace(p.N, p.in, p.out) : int64_t{0},
                dwt ? cuda::linear_backward_weights_workspace(p.N, p.in, p.out) : int64_t{0},
                db ? cuda::linear_backward_bias_workspace(p.N, p.out) : int64_t{0}});
  check_workspace(ws_floats, need, op);
  py::gil_scoped_release nogil;
  const cuda::Stream s = stream_of(stream);
  if (dx) cuda::linear_backward_data(dev<const float>(dy), dev<const float>(w), dev<float>(dx),
                                     dev<float>(ws), p.N, p.in, p.out, s);
  if (dwt)
    cuda::linear_backward_weights(dev<const float>(dy), dev<const float>(x), dev<float>(dwt),
                                  dev<float>(ws), p.N, p.in, p.out, s);
  if (db)
    cuda::linear_backward_bias(dev<const float>(dy), dev<float>(db), dev<float>(ws), p.N, p.out, s);
}

// ---- softmax / cross-entropy -------------------------------------------------------------------

// softmax over the last axis (fastcnn.ops moves the requested axis last)
void softmax(Ptr x, py::handle x_shape, Ptr y, bool log, Ptr stream) {
  const char* op = log ? "log_softmax" : "softmax";
  const RowsParams r = check_softmax_args(shape_of(x_shape, op, "x_shape"), log);
  py::gil_scoped_release nogil;
  cuda::softmax_forward(dev<const float>(x), dev<float>(y), r.rows, r.L, log, stream_of(stream));
}

// labels_kind: "int" (class ids, int64 on the device) or "float" (float32 probabilities).
// Returns the workspace size in bytes.
int64_t cross_entropy_plan(py::handle logits_shape, py::handle labels_shape,
                           const std::string& labels_kind) {
  const char* op = "cross_entropy";
  const Shape ls = shape_of(logits_shape, op, "logits_shape");
  const RowsParams r = check_cross_entropy_logits(ls);
  const Shape t = shape_of(labels_shape, op, "labels_shape");
  FASTCNN_CHECK(labels_kind == "int" || labels_kind == "float", op,
                ": labels_kind must be 'int' or 'float', got '", labels_kind, "'");
  check_cross_entropy_labels(t, ls, labels_kind == "int");
  return cuda::cross_entropy_workspace_bytes(r.rows);
}

// labels (int64) or targets (float32): exactly one is non-zero (either may be 0 when N == 0).
// loss: a device double; check: 2 device int64 (labels only; see launch.h). Queues, no sync.
void cross_entropy(Ptr logits, py::handle logits_shape, Ptr labels, Ptr targets,
                   py::handle labels_shape, Ptr dlogits, Ptr ws, int64_t ws_bytes, Ptr loss,
                   Ptr check, Ptr stream) {
  const char* op = "cross_entropy";
  FASTCNN_CHECK(!(labels && targets), op, ": pass labels or targets, not both");
  const int64_t need = cross_entropy_plan(logits_shape, labels_shape, targets ? "float" : "int");
  const Shape ls = shape_of(logits_shape, op, "logits_shape");
  const int64_t N = ls[0], L = ls[1];
  if (N == 0) return;
  FASTCNN_CHECK(labels || targets, op, ": pass labels or targets");
  FASTCNN_CHECK(loss != 0, op, ": loss must be a device pointer to one double");
  FASTCNN_CHECK(!labels || check != 0, op, ": labels need a check record (2 int64)");
  check_workspace(ws_bytes, need, op);
  py::gil_scoped_release nogil;
  cuda::cross_entropy(dev<const float>(logits), dev<const int64_t>(labels),
                      dev<const float>(targets), dev<float>(dlogits), dev<void>(ws),
                      dev<double>(loss), dev<int64_t>(check), N, L, stream_of(stream));
}

// ---- optimizers --------------------------------------------------------------------------------

// skip: 0, or a device int32 that makes the update a no-op when non-zero (see launch.h).
void sgd_update(Ptr p, Ptr g, Ptr buf, int64_t n, float lr, float momentum, float weight_decay,
                bool nesterov, bool first_step, Ptr stream, Ptr skip) {
  FASTCNN_CHECK(n >= 0, "sgd_update: n must be >= 0, got ", n);
  FASTCNN_CHECK(momentum == 0.0f || buf != 0, "sgd_update: momentum needs a buffer");
  py::gil_scoped_release nogil;
  cuda::sgd_update(dev<float>(p), dev<const float>(g), dev<float>(buf), n, lr, momentum,
                   weight_decay, nesterov, first_step, stream_of(stream), dev<const int>(skip));
}

void adam_update(Ptr p, Ptr g, Ptr m, Ptr v, int64_t n, float step_size, float beta1,
                 float one_minus_beta1, float beta2, float one_minus_beta2, float sqrt_bc2,
                 float eps, float l2, float decay, bool has_l2, bool has_decay, Ptr stream,
                 Ptr skip) {
  FASTCNN_CHECK(n >= 0, "adam_update: n must be >= 0, got ", n);
  AdamScalars s{step_size, beta1, one_minus_beta1, beta2, one_minus_beta2, sqrt_bc2,
                eps,       l2,    decay,           has_l2, has_decay};
  py::gil_scoped_release nogil;
  cuda::adam_update(dev<float>(p), dev<const float>(g), dev<float>(m), dev<float>(v), n, s,
                    stream_of(stream), dev<const int>(skip));
}

}  // namespace

PYBIND11_MODULE(_cuda, m) {
  m.doc() = "fastcnn's CUDA kernels (raw pointers + shapes + stream; use fastcnn.ops with CuPy)";
  m.attr("__version__") = FASTCNN_VERSION;
  m.attr("cuda_archs") = FASTCNN_CUDA_ARCHS;  // e.g. "sm_75 sm_90 compute_90" (CMakeLists.txt)

  m.def("device_count", [] { return cuda::device_count(); },
        "Number of CUDA devices; 0 without a driver or a GPU (never raises).");
  m.def("runtime_version", [] { return cuda::runtime_version(); },
        "Version of the CUDA runtime this module was built with (e.g. 13000).");
  m.def("driver_version", [] { return cuda::driver_version(); },
        "Version the installed driver supports; 0 without a driver (never raises).");
  m.def("available", [] { return cuda::device_count() > 0; },
        "True when a CUDA device can be used (never raises).");

  m.def("conv2d_plan", &conv2d_plan, py::arg("x_shape"), py::arg("w_shape"), py::arg("b_shape"),
        py::arg("stride_h"), py::arg("stride_w"), py::arg("pad_top"), py::arg("pad_left"),
        py::arg("pad_bottom"), py::arg("pad_right"), py::arg("dil_h"), py::arg("dil_w"),
        py::arg("groups"), py::arg("dy_shape") = py::none(),
        "Validate a conv2d; dict with y_shape and the workspace sizes (floats) of the forward, "
        "backward-data and backward-weights passes (conv2d_backward takes the larger of the "
        "last two it runs).");
  m.def("conv2d_forward", &conv2d_forward, py::arg("x"), py::arg("x_shape"), py::arg("w"),
        py::arg("w_shape"), py::arg("b"), py::arg("b_shape"), py::arg("y"), py::arg("ws"),
        py::arg("ws_floats"), py::arg("stride_h"), py::arg("stride_w"), py::arg("pad_top"),
        py::arg("pad_left"), py::arg("pad_bottom"), py::arg("pad_right"), py::arg("dil_h"),
        py::arg("dil_w"), py::arg("groups"), py::arg("relu"), py::arg("stream"));
  m.def("conv2d_backward", &conv2d_backward, py::arg("dy"), py::arg("dy_shape"), py::arg("x"),
        py::arg("x_shape"), py::arg("w"), py::arg("w_shape"), py::arg("dx"), py::arg("dw"),
        py::arg("db"), py::arg("ws"), py::arg("ws_floats"), py::arg("stride_h"),
        py::arg("stride_w"), py::arg("pad_top"), py::arg("pad_left"), py::arg("pad_bottom"),
        py::arg("pad_right"), py::arg("dil_h"), py::arg("dil_w"), py::arg("groups"),
        py::arg("stream"));
  m.def("relu", &relu, py::arg("x"), py::arg("y"), py::arg("n"), py::arg("stream"));
  m.def("relu_backward", &relu_backward, py::arg("dy"), py::arg("y"), py::arg("dx"), py::arg("n"),
        py::arg("stream"));
  m.def("max_pool2d_plan", &max_pool2d_plan, py::arg("x_shape"), py::arg("kh"), py::arg("kw"),
        py::arg("sh"), py::arg("sw"), py::arg("ph"), py::arg("pw"), py::arg("dh"), py::arg("dw"),
        py::arg("ceil_mode"), py::arg("dy_shape") = py::none(),
        "Validate a max_pool2d; the output shape.");
  m.def("max_pool2d_forward", &max_pool2d_forward, py::arg("x"), py::arg("x_shape"), py::arg("y"),
        py::arg("indices"), py::arg("kh"), py::arg("kw"), py::arg("sh"), py::arg("sw"),
        py::arg("ph"), py::arg("pw"), py::arg("dh"), py::arg("dw"), py::arg("ceil_mode"),
        py::arg("stream"));
  m.def("max_pool2d_backward", &max_pool2d_backward, py::arg("dy"), py::arg("dy_shape"),
        py::arg("x_shape"), py::arg("indices"), py::arg("indices_shape"),
        py::arg("check_indices"), py::arg("ws"), py::arg("ws_bytes"), py::arg("dx"),
        py::arg("kh"), py::arg("kw"), py::arg("sh"), py::arg("sw"), py::arg("ph"), py::arg("pw"),
        py::arg("dh"), py::arg("dw"), py::arg("ceil_mode"), py::arg("stream"));
  m.attr("POOL_CHECK_WORKSPACE_BYTES") = cuda::kPoolCheckWorkspaceBytes;
  m.attr("COL_BUDGET_FLOATS") = cuda::kColBudget;  // backward-data's column buffer, at most
  m.def("linear_plan", &linear_plan, py::arg("x_shape"), py::arg("w_shape"), py::arg("b_shape"),
        py::arg("dy_shape") = py::none(),
        "Validate a linear; dict with y_shape and the workspace sizes (floats; linear_backward "
        "takes the largest of those it runs).");
  m.def("linear_forward", &linear_forward, py::arg("x"), py::arg("x_shape"), py::arg("w"),
        py::arg("w_shape"), py::arg("b"), py::arg("b_shape"), py::arg("y"), py::arg("ws"),
        py::arg("ws_floats"), py::arg("relu"), py::arg("stream"));
  m.def("linear_backward", &linear_backward, py::arg("dy"), py::arg("dy_shape"), py::arg("x"),
        py::arg("x_shape"), py::arg("w"), py::arg("w_shape"), py::arg("dx"), py::arg("dw"),
        py::arg("db"), py::arg("ws"), py::arg("ws_floats"), py::arg("stream"));
  m.def("softmax", &softmax, py::arg("x"), py::arg("x_shape"), py::arg("y"), py::arg("log"),
        py::arg("stream"));
  m.def("cross_entropy_plan", &cross_entropy_plan, py::arg("logits_shape"),
        py::arg("labels_shape"), py::arg("labels_kind"),
        "Validate a cross_entropy; the workspace size in bytes.");
  m.def("cross_entropy", &cross_entropy, py::arg("logits"), py::arg("logits_shape"),
        py::arg("labels"), py::arg("targets"), py::arg("labels_shape"), py::arg("dlogits"),
        py::arg("ws"), py::arg("ws_bytes"), py::arg("loss"), py::arg("check"),
        py::arg("stream"),
        "Mean loss into the device double at `loss`; with labels, `check` (2 device int64) "
        "receives {first bad row or -1, its label} (the loss is then NaN). Queues only: no "
        "copy to the host, no synchronisation.");
  m.def("sgd_update", &sgd_update, py::arg("p"), py::arg("g"), py::arg("buf"), py::arg("n"),
        py::arg("lr"), py::arg("momentum"), py::arg("weight_decay"), py::arg("nesterov"),
        py::arg("first_step"), py::arg("stream"), py::arg("skip") = 0);
  m.def("adam_update", &adam_update, py::arg("p"), py::arg("g"), py::arg("m"), py::arg("v"),
        py::arg("n"), py::arg("step_size"), py::arg("beta1"), py::arg("one_minus_beta1"),
        py::arg("beta2"), py::arg("one_minus_beta2"), py::arg("sqrt_bc2"), py::arg("eps"),
        py::arg("l2"), py::arg("decay"), py::arg("has_l2"), py::arg("has_decay"),
        py::arg("stream"), py::arg("skip") = 0);
  fastcnn::bind::bind_normalization(m);  // normalization family (cuda_normalization.cpp)
  bind_pooling(m);  // cuda_pooling.cpp (issue 17)
  fastcnn::bind::bind_activation(m);  // sigmoid, tanh, leaky_relu, gelu, silu (issue 17)
  fastcnn::bind::bind_plans(m);  // launch plans by raw pointers (cuda_plans.cpp, issue 14)
}
