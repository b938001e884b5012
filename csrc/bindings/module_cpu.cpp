// module_cpu.cpp -- fastcnn._cpu: array checks, GIL release, nothing else.
//
// The one input rule (documented in the README): array arguments must be numpy.ndarray of
// dtype float32 (class labels: any integer dtype; pooling indices: int64); anything else is a
// TypeError that names the argument and says how to convert. Never a silent cast. Arrays that
// are not C-contiguous and aligned (Fortran order, slices, negative or zero strides, misaligned
// buffers) are copied once here; outputs are fresh C-contiguous arrays, except an `out=` /
// `dx_out=` array given by the caller (as_dest in cpu_arrays.h: used as it is, never copied).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstring>
#include <optional>
#include <string>

#include "common/args.h"
#include "common/check.h"
#include "common/cpu_features.h"
#include "cpu/kernels.h"
#include "cpu/ops.h"
#include "cpu/parallel.h"
#include "bindings/cpu_arrays.h"

namespace py = pybind11;
using namespace fastcnn;

namespace {

using namespace fastcnn::bind;

Conv2dParams conv_params(const py::array& x, const py::array& w, const std::optional<FArray>& b,
                              int64_t sh, int64_t sw, int64_t pt, int64_t pl, int64_t pb,
                              int64_t pr, int64_t dh, int64_t dw, int64_t groups) {
  Shape bs;
  if (b) bs = shape_of(*b);
  return check_conv2d_args(shape_of(x), shape_of(w), b ? &bs : nullptr, sh, sw, pt, pl, pb, pr,
                                dh, dw, groups);
}

// ---- ops ------------------------------------------------------------------------------------

FArray conv2d(py::handle x_, py::handle w_, py::handle b_, int64_t sh, int64_t sw, int64_t pt,
              int64_t pl, int64_t pb, int64_t pr, int64_t dh, int64_t dw, int64_t groups,
              bool relu, py::handle out_) {
  FArray x = as_float(x_, "conv2d", "x"), w = as_float(w_, "conv2d", "w");
  auto b = as_float_opt(b_, "conv2d", "b");
  const auto p = conv_params(x, w, b, sh, sw, pt, pl, pb, pr, dh, dw, groups);
  FArray y = b ? dest_or_new(out_, {p.N, p.K, p.P, p.Q}, "conv2d", "out",
                             {{"x", &x}, {"w", &w}, {"b", &*b}})
               : dest_or_new(out_, {p.N, p.K, p.P, p.Q}, "conv2d", "out", {{"x", &x}, {"w", &w}});
  {
    py::gil_scoped_release nogil;
    cpu::conv2d_forward(x.data(), w.data(), b ? b->data() : nullptr, y.mutable_data(), p, relu);
  }
  return y;
}

// (y, mean, var): conv2d without ReLU, and the per-channel batch statistics of y (float64 (K,),
// the biased variance) gathered as it is written (cpu::ConvBatchStats).
py::tuple conv2d_stats(py::handle x_, py::handle w_, py::handle b_, int64_t sh, int64_t sw,
                       int64_t pt, int64_t pl, int64_t pb, int64_t pr, int64_t dh, int64_t dw,
                       int64_t groups, py::handle out_) {
  FArray x = as_float(x_, "conv2d_stats", "x"), w = as_float(w_, "conv2d_stats", "w");
  auto b = as_float_opt(b_, "conv2d_stats", "b");
  const auto p = conv_params(x, w, b, sh, sw, pt, pl, pb, pr, dh, dw, groups);
  FArray y = b ? dest_or_new(out_, {p.N, p.K, p.P, p.Q}, "conv2d_stats", "out",
                             {{"x", &x}, {"w", &w}, {"b", &*b}})
               : dest_or_new(out_, {p.N, p.K, p.P, p.Q}, "conv2d_stats", "out",
                             {{"x", &x}, {"w", &w}});
  py::array_t<double> mean(p.K), var(p.K);
  {
    py::gil_scoped_release nogil;
    cpu::ConvBatchStats st{mean.mutable_data(), var.mutable_data()};
    cpu::conv2d_forward(x.data(), w.data(), b ? b->data() : nullptr, y.mutable_data(), p, 0,
                        &st);
  }
  return py::make_tuple(y, mean, var);
}

py::tuple conv2d_backward(py::handle dy_, py::handle x_, py::handle w_, int64_t sh, int64_t sw,
                          int64_t pt, int64_t pl, int64_t pb, int64_t pr, int64_t dh, int64_t dw,
                          int64_t groups, bool compute_dx, bool compute_dw, bool bias,
                          py::handle relu_y_, py::handle pool_indices_, int64_t pool_kh,
                          int64_t pool_kw, int64_t pool_sh, int64_t pool_sw, int64_t pool_ph,
                          int64_t pool_pw, bool pool_ceil_mode, py::handle dx_out_) {
  const char* op = "conv2d_backward";
  FArray dy = as_float(dy_, op, "dy"), x = as_float(x_, op, "x"), w = as_float(w_, op, "w");
  const auto p = conv_params(x, w, std::nullopt, sh, sw, pt, pl, pb, pr, dh, dw, groups);
  const Shape out{p.N, p.K, p.P, p.Q};
  std::optional<cpu::PooledGrad> pooled;
  IArray idx;
  if (pool_indices_.is_none()) {
    check_conv2d_grad(shape_of(dy), p);
  } else {
    // dy is the gradient of max_pool2d(conv output): routed back through the pooling
    pooled.emplace();
    pooled->pp = check_conv2d_pooled_grad(shape_of(dy), p, pool_kh, pool_kw, pool_sh, pool_sw,
                                        pool_ph, pool_pw, pool_ceil_mode);
    idx = as_indices(pool_indices_, shape_of(dy), op, "pool_indices");
    cpu::check_max_pool2d_indices(idx.data(), pooled->pp);
    pooled->idx = idx.data();
  }
  std::optional<FArray> relu_y;
  if (!relu_y_.is_none()) {
    relu_y = as_float(relu_y_, op, "relu_y");
    FASTCNN_CHECK(shape_of(*relu_y) == out, op, ": relu_y has shape ",
                  shape_str(shape_of(*relu_y)), " but the convolution's output has shape ",
                  shape_str(out));
  }
  py::object dx = py::none(), dwt = py::none(), db = py::none();
  std::optional<FArray> dxa, dwa, dba;
  if (compute_dx) {
    dxa = relu_y ? dest_or_new(dx_out_, shape_of(x), op, "dx_out",
                               {{"dy", &dy}, {"x", &x}, {"w", &w}, {"relu_y", &*relu_y}})
                 : dest_or_new(dx_out_, shape_of(x), op, "dx_out",
                               {{"dy", &dy}, {"x", &x}, {"w", &w}});
  } else {
    FASTCNN_CHECK(dx_out_.is_none(), op, ": dx_out is given but compute_dx=False");
  }
  if (compute_dw) dwa = new_float(shape_of(w));
  if (bias) dba = new_float({p.K});
  {
    py::gil_scoped_release nogil;
    cpu::conv2d_backward(dy.data(), relu_y ? relu_y->data() : nullptr, pooled ? &*pooled : nullptr,
                         x.data(), w.data(), dxa ? dxa->mutable_data() : nullptr,
                         dwa ? dwa->mutable_data() : nullptr, dba ? dba->mutable_data() : nullptr,
                         p);
  }
  if (dxa) dx = *dxa;
  if (dwa) dwt = *dwa;
  if (dba) db = *dba;
  return py::make_tuple(dx, dwt, db);
}


void sgd_update(py::handle p_, py::handle g_, py::handle buf_, double lr, double momentum,
                bool nesterov, double weight_decay, bool first) {
  const char* op = "sgd_update";
  FArray p = inplace_float(p_, op, "p", -1);
  FArray g = as_float(g_, op, "g");
  FASTCNN_CHECK(g.size() == p.size(), op, ": g has ", g.size(), " elements but p has ", p.size());
  std::optional<FArray> buf;
  if (momentum != 0.0) {
    FASTCNN_CHECK(!buf_.is_none(), op, ": momentum=", momentum, " needs a momentum buffer");
    buf = inplace_float(buf_, op, "buf", p.size());
  }
  py::gil_scoped_release nogil;
  cpu::sgd_update(p.mutable_data(), g.data(), buf ? buf->mutable_data() : nullptr, p.size(),
                  static_cast<float>(lr), static_cast<float>(momentum),
                  static_cast<float>(weight_decay), nesterov, first);
}

void adam_update(py::handle p_, py::handle g_, py::handle m_, py::handle v_, double step_size,
                 double beta1, double one_minus_beta1, double beta2, double one_minus_beta2,
                 double sqrt_bc2, double eps, double l2, double decay, bool has_l2,
                 bool has_decay) {
  const char* op = "adam_update";
  FArray p = inplace_float(p_, op, "p", -1);
  FArray m = inplace_float(m_, op, "m", p.size()), v = inplace_float(v_, op, "v", p.size());
  FArray g = as_float(g_, op, "g");
  FASTCNN_CHECK(g.size() == p.size(), op, ": g has ", g.size(), " elements but p has ", p.size());
  AdamScalars s{static_cast<float>(step_size), static_cast<float>(beta1),
                static_cast<float>(one_minus_beta1), static_cast<float>(beta2),
                static_cast<float>(one_minus_beta2), static_cast<float>(sqrt_bc2),
                static_cast<float>(eps), static_cast<float>(l2), static_cast<float>(decay),
                has_l2, has_decay};
  py::gil_scoped_release nogil;
  cpu::adam_update(p.mutable_data(), g.data(), m.mutable_data(), v.mutable_data(), p.size(), s);
}

FArray relu(py::handle x_, py::handle out_) {
  FArray x = as_float(x_, "relu", "x");
  FArray y = out_.is_none() ? new_float(shape_of(x))
                            : as_out(out_, shape_of(x), "relu", {{"x", &x}});
  {
    py::gil_scoped_release nogil;
    cpu::relu_forward(x.data(), y.mutable_data(), x.size());
  }
  return y;
}

FArray relu_backward(py::handle dy_, py::handle y_, py::handle out_) {
  FArray dy = as_float(dy_, "relu_backward", "dy"), y = as_float(y_, "relu_backward", "y");
  same_shape(dy, y, "relu_backward", "dy", "y");
  FArray dx = out_.is_none()
                  ? new_float(shape_of(dy))
                  : as_out(out_, shape_of(dy), "relu_backward", {{"dy", &dy}, {"y", &y}});
  {
    py::gil_scoped_release nogil;
    cpu::relu_backward(dy.data(), y.data(), dx.mutable_data(), dy.size());
  }
  return dx;
}

py::object max_pool2d(py::handle x_, int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t ph,
                      int64_t pw, int64_t dh, int64_t dw, bool ceil_mode, bool return_indices,
                      py::handle out_) {
  FArray x = as_float(x_, "max_pool2d", "x");
  const auto p = check_max_pool2d_args(shape_of(x), kh, kw, sh, sw, ph, pw, dh, dw, ceil_mode);
  FArray y = dest_or_new(out_, {p.N, p.C, p.P, p.Q}, "max_pool2d", "out", {{"x", &x}});
  std::optional<IArray> idx;
  if (return_indices) idx = IArray(std::vector<py::ssize_t>{p.N, p.C, p.P, p.Q});
  {
    py::gil_scoped_release nogil;
    cpu::max_pool2d_forward(x.data(), y.mutable_data(), idx ? idx->mutable_data() : nullptr, p);
  }
  if (idx) return py::make_tuple(y, *idx);
  return std::move(y);
}

FArray max_pool2d_backward(py::handle dy_, py::handle x_, int64_t kh, int64_t kw, int64_t sh,
                           int64_t sw, int64_t ph, int64_t pw, int64_t dh, int64_t dw,
                           bool ceil_mode, py::handle indices_, py::handle out_) {
  const char* op = "max_pool2d_backward";
  FArray dy = as_float(dy_, op, "dy"), x = as_float(x_, op, "x");
  const auto p = check_max_pool2d_args(shape_of(x), kh, kw, sh, sw, ph, pw, dh, dw, ceil_mode);
  check_max_pool2d_grad(shape_of(dy), p);
  IArray idx;
  if (indices_.is_none()) {
    idx = IArray(std::vector<py::ssize_t>{p.N, p.C, p.P, p.Q});
    FArray scratch = new_float({p.N, p.C, p.P, p.Q});
    py::gil_scoped_release nogil;
    cpu::max_pool2d_forward(x.data(), scratch.mutable_data(), idx.mutable_data(), p);
  } else {
    idx = as_indices(indices_, shape_of(dy), op, "indices");
  }
  FArray dx = out_.is_none()
                  ? new_float(shape_of(x))
                  : as_out(out_, shape_of(x), op, {{"dy", &dy}, {"x", &x}, {"indices", &idx}});
  bool in_range;
  {
    py::gil_scoped_release nogil;
    in_range = cpu::max_pool2d_backward(dy.data(), idx.data(), dx.mutable_data(), p);
  }
  if (!in_range) cpu::check_max_pool2d_indices(idx.data(), p);  // throws, naming the index
  return dx;
}

LinearParams linear_params(const py::array& x, const py::array& w,
                                const std::optional<FArray>& b) {
  Shape bs;
  if (b) bs = shape_of(*b);
  return check_linear_args(shape_of(x), shape_of(w), b ? &bs : nullptr);
}

FArray linear(py::handle x_, py::handle w_, py::handle b_, bool relu, py::handle out_) {
  FArray x = as_float(x_, "linear", "x"), w = as_float(w_, "linear", "w");
  auto b = as_float_opt(b_, "linear", "b");
  const auto p = linear_params(x, w, b);
  FArray y = b ? dest_or_new(out_, {p.N, p.out}, "linear", "out",
                             {{"x", &x}, {"w", &w}, {"b", &*b}})
               : dest_or_new(out_, {p.N, p.out}, "linear", "out", {{"x", &x}, {"w", &w}});
  {
    py::gil_scoped_release nogil;
    cpu::linear_forward(x.data(), w.data(), b ? b->data() : nullptr, y.mutable_data(), p, relu);
  }
  return y;
}

py::tuple linear_backward(py::handle dy_, py::handle x_, py::handle w_, bool compute_dx,
                          bool compute_dw, bool bias, py::handle dx_out_) {
  const char* op = "linear_backward";
  FArray dy = as_float(dy_, op, "dy"), x = as_float(x_, op, "x"), w = as_float(w_, op, "w");
  const auto p = linear_params(x, w, std::nullopt);
  check_linear_grad(shape_of(dy), p);
  std::optional<FArray> dxa, dwa, dba;
  if (compute_dx) {
    dxa = dest_or_new(dx_out_, {p.N, p.in}, op, "dx_out", {{"dy", &dy}, {"x", &x}, {"w", &w}});
  } else {
    FASTCNN_CHECK(dx_out_.is_none(), op, ": dx_out is given but compute_dx=False");
  }
  if (compute_dw) dwa = new_float({p.out, p.in});
  if (bias) dba = new_float({p.out});
  {
    py::gil_scoped_release nogil;
    if (dxa) cpu::linear_backward_data(dy.data(), w.data(), dxa->mutable_data(), p);
    if (dwa) cpu::linear_backward_weights(dy.data(), x.data(), dwa->mutable_data(), p);
    if (dba) cpu::linear_backward_bias(dy.data(), dba->mutable_data(), p);
  }
  py::object dx = py::none(), dw = py::none(), db = py::none();
  if (dxa) dx = *dxa;
  if (dwa) dw = *dwa;
  if (dba) db = *dba;
  return py::make_tuple(dx, dw, db);
}

// softmax over the last axis (fastcnn.ops moves the requested axis last)
FArray softmax(py::handle x_, bool log) {
  const char* op = log ? "log_softmax" : "softmax";
  FArray x = as_float(x_, op, "x");
  const RowsParams r = check_softmax_args(shape_of(x), log);
  FArray y = new_float(shape_of(x));
  {
    py::gil_scoped_release nogil;
    if (r.L > 0) cpu::softmax_forward(x.data(), y.mutable_data(), r.rows, r.L, log);
  }
  return y;
}

py::tuple cross_entropy(py::handle logits_, py::handle labels_) {
  const char* op = "cross_entropy";
  FArray logits = as_float(logits_, op, "logits");
  const RowsParams r = check_cross_entropy_logits(shape_of(logits));
  const int64_t N = r.rows, L = r.L;
  if (!py::isinstance<py::array>(labels_))
    throw py::type_error(cat(op, ": labels must be a numpy.ndarray (int class ids of shape (N,) "
                             "or float32 probabilities of shape (N, classes)), got ",
                             type_name(labels_)));
  auto la = py::reinterpret_borrow<py::array>(labels_);
  FArray dlogits = new_float({N, L});
  double loss = 0.0;
  const char kind = la.dtype().kind();
  if (kind == 'i' || kind == 'u') {
    check_cross_entropy_labels(shape_of(la), shape_of(logits), true);
    IArray lab = py::reinterpret_borrow<IArray>(
        contiguous(py::reinterpret_borrow<py::array>(la.attr("astype")("int64"))));
    cpu::check_class_labels(lab.data(), N, L);
    py::gil_scoped_release nogil;
    loss = cpu::cross_entropy(logits.data(), lab.data(), nullptr, dlogits.mutable_data(), N, L);
  } else {
    FArray t = as_float(labels_, op, "labels");
    check_cross_entropy_labels(shape_of(t), shape_of(logits), false);
    py::gil_scoped_release nogil;
    loss = cpu::cross_entropy(logits.data(), nullptr, t.data(), dlogits.mutable_data(), N, L);
  }
  return py::make_tuple(loss, dlogits);
}

}  // namespace

PYBIND11_MODULE(_cpu, m) {
  m.doc() = "fastcnn's CPU kernels (generic C++, AVX2+FMA, AVX-512), chosen at import";
  m.attr("__version__") = FASTCNN_VERSION;

  m.def("isa", [] { return std::string(isa_name(cpu::active_isa())); },
        "The ISA whose kernels are active: 'avx512', 'avx2' or 'generic'.");
  m.def("best_isa", [] { return std::string(isa_name(cpu::best_isa())); },
        "The best ISA this CPU and OS support.");
  m.def("set_isa", [](const std::string& name) {
    return std::string(isa_name(cpu::set_isa(parse_isa(name))));
  }, py::arg("isa"), "Cap the active ISA (for tests); returns the ISA now active.");
  m.def("num_threads", &cpu::num_threads);
  m.def("set_num_threads", [](int n) {
    FASTCNN_CHECK(n >= 1, "set_num_threads: n must be >= 1, got ", n);
    cpu::set_num_threads(n);
  }, py::arg("n"));

  m.def("probe_fma", [](double seconds, int threads) {
    FASTCNN_CHECK(seconds > 0 && seconds <= 60, "probe_fma: seconds must be in (0, 60], got ", seconds);
    FASTCNN_CHECK(threads >= 1 && threads <= 1024, "probe_fma: threads must be >= 1, got ", threads);
    py::gil_scoped_release nogil;
    return cpu::probe_fma_gflops(seconds, threads);
  }, py::arg("seconds") = 0.2, py::arg("threads") = 1,
        "GFLOP/s of the active ISA's FMA units on `threads` threads (the compute peak).");
  m.def("probe_bandwidth", [](int64_t bytes, int threads) {
    FASTCNN_CHECK(bytes >= (1 << 20), "probe_bandwidth: bytes must be >= 2^20, got ", bytes);
    FASTCNN_CHECK(threads >= 1 && threads <= 1024, "probe_bandwidth: threads must be >= 1, got ",
                  threads);
    py::gil_scoped_release nogil;
    return cpu::probe_copy_gbps(bytes, threads);
  }, py::arg("bytes") = int64_t{1} << 29, py::arg("threads") = 1,
        "GB/s (read + written) of a parallel copy of `bytes` bytes: the memory bandwidth.");
  m.def("conv2d", &conv2d, py::arg("x"), py::arg("w"), py::arg("b"), py::arg("stride_h"),
        py::arg("stride_w"), py::arg("pad_top"), py::arg("pad_left"), py::arg("pad_bottom"),
        py::arg("pad_right"), py::arg("dil_h"), py::arg("dil_w"), py::arg("groups"),
        py::arg("relu") = false, py::arg("out") = py::none());
  m.def("conv2d_stats", &conv2d_stats, py::arg("x"), py::arg("w"), py::arg("b"),
        py::arg("stride_h"), py::arg("stride_w"), py::arg("pad_top"), py::arg("pad_left"),
        py::arg("pad_bottom"), py::arg("pad_right"), py::arg("dil_h"), py::arg("dil_w"),
        py::arg("groups"), py::arg("out") = py::none());
  m.def("conv2d_backward", &conv2d_backward, py::arg("dy"), py::arg("x"), py::arg("w"),
        py::arg("stride_h"), py::arg("stride_w"), py::arg("pad_top"), py::arg("pad_left"),
        py::arg("pad_bottom"), py::arg("pad_right"), py::arg("dil_h"), py::arg("dil_w"),
        py::arg("groups"), py::arg("compute_dx") = true, py::arg("compute_dw") = true,
        py::arg("bias") = true, py::arg("relu_y") = py::none(),
        py::arg("pool_indices") = py::none(), py::arg("pool_kh") = 1, py::arg("pool_kw") = 1,
        py::arg("pool_sh") = 1, py::arg("pool_sw") = 1, py::arg("pool_ph") = 0,
        py::arg("pool_pw") = 0, py::arg("pool_ceil_mode") = false,
        py::arg("dx_out") = py::none());
  m.def("sgd_update", &sgd_update, py::arg("p"), py::arg("g"), py::arg("buf"), py::arg("lr"),
        py::arg("momentum"), py::arg("nesterov"), py::arg("weight_decay"), py::arg("first"));
  m.def("adam_update", &adam_update, py::arg("p"), py::arg("g"), py::arg("m"), py::arg("v"),
        py::arg("step_size"), py::arg("beta1"), py::arg("one_minus_beta1"), py::arg("beta2"),
        py::arg("one_minus_beta2"), py::arg("sqrt_bc2"), py::arg("eps"), py::arg("l2"),
        py::arg("decay"), py::arg("has_l2"), py::arg("has_decay"));
  m.def("relu", &relu, py::arg("x"), py::arg("out") = py::none());
  m.def("relu_backward", &relu_backward, py::arg("dy"), py::arg("y"),
        py::arg("out") = py::none());
  m.def("max_pool2d", &max_pool2d, py::arg("x"), py::arg("kh"), py::arg("kw"), py::arg("sh"),
        py::arg("sw"), py::arg("ph"), py::arg("pw"), py::arg("dh"), py::arg("dw"),
        py::arg("ceil_mode"), py::arg("return_indices"), py::arg("out") = py::none());
  m.def("max_pool2d_backward", &max_pool2d_backward, py::arg("dy"), py::arg("x"), py::arg("kh"),
        py::arg("kw"), py::arg("sh"), py::arg("sw"), py::arg("ph"), py::arg("pw"), py::arg("dh"),
        py::arg("dw"), py::arg("ceil_mode"), py::arg("indices"), py::arg("out") = py::none());
  m.def("linear", &linear, py::arg("x"), py::arg("w"), py::arg("b"), py::arg("relu") = false,
        py::arg("out") = py::none());
  m.def("linear_backward", &linear_backward, py::arg("dy"), py::arg("x"), py::arg("w"),
        py::arg("compute_dx") = true, py::arg("compute_dw") = true, py::arg("bias") = true,
        py::arg("dx_out") = py::none());
  m.def("softmax", &softmax, py::arg("x"), py::arg("log") = false);
  m.def("cross_entropy", &cross_entropy, py::arg("logits"), py::arg("labels"));
  fastcnn::bind::bind_normalization(m);  // normalization family (cpu_normalization.cpp)
  bind_pooling(m);  // cpu_pooling.cpp (issue 17)
  fastcnn::bind::bind_activation(m);  // sigmoid, tanh, leaky_relu, gelu, silu (issue 17)
}
