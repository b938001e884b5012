// cpu_pooling.cpp -- fastcnn._cpu's average and global pooling (bind_pooling; max_pool2d stays
// in module_cpu.cpp): NumPy arrays in (cpu_arrays.h's rules), arguments checked by
// common/args.cpp (the CUDA module's checks too), the GIL released around the kernels.
//   avg_pool2d(x, kh, kw, sh, sw, ph, pw, ceil_mode, count_include_pad, divisor_override,
//              out=None) -> y
//   avg_pool2d_backward(dy, x, ..., divisor_override, out=None) -> dx   (x: only its shape)
//   global_avg_pool2d(x) -> y (N, C); global_avg_pool2d_backward(dy, x, out=None) -> dx
//   global_max_pool2d(x, return_indices) -> y or (y, indices (N, C) int64)
//   global_max_pool2d_backward(dy, x, indices, out=None) -> dx (indices None: recomputed from x)
#include "bindings/cpu_arrays.h"
#include "cpu/ops.h"

namespace fastcnn::bind {
namespace {

// divisor_override: None or an int (bool refused, as fastcnn.ops does)
bool divisor_arg(py::handle d, const char* op, int64_t& value) {
  if (d.is_none()) return false;
  if (!py::isinstance<py::int_>(d) || py::isinstance<py::bool_>(d))
    throw py::type_error(cat(op, ": divisor_override must be None or an int, got ", type_name(d)));
  value = d.cast<int64_t>();
  return true;
}

AvgPool2dParams avg_params(const Shape& x, int64_t kh, int64_t kw, int64_t sh, int64_t sw,
                           int64_t ph, int64_t pw, bool ceil_mode, bool count_include_pad,
                           py::handle divisor_override, const char* op) {
  int64_t d = 0;
  const bool has = divisor_arg(divisor_override, op, d);
  return check_avg_pool2d_args(x, kh, kw, sh, sw, ph, pw, ceil_mode, count_include_pad, has, d,
                               op);
}

// x of a backward whose values are not read: a float32 numpy.ndarray, never copied.
py::array shape_source(py::handle obj, const char* op) {
  if (!py::isinstance<py::array>(obj))
    throw py::type_error(cat(op, ": x must be a numpy.ndarray of float32, got ", type_name(obj)));
  auto a = py::reinterpret_borrow<py::array>(obj);
  if (!a.dtype().equal(py::dtype::of<float>()))
    throw py::type_error(cat(op, ": x has dtype ", py::str(a.dtype()).cast<std::string>(),
                             " but fastcnn computes in float32 only; convert it with "
                             "x.astype(numpy.float32)"));
  return a;
}

FArray avg_pool2d(py::handle x_, int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t ph,
                  int64_t pw, bool ceil_mode, bool count_include_pad, py::handle divisor,
                  py::handle out_) {
  const char* op = "avg_pool2d";
  FArray x = as_float(x_, op, "x");
  const auto a = avg_params(shape_of(x), kh, kw, sh, sw, ph, pw, ceil_mode, count_include_pad,
                            divisor, op);
  const Pool2dParams& p = a.pool;
  FArray y = dest_or_new(out_, {p.N, p.C, p.P, p.Q}, op, "out", {{"x", &x}});
  py::gil_scoped_release nogil;
  cpu::avg_pool2d_forward(x.data(), y.mutable_data(), a);
  return y;
}

FArray avg_pool2d_backward(py::handle dy_, py::handle x_, int64_t kh, int64_t kw, int64_t sh,
                           int64_t sw, int64_t ph, int64_t pw, bool ceil_mode,
                           bool count_include_pad, py::handle divisor, py::handle out_) {
  const char* op = "avg_pool2d_backward";
  FArray dy = as_float(dy_, op, "dy");
  py::array x = shape_source(x_, op);
  const auto a = avg_params(shape_of(x), kh, kw, sh, sw, ph, pw, ceil_mode, count_include_pad,
                            divisor, op);
  check_avg_pool2d_grad(shape_of(dy), a);
  FArray dx = out_.is_none() ? new_float(shape_of(x))
                             : as_out(out_, shape_of(x), op, {{"dy", &dy}, {"x", &x}});
  py::gil_scoped_release nogil;
  cpu::avg_pool2d_backward(dy.data(), dx.mutable_data(), a);
  return dx;
}

FArray global_avg_pool2d(py::handle x_) {
  const char* op = "global_avg_pool2d";
  FArray x = as_float(x_, op, "x");
  const auto p = check_global_pool2d_args(shape_of(x), op);
  FArray y = new_float({p.N, p.C});
  py::gil_scoped_release nogil;
  cpu::global_avg_pool2d_forward(x.data(), y.mutable_data(), p);
  return y;
}

FArray global_avg_pool2d_backward(py::handle dy_, py::handle x_, py::handle out_) {
  const char* op = "global_avg_pool2d_backward";
  FArray dy = as_float(dy_, op, "dy");
  py::array x = shape_source(x_, op);
  const auto p = check_global_pool2d_args(shape_of(x), op);
  check_global_pool2d_grad(shape_of(dy), p, op);
  FArray dx = out_.is_none() ? new_float(shape_of(x))
                             : as_out(out_, shape_of(x), op, {{"dy", &dy}, {"x", &x}});
  py::gil_scoped_release nogil;
  cpu::global_avg_pool2d_backward(dy.data(), dx.mutable_data(), p);
  return dx;
}

py::object global_max_pool2d(py::handle x_, bool return_indices) {
  const char* op = "global_max_pool2d";
  FArray x = as_float(x_, op, "x");
  const auto p = check_global_pool2d_args(shape_of(x), op);
  FArray y = new_float({p.N, p.C});
  std::optional<IArray> idx;
  if (return_indices) idx = IArray(std::vector<py::ssize_t>{p.N, p.C});
  {
    py::gil_scoped_release nogil;
    cpu::global_max_pool2d_forward(x.data(), y.mutable_data(),
                                   idx ? idx->mutable_data() : nullptr, p);
  }
  if (idx) return py::make_tuple(y, *idx);
  return std::move(y);
}

FArray global_max_pool2d_backward(py::handle dy_, py::handle x_, py::handle indices_,
                                  py::handle out_) {
  const char* op = "global_max_pool2d_backward";
  FArray dy = as_float(dy_, op, "dy");
  const bool recompute = indices_.is_none();
  // x's values are read only to recompute the indices
  FArray x = recompute ? as_float(x_, op, "x") : FArray();
  py::array xs = recompute ? py::array(x) : shape_source(x_, op);
  const auto p = check_global_pool2d_args(shape_of(xs), op);
  check_global_pool2d_grad(shape_of(dy), p, op);
  IArray idx;
  if (recompute) {
    idx = IArray(std::vector<py::ssize_t>{p.N, p.C});
    FArray scratch = new_float({p.N, p.C});
    py::gil_scoped_release nogil;
    cpu::global_max_pool2d_forward(x.data(), scratch.mutable_data(), idx.mutable_data(), p);
  } else {
    idx = as_indices(indices_, shape_of(dy), op, "indices");
  }
  FArray dx = out_.is_none()
                  ? new_float(shape_of(xs))
                  : as_out(out_, shape_of(xs), op, {{"dy", &dy}, {"x", &xs}, {"indices", &idx}});
  {
    py::gil_scoped_release nogil;
    cpu::global_max_pool2d_backward(dy.data(), idx.data(), dx.mutable_data(), p);
  }
  return dx;
}

}  // namespace

void bind_pooling(py::module_& m) {
  m.def("avg_pool2d", &avg_pool2d, py::arg("x"), py::arg("kh"), py::arg("kw"), py::arg("sh"),
        py::arg("sw"), py::arg("ph"), py::arg("pw"), py::arg("ceil_mode"),
        py::arg("count_include_pad"), py::arg("divisor_override"), py::arg("out") = py::none());
  m.def("avg_pool2d_backward", &avg_pool2d_backward, py::arg("dy"), py::arg("x"), py::arg("kh"),
        py::arg("kw"), py::arg("sh"), py::arg("sw"), py::arg("ph"), py::arg("pw"),
        py::arg("ceil_mode"), py::arg("count_include_pad"), py::arg("divisor_override"),
        py::arg("out") = py::none());
  m.def("global_avg_pool2d", &global_avg_pool2d, py::arg("x"));
  m.def("global_avg_pool2d_backward", &global_avg_pool2d_backward, py::arg("dy"), py::arg("x"),
        py::arg("out") = py::none());
  m.def("global_max_pool2d", &global_max_pool2d, py::arg("x"), py::arg("return_indices"));
  m.def("global_max_pool2d_backward", &global_max_pool2d_backward, py::arg("dy"), py::arg("x"),
        py::arg("indices"), py::arg("out") = py::none());
}

}  // namespace fastcnn::bind
