// cuda_plans.cpp -- fastcnn._cuda's launch plans: one validated problem per object, launched by
// raw integers (issue 14, item 6: the host cost per op call).
//
// A plan is built once per (shapes, options) by the Python adapter fastcnn._cuda_ops (which
// caches it, keyed by every shape and option it was built from) with the same arguments as the
// matching *_plan function and the same check_<op>_args validation (csrc/common/args.h), so a
// bad call raises the same ValueError at the same point. Its launch methods then take only
// device pointers, the workspace size the caller allocated (checked against the plan's) and the
// stream: no shape tuple is converted and nothing is re-validated per call. The one-off
// functions (conv2d_forward, ...) in module_cuda.cpp stay the raw door for other callers.
//
// Cost (napkin maths, the emulator with its kernels off): pybind11 converts an int argument in
// ~30 ns and a shape tuple into a Shape in ~300 ns; conv2d_forward's 20 arguments and 3 shapes
// plus its re-validation are most of its ~4 us, a plan's forward (8 ints) well under 1 us.
#include <pybind11/pybind11.h>

#include <algorithm>
#include <optional>
#include <string>
#include <vector>

#include "bindings/cuda_args.h"
#include "cuda/gemm_rule.h"

namespace fastcnn::bind {
namespace {

const Shape* opt_ptr(const std::optional<Shape>& s) { return s ? &*s : nullptr; }

void check_ws(int64_t have, int64_t need, const char* op, const char* unit) {
  FASTCNN_CHECK(have >= need, op, ": workspace of ", have, " ", unit, " is smaller than the ",
                need, " this problem needs (size it with the plan's workspace size)");
}

// The tile report: the GEMMs of one pass ("forward", "backward_data", "backward_weights") with
// the rule's choice on a GPU of `sms` SMs (gemm_rule.h: the functions the launchers use).
cuda::gemm::Pass pass_of(const std::string& name, const char* op) {
  if (name == "forward") return cuda::gemm::Pass::forward;
  if (name == "backward_data") return cuda::gemm::Pass::data;
  if (name == "backward_weights") return cuda::gemm::Pass::weights;
  throw py::value_error(cat(op, ": pass_ must be 'forward', 'backward_data' or "
                            "'backward_weights', got '", name, "'"));
}

py::list gemm_rows(const std::vector<cuda::gemm::GemmLaunch>& launches, int64_t sms,
                   const char* op) {
  FASTCNN_CHECK(sms >= 1 && sms <= (int64_t{1} << 20), op,
                ": sms must be a multiprocessor count >= 1, got ", sms);
  py::list rows;
  for (const auto& g : launches) {
    const cuda::gemm::GemmChoice c = cuda::gemm::choose(g, static_cast<int>(sms));
    const cuda::gemm::TileDims d = cuda::gemm::tile_dims(c.tile);
    py::dict r;
    r["what"] = g.what, r["count"] = g.count, r["G"] = g.G, r["M"] = g.M, r["N"] = g.N;
    r["K"] = g.K, r["splits"] = g.split.splits, r["chunk"] = g.split.chunk;
    r["tile"] = cuda::gemm::tile_name(c.tile), r["bm"] = d.bm, r["bn"] = d.bn;
    r["blocks"] = c.blocks, r["blocks_per_sm"] = cuda::gemm::kBlocksPerSm, r["sms"] = sms;
    rows.append(r);
  }
  return rows;
}

void check_grad_plan(bool has_grad, const char* op) {
  FASTCNN_CHECK(has_grad, op, ": this plan was built without dy_shape; build one with it to "
                "launch the backward pass");
}

// ---- conv2d ------------------------------------------------------------------------------------

struct Conv2dPlan {
  Conv2dParams p;
  bool has_bias = false, has_grad = false;
  int64_t fwd_ws = 0, data_ws = 0, weights_ws = 0, bias_ws = 0;

  Conv2dPlan(py::handle x_shape, py::handle w_shape, py::handle b_shape, int64_t sh, int64_t sw,
             int64_t pt, int64_t pl, int64_t pb, int64_t pr, int64_t dh, int64_t dw,
             int64_t groups, py::handle dy_shape) {
    const char* op = "conv2d";
    const Shape xs = shape_of(x_shape, op, "x_shape"), ws = shape_of(w_shape, op, "w_shape");
    const auto bs = shape_opt(b_shape, op, "b_shape");
    p = check_conv2d_args(xs, ws, opt_ptr(bs), sh, sw, pt, pl, pb, pr, dh, dw, groups);
    has_bias = bs.has_value();
    if (!dy_shape.is_none()) {
      check_conv2d_grad(shape_of(dy_shape, "conv2d_backward", "dy_shape"), p);
      has_grad = true;
    }
    fwd_ws = cuda::conv2d_forward_workspace(p);
    data_ws = cuda::conv2d_backward_data_workspace(p);
    weights_ws = cuda::conv2d_backward_weights_workspace(p);
    bias_ws = cuda::conv2d_backward_bias_workspace(p.N, p.K, p.P * p.Q);
  }

  void forward(Ptr x, Ptr w, Ptr b, Ptr y, Ptr ws, int64_t ws_floats, bool relu,
               Ptr stream) const {
    FASTCNN_CHECK(!b || has_bias, "conv2d: a bias pointer given to a plan built without b_shape");
    check_ws(ws_floats, fwd_ws, "conv2d", "elements");
    py::gil_scoped_release nogil;
    cuda::conv2d_forward(dev<const float>(x), dev<const float>(w), dev<const float>(b),
                         dev<float>(y), dev<float>(ws), p, relu, stream_of(stream));
  }

  py::list gemms(const std::string& pass, int64_t sms) const {
    return gemm_rows(cuda::gemm::conv2d_gemms(p, pass_of(pass, "conv2d")), sms, "conv2d");
  }

  // dx, dwt, db: 0 to skip that gradient (module_cuda.cpp's conv2d_backward, same order)
  void backward(Ptr dy, Ptr x, Ptr w, Ptr dx, Ptr dwt, Ptr db, Ptr ws, int64_t ws_floats,
                Ptr stream) const {
    const char* op = "conv2d_backward";
    check_grad_plan(has_grad, op);
    check_ws(ws_floats,
             std::max({dx ? data_ws : int64_t{0}, dwt ? weights_ws : int64_t{0},
                       db ? bias_ws : int64_t{0}}),
             op, "elements");
    py::gil_scoped_release nogil;
    const cuda::Stream s = stream_of(stream);
    if (dx)
      cuda::conv2d_backward_data(dev<const float>(dy), dev<const float>(w), dev<float>(dx),
                                 dev<float>(ws), p, s);
    if (dwt)
      cuda::conv2d_backward_weights(dev<const float>(dy), dev<const float>(x), dev<float>(dwt),
                                    dev<float>(ws), p, s);
    if (db)  // the workspace's partials, after dx / dw in stream order (reduce.cu)
      cuda::conv2d_backward_bias(dev<const float>(dy), dev<float>(db), dev<float>(ws), p.N, p.K,
                                 p.P * p.Q, s);
  }
};

// ---- conv2d backward through a max pooling and a ReLU, in one call ------------------------------
// The training step of Conv2D(relu) + MaxPool2D: dy is the *pooled* gradient (N, K, P', Q'),
// the indices are fastcnn's own (max_pool2d_forward's: the trusted gather, no check kernel, no
// copy, no sync). One call queues, on one stream, in order: the pooling's backward into g, the
// conv output's gradient (N, K, P, Q) at the head of the workspace; the ReLU's backward on g
// in place (relu_y given); then the conv passes on g with the rest of the workspace. One
// validation when the plan is built (the shapes of every argument), pointers only per call.
// Workspace (floats): g_floats (N*K*P*Q rounded up to 64: 256-byte aligned) + the largest
// workspace of the passes run (as Conv2dPlan.backward's).
struct Conv2dPooledBackwardPlan {
  Conv2dParams p;
  Pool2dParams q;
  bool relu = false;
  int64_t g_floats = 0, data_ws = 0, weights_ws = 0, bias_ws = 0;

  Conv2dPooledBackwardPlan(py::handle x_shape, py::handle w_shape, int64_t sh, int64_t sw,
                           int64_t pt, int64_t pl, int64_t pb, int64_t pr, int64_t dh,
                           int64_t dw, int64_t groups, py::handle dy_shape,
                           py::handle indices_shape, int64_t kh, int64_t kw, int64_t psh,
                           int64_t psw, int64_t pph, int64_t ppw, bool ceil_mode,
                           py::handle relu_y_shape) {
    const char* op = "conv2d_backward";
    const Shape xs = shape_of(x_shape, op, "x_shape"), ws = shape_of(w_shape, op, "w_shape");
    p = check_conv2d_args(xs, ws, nullptr, sh, sw, pt, pl, pb, pr, dh, dw, groups);
    const Shape dys = shape_of(dy_shape, op, "dy_shape");
    q = check_conv2d_pooled_grad(dys, p, kh, kw, psh, psw, pph, ppw, ceil_mode);
    check_indices_shape(shape_of(indices_shape, op, "indices_shape"), dys, op, "pool_indices");
    if (const auto rs = shape_opt(relu_y_shape, op, "relu_y_shape")) {
      const Shape ys{p.N, p.K, p.P, p.Q};
      FASTCNN_CHECK(*rs == ys, op, ": relu_y has shape ", shape_str(*rs),
                    " but the convolution's output has shape ", shape_str(ys),
                    ": pass the forward conv2d(..., relu=True)'s output");
      relu = true;
    }
    g_floats = (p.N * p.K * p.P * p.Q + 63) / 64 * 64;
    data_ws = cuda::conv2d_backward_data_workspace(p);
    weights_ws = cuda::conv2d_backward_weights_workspace(p);
    bias_ws = cuda::conv2d_backward_bias_workspace(p.N, p.K, p.P * p.Q);
  }

  void backward(Ptr dy, Ptr idx, Ptr relu_y, Ptr x, Ptr w, Ptr dx, Ptr dwt, Ptr db, Ptr ws,
                int64_t ws_floats, Ptr stream) const {
    const char* op = "conv2d_backward";
    FASTCNN_CHECK(!relu || relu_y, op, ": this plan was built with relu_y_shape: pass relu_y");
    FASTCNN_CHECK(relu || !relu_y, op,
                  ": a relu_y pointer given to a plan built without relu_y_shape");
    check_ws(ws_floats,
             g_floats + std::max({dx ? data_ws : int64_t{0}, dwt ? weights_ws : int64_t{0},
                                  db ? bias_ws : int64_t{0}}),
             op, "elements");
    py::gil_scoped_release nogil;
    const cuda::Stream s = stream_of(stream);
    float* g = dev<float>(ws);
    float* rest = g + g_floats;
    cuda::max_pool2d_backward(dev<const float>(dy), dev<const int64_t>(idx), g, q, false,
                              nullptr, s);
    if (relu) cuda::relu_backward(g, dev<const float>(relu_y), g, p.N * p.K * p.P * p.Q, s);
    if (dx) cuda::conv2d_backward_data(g, dev<const float>(w), dev<float>(dx), rest, p, s);
    if (dwt)
      cuda::conv2d_backward_weights(g, dev<const float>(x), dev<float>(dwt), rest, p, s);
    if (db) cuda::conv2d_backward_bias(g, dev<float>(db), rest, p.N, p.K, p.P * p.Q, s);
  }
};

// ---- linear ------------------------------------------------------------------------------------

struct LinearPlan {
  LinearParams p;
  bool has_bias = false, has_grad = false;
  int64_t fwd_ws = 0, data_ws = 0, weights_ws = 0, bias_ws = 0;

  LinearPlan(py::handle x_shape, py::handle w_shape, py::handle b_shape, py::handle dy_shape) {
    const char* op = "linear";
    const Shape xs = shape_of(x_shape, op, "x_shape"), ws = shape_of(w_shape, op, "w_shape");
    const auto bs = shape_opt(b_shape, op, "b_shape");
    p = check_linear_args(xs, ws, opt_ptr(bs));
    has_bias = bs.has_value();
    if (!dy_shape.is_none()) {
      check_linear_grad(shape_of(dy_shape, "linear_backward", "dy_shape"), p);
      has_grad = true;
    }
    fwd_ws = cuda::linear_forward_workspace(p.N, p.in, p.out);
    data_ws = cuda::linear_backward_data_workspace(p.N, p.in, p.out);
    weights_ws = cuda::linear_backward_weights_workspace(p.N, p.in, p.out);
    bias_ws = cuda::linear_backward_bias_workspace(p.N, p.out);
  }

  py::list gemms(const std::string& pass, int64_t sms) const {
    return gemm_rows(cuda::gemm::linear_gemms(p.N, p.in, p.out, pass_of(pass, "linear")), sms,
                     "linear");
  }

  void forward(Ptr x, Ptr w, Ptr b, Ptr y, Ptr ws, int64_t ws_floats, bool relu,
               Ptr stream) const {
    FASTCNN_CHECK(!b || has_bias, "linear: a bias pointer given to a plan built without b_shape");
    check_ws(ws_floats, fwd_ws, "linear", "elements");
    py::gil_scoped_release nogil;
    cuda::linear_forward(dev<const float>(x), dev<const float>(w), dev<const float>(b),
                         dev<float>(y), dev<float>(ws), p.N, p.in, p.out, relu, stream_of(stream));
  }

  void backward(Ptr dy, Ptr x, Ptr w, Ptr dx, Ptr dwt, Ptr db, Ptr ws, int64_t ws_floats,
                Ptr stream) const {
    const char* op = "linear_backward";
    check_grad_plan(has_grad, op);
    check_ws(ws_floats,
             std::max({dx ? data_ws : int64_t{0}, dwt ? weights_ws : int64_t{0},
                       db ? bias_ws : int64_t{0}}),
             op, "elements");
    py::gil_scoped_release nogil;
    const cuda::Stream s = stream_of(stream);
    if (dx)
      cuda::linear_backward_data(dev<const float>(dy), dev<const float>(w), dev<float>(dx),
                                 dev<float>(ws), p.N, p.in, p.out, s);
    if (dwt)
      cuda::linear_backward_weights(dev<const float>(dy), dev<const float>(x), dev<float>(dwt),
                                    dev<float>(ws), p.N, p.in, p.out, s);
    if (db)
      cuda::linear_backward_bias(dev<const float>(dy), dev<float>(db), dev<float>(ws), p.N,
                                 p.out, s);
  }
};

// ---- max_pool2d --------------------------------------------------------------------------------

struct MaxPool2dPlan {
  Pool2dParams p;
  bool has_grad = false;

  // dy_shape and indices_shape: both or neither (the backward's shapes)
  MaxPool2dPlan(py::handle x_shape, int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t ph,
                int64_t pw, int64_t dh, int64_t dw, bool ceil_mode, py::handle dy_shape,
                py::handle indices_shape) {
    p = check_max_pool2d_args(shape_of(x_shape, "max_pool2d", "x_shape"), kh, kw, sh, sw, ph,
                              pw, dh, dw, ceil_mode);
    if (!dy_shape.is_none()) {
      const char* op = "max_pool2d_backward";
      const Shape dys = shape_of(dy_shape, op, "dy_shape");
      check_max_pool2d_grad(dys, p);
      check_indices_shape(shape_of(indices_shape, op, "indices_shape"), dys, op, "indices");
      has_grad = true;
    }
  }

  void forward(Ptr x, Ptr y, Ptr idx, Ptr stream) const {
    py::gil_scoped_release nogil;
    cuda::max_pool2d_forward(dev<const float>(x), dev<float>(y), dev<int64_t>(idx), p,
                             stream_of(stream));
  }

  // check_indices: the indices came from the user (validated on the device; ws >= 16 bytes)
  void backward(Ptr dy, Ptr idx, bool check_indices, Ptr ws, int64_t ws_bytes, Ptr dx,
                Ptr stream) const {
    const char* op = "max_pool2d_backward";
    check_grad_plan(has_grad, op);
    if (check_indices) check_ws(ws_bytes, cuda::kPoolCheckWorkspaceBytes, op, "bytes");
    py::gil_scoped_release nogil;
    cuda::max_pool2d_backward(dev<const float>(dy), dev<const int64_t>(idx), dev<float>(dx), p,
                              check_indices, dev<void>(ws), stream_of(stream));
  }
};

// ---- batch_norm --------------------------------------------------------------------------------

struct BatchNormPlan {
  BatchNormParams p;
  int64_t ws_bytes = 0;

  BatchNormPlan(py::handle x_shape, py::handle weight_shape, py::handle bias_shape,
                py::handle running_mean_shape, py::handle running_var_shape, bool training,
                double momentum, double eps) {
    const char* op = "batch_norm";
    const auto ws = shape_opt(weight_shape, op, "weight_shape");
    const auto bs = shape_opt(bias_shape, op, "bias_shape");
    const auto ms = shape_opt(running_mean_shape, op, "running_mean_shape");
    const auto vs = shape_opt(running_var_shape, op, "running_var_shape");
    p = check_batch_norm_args(shape_of(x_shape, op, "x_shape"), opt_ptr(ws), opt_ptr(bs),
                              opt_ptr(ms), opt_ptr(vs), training, momentum, eps);
    ws_bytes = cuda::batch_norm_workspace(p);
  }

  void forward(Ptr x, Ptr weight, Ptr bias, Ptr running_mean, Ptr running_var, Ptr y, Ptr mean,
               Ptr invstd, Ptr ws, int64_t have, bool relu, Ptr stream) const {
    BatchNormParams q = p;
    q.relu = relu;  // the workspace does not depend on it (batch_norm.cu)
    check_ws(have, ws_bytes, "batch_norm", "bytes");
    py::gil_scoped_release nogil;
    cuda::batch_norm_forward(dev<const float>(x), dev<const float>(weight),
                             dev<const float>(bias), dev<float>(running_mean),
                             dev<float>(running_var), dev<float>(y), dev<float>(mean),
                             dev<float>(invstd), dev<void>(ws), q, stream_of(stream));
  }
};

struct BatchNormBackwardPlan {
  BatchNormParams p;
  bool has_relu_y = false;
  int64_t ws_bytes = 0;

  BatchNormBackwardPlan(py::handle dy_shape, py::handle x_shape, py::handle weight_shape,
                        py::handle mean_shape, py::handle invstd_shape, bool training,
                        py::handle relu_y_shape) {
    const char* op = "batch_norm_backward";
    const auto ws = shape_opt(weight_shape, op, "weight_shape");
    const Shape xs = shape_of(x_shape, op, "x_shape");
    p = check_batch_norm_backward_args(shape_of(dy_shape, op, "dy_shape"), xs, opt_ptr(ws),
                                       shape_of(mean_shape, op, "mean_shape"),
                                       shape_of(invstd_shape, op, "invstd_shape"), training);
    if (const auto rs = shape_opt(relu_y_shape, op, "relu_y_shape")) {
      FASTCNN_CHECK(*rs == xs, op, ": relu_y has shape ", shape_str(*rs), " but x has shape ",
                    shape_str(xs), ": expected the same shape");
      has_relu_y = true;
    }
    ws_bytes = cuda::batch_norm_workspace(p);
  }

  void backward(Ptr dy, Ptr x, Ptr weight, Ptr mean, Ptr invstd, Ptr relu_y, Ptr dx,
                Ptr dweight, Ptr dbias, Ptr ws, int64_t have, Ptr stream) const {
    const char* op = "batch_norm_backward";
    FASTCNN_CHECK(!relu_y || has_relu_y, op,
                  ": a relu_y pointer given to a plan built without relu_y_shape");
    check_ws(have, ws_bytes, op, "bytes");
    py::gil_scoped_release nogil;
    cuda::batch_norm_backward(dev<const float>(dy), dev<const float>(x),
                              dev<const float>(weight), dev<const float>(mean),
                              dev<const float>(invstd), dev<float>(dx), dev<float>(dweight),
                              dev<float>(dbias), dev<void>(ws), p, stream_of(stream),
                              dev<const float>(relu_y));
  }
};

// ---- softmax / cross-entropy -------------------------------------------------------------------

struct SoftmaxPlan {
  RowsParams r;
  bool log = false;

  SoftmaxPlan(py::handle x_shape, bool log_) : log(log_) {
    const char* op = log ? "log_softmax" : "softmax";
    r = check_softmax_args(shape_of(x_shape, op, "x_shape"), log);
  }

  void forward(Ptr x, Ptr y, Ptr stream) const {
    py::gil_scoped_release nogil;
    cuda::softmax_forward(dev<const float>(x), dev<float>(y), r.rows, r.L, log,
                          stream_of(stream));
  }
};

struct CrossEntropyPlan {
  int64_t N = 0, L = 0, ws_bytes = 0;
  bool class_ids = true;

  CrossEntropyPlan(py::handle logits_shape, py::handle labels_shape,
                   const std::string& labels_kind) {
    const char* op = "cross_entropy";
    const Shape ls = shape_of(logits_shape, op, "logits_shape");
    const RowsParams r = check_cross_entropy_logits(ls);
    const Shape t = shape_of(labels_shape, op, "labels_shape");
    FASTCNN_CHECK(labels_kind == "int" || labels_kind == "float", op,
                  ": labels_kind must be 'int' or 'float', got '", labels_kind, "'");
    class_ids = labels_kind == "int";
    check_cross_entropy_labels(t, ls, class_ids);
    N = ls[0];
    L = ls[1];
    ws_bytes = cuda::cross_entropy_workspace_bytes(r.rows);
  }

  // labels (int64, class_ids plans) or targets (float32): module_cuda.cpp's cross_entropy
  void run(Ptr logits, Ptr labels, Ptr targets, Ptr dlogits, Ptr ws, int64_t have, Ptr loss,
           Ptr check, Ptr stream) const {
    const char* op = "cross_entropy";
    FASTCNN_CHECK(!(labels && targets), op, ": pass labels or targets, not both");
    FASTCNN_CHECK(!labels || class_ids, op, ": labels given to a plan for float targets");
    FASTCNN_CHECK(!targets || !class_ids, op, ": targets given to a plan for class ids");
    if (N == 0) return;
    FASTCNN_CHECK(labels || targets, op, ": pass labels or targets");
    FASTCNN_CHECK(loss != 0, op, ": loss must be a device pointer to one double");
    FASTCNN_CHECK(!labels || check != 0, op, ": labels need a check record (2 int64)");
    check_ws(have, ws_bytes, op, "bytes");
    py::gil_scoped_release nogil;
    cuda::cross_entropy(dev<const float>(logits), dev<const int64_t>(labels),
                        dev<const float>(targets), dev<float>(dlogits), dev<void>(ws),
                        dev<double>(loss), dev<int64_t>(check), N, L, stream_of(stream));
  }
};

}  // namespace

void bind_plans(py::module_& m) {
  const auto none = py::none();
  py::class_<Conv2dPlan>(m, "Conv2dPlan",
                         "A validated conv2d (conv2d_plan's arguments and checks); forward / "
                         "backward launch it with device pointers.")
      .def(py::init<py::handle, py::handle, py::handle, int64_t, int64_t, int64_t, int64_t,
                    int64_t, int64_t, int64_t, int64_t, int64_t, py::handle>(),
           py::arg("x_shape"), py::arg("w_shape"), py::arg("b_shape"), py::arg("stride_h"),
           py::arg("stride_w"), py::arg("pad_top"), py::arg("pad_left"), py::arg("pad_bottom"),
           py::arg("pad_right"), py::arg("dil_h"), py::arg("dil_w"), py::arg("groups"),
           py::arg("dy_shape") = none)
      .def_property_readonly("y_shape", [](const Conv2dPlan& q) {
        return to_tuple({q.p.N, q.p.K, q.p.P, q.p.Q});
      })
      .def_readonly("forward_workspace", &Conv2dPlan::fwd_ws)
      .def_readonly("backward_data_workspace", &Conv2dPlan::data_ws)
      .def_readonly("backward_weights_workspace", &Conv2dPlan::weights_ws)
      .def_readonly("backward_bias_workspace", &Conv2dPlan::bias_ws)
      .def("gemms", &Conv2dPlan::gemms, py::arg("pass_"), py::arg("sms") = 132,
           "The GEMMs a pass ('forward', 'backward_data', 'backward_weights') launches and the "
           "tile rule's choice on a GPU of sms multiprocessors (a list of dicts; no launch).")
      .def("forward", &Conv2dPlan::forward, py::arg("x"), py::arg("w"), py::arg("b"),
           py::arg("y"), py::arg("ws"), py::arg("ws_floats"), py::arg("relu"), py::arg("stream"))
      .def("backward", &Conv2dPlan::backward, py::arg("dy"), py::arg("x"), py::arg("w"),
           py::arg("dx"), py::arg("dw"), py::arg("db"), py::arg("ws"), py::arg("ws_floats"),
           py::arg("stream"));
  py::class_<Conv2dPooledBackwardPlan>(
      m, "Conv2dPooledBackwardPlan",
      "A validated conv2d_backward through a max pooling (fastcnn's own indices) and "
      "optionally a ReLU: backward launches all of it in one call.")
      .def(py::init<py::handle, py::handle, int64_t, int64_t, int64_t, int64_t, int64_t,
                    int64_t, int64_t, int64_t, int64_t, py::handle, py::handle, int64_t,
                    int64_t, int64_t, int64_t, int64_t, int64_t, bool, py::handle>(),
           py::arg("x_shape"), py::arg("w_shape"), py::arg("stride_h"), py::arg("stride_w"),
           py::arg("pad_top"), py::arg("pad_left"), py::arg("pad_bottom"),
           py::arg("pad_right"), py::arg("dil_h"), py::arg("dil_w"), py::arg("groups"),
           py::arg("dy_shape"), py::arg("indices_shape"), py::arg("pool_kh"),
           py::arg("pool_kw"), py::arg("pool_sh"), py::arg("pool_sw"), py::arg("pool_ph"),
           py::arg("pool_pw"), py::arg("pool_ceil_mode"), py::arg("relu_y_shape") = none)
      .def_readonly("grad_workspace", &Conv2dPooledBackwardPlan::g_floats)
      .def_readonly("backward_data_workspace", &Conv2dPooledBackwardPlan::data_ws)
      .def_readonly("backward_weights_workspace", &Conv2dPooledBackwardPlan::weights_ws)
      .def_readonly("backward_bias_workspace", &Conv2dPooledBackwardPlan::bias_ws)
      .def("backward", &Conv2dPooledBackwardPlan::backward, py::arg("dy"), py::arg("indices"),
           py::arg("relu_y"), py::arg("x"), py::arg("w"), py::arg("dx"), py::arg("dw"),
           py::arg("db"), py::arg("ws"), py::arg("ws_floats"), py::arg("stream"));
  py::class_<LinearPlan>(m, "LinearPlan", "A validated linear (linear_plan's arguments).")
      .def(py::init<py::handle, py::handle, py::handle, py::handle>(), py::arg("x_shape"),
           py::arg("w_shape"), py::arg("b_shape"), py::arg("dy_shape") = none)
      .def_property_readonly("y_shape",
                             [](const LinearPlan& q) { return to_tuple({q.p.N, q.p.out}); })
      .def_readonly("forward_workspace", &LinearPlan::fwd_ws)
      .def_readonly("backward_data_workspace", &LinearPlan::data_ws)
      .def_readonly("backward_weights_workspace", &LinearPlan::weights_ws)
      .def("gemms", &LinearPlan::gemms, py::arg("pass_"), py::arg("sms") = 132,
           "As Conv2dPlan.gemms, for the dense layer's passes.")
      .def_readonly("backward_bias_workspace", &LinearPlan::bias_ws)
      .def("forward", &LinearPlan::forward, py::arg("x"), py::arg("w"), py::arg("b"),
           py::arg("y"), py::arg("ws"), py::arg("ws_floats"), py::arg("relu"), py::arg("stream"))
      .def("backward", &LinearPlan::backward, py::arg("dy"), py::arg("x"), py::arg("w"),
           py::arg("dx"), py::arg("dw"), py::arg("db"), py::arg("ws"), py::arg("ws_floats"),
           py::arg("stream"));
  py::class_<MaxPool2dPlan>(m, "MaxPool2dPlan",
                            "A validated max_pool2d (max_pool2d_plan's arguments; the backward "
                            "one with dy_shape and indices_shape).")
      .def(py::init<py::handle, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t,
                    int64_t, bool, py::handle, py::handle>(),
           py::arg("x_shape"), py::arg("kh"), py::arg("kw"), py::arg("sh"), py::arg("sw"),
           py::arg("ph"), py::arg("pw"), py::arg("dh"), py::arg("dw"), py::arg("ceil_mode"),
           py::arg("dy_shape") = none, py::arg("indices_shape") = none)
      .def_property_readonly("y_shape", [](const MaxPool2dPlan& q) {
        return to_tuple({q.p.N, q.p.C, q.p.P, q.p.Q});
      })
      .def("forward", &MaxPool2dPlan::forward, py::arg("x"), py::arg("y"), py::arg("indices"),
           py::arg("stream"))
      .def("backward", &MaxPool2dPlan::backward, py::arg("dy"), py::arg("indices"),
           py::arg("check_indices"), py::arg("ws"), py::arg("ws_bytes"), py::arg("dx"),
           py::arg("stream"));
  py::class_<BatchNormPlan>(m, "BatchNormPlan", "A validated batch_norm (batch_norm_plan's "
                            "arguments).")
      .def(py::init<py::handle, py::handle, py::handle, py::handle, py::handle, bool, double,
                    double>(),
           py::arg("x_shape"), py::arg("weight_shape"), py::arg("bias_shape"),
           py::arg("running_mean_shape"), py::arg("running_var_shape"), py::arg("training"),
           py::arg("momentum"), py::arg("eps"))
      .def_readonly("workspace_bytes", &BatchNormPlan::ws_bytes)
      .def("forward", &BatchNormPlan::forward, py::arg("x"), py::arg("weight"), py::arg("bias"),
           py::arg("running_mean"), py::arg("running_var"), py::arg("y"), py::arg("mean"),
           py::arg("invstd"), py::arg("ws"), py::arg("ws_bytes"), py::arg("relu"),
           py::arg("stream"));
  py::class_<BatchNormBackwardPlan>(m, "BatchNormBackwardPlan",
                                    "A validated batch_norm_backward (batch_norm_backward_plan's "
                                    "arguments and relu_y's shape).")
      .def(py::init<py::handle, py::handle, py::handle, py::handle, py::handle, bool,
                    py::handle>(),
           py::arg("dy_shape"), py::arg("x_shape"), py::arg("weight_shape"),
           py::arg("mean_shape"), py::arg("invstd_shape"), py::arg("training"),
           py::arg("relu_y_shape") = none)
      .def_readonly("workspace_bytes", &BatchNormBackwardPlan::ws_bytes)
      .def("backward", &BatchNormBackwardPlan::backward, py::arg("dy"), py::arg("x"),
           py::arg("weight"), py::arg("mean"), py::arg("invstd"), py::arg("relu_y"),
           py::arg("dx"), py::arg("dweight"), py::arg("dbias"), py::arg("ws"),
           py::arg("ws_bytes"), py::arg("stream"));
  py::class_<SoftmaxPlan>(m, "SoftmaxPlan", "A validated softmax over the last axis.")
      .def(py::init<py::handle, bool>(), py::arg("x_shape"), py::arg("log"))
      .def("forward", &SoftmaxPlan::forward, py::arg("x"), py::arg("y"), py::arg("stream"));
  py::class_<CrossEntropyPlan>(m, "CrossEntropyPlan",
                               "A validated cross_entropy (cross_entropy_plan's arguments).")
      .def(py::init<py::handle, py::handle, const std::string&>(), py::arg("logits_shape"),
           py::arg("labels_shape"), py::arg("labels_kind"))
      .def_readonly("workspace_bytes", &CrossEntropyPlan::ws_bytes)
      .def("run", &CrossEntropyPlan::run, py::arg("logits"), py::arg("labels"),
           py::arg("targets"), py::arg("dlogits"), py::arg("ws"), py::arg("ws_bytes"),
           py::arg("loss"), py::arg("check"), py::arg("stream"));
}

}  // namespace fastcnn::bind
