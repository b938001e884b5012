// cuda_pooling.cpp -- fastcnn._cuda's average and global pooling (bind_pooling; max_pool2d stays
// in module_cuda.cpp): device pointers and shapes in (cuda_args.h), arguments checked by
// common/args.cpp (the CPU module's checks, so the same messages), launched on the given stream
// with the GIL released. The adapter fastcnn._cuda_ops allocates and calls the *_plan
// functions first.
#include "bindings/cuda_args.h"

namespace fastcnn::bind {
namespace {

AvgPool2dParams avg_params(py::handle x_shape, int64_t kh, int64_t kw, int64_t sh, int64_t sw,
                           int64_t ph, int64_t pw, bool ceil_mode, bool count_include_pad,
                           py::handle divisor, const char* op) {
  int64_t d = 0;
  const bool has = !divisor.is_none();
  if (has) {
    if (!py::isinstance<py::int_>(divisor) || py::isinstance<py::bool_>(divisor))
      throw py::type_error(cat(op, ": divisor_override must be None or an int"));
    d = divisor.cast<int64_t>();
  }
  return check_avg_pool2d_args(shape_of(x_shape, op, "x_shape"), kh, kw, sh, sw, ph, pw,
                               ceil_mode, count_include_pad, has, d, op);
}

py::tuple avg_pool2d_plan(py::handle x_shape, int64_t kh, int64_t kw, int64_t sh, int64_t sw,
                          int64_t ph, int64_t pw, bool ceil_mode, bool count_include_pad,
                          py::handle divisor, py::handle dy_shape) {
  const char* op = dy_shape.is_none() ? "avg_pool2d" : "avg_pool2d_backward";
  const auto a = avg_params(x_shape, kh, kw, sh, sw, ph, pw, ceil_mode, count_include_pad,
                            divisor, op);
  if (!dy_shape.is_none()) check_avg_pool2d_grad(shape_of(dy_shape, op, "dy_shape"), a);
  return to_tuple({a.pool.N, a.pool.C, a.pool.P, a.pool.Q});
}

void avg_pool2d_forward(Ptr x, py::handle x_shape, Ptr y, int64_t kh, int64_t kw, int64_t sh,
                        int64_t sw, int64_t ph, int64_t pw, bool ceil_mode,
                        bool count_include_pad, py::handle divisor, Ptr stream) {
  const auto a = avg_params(x_shape, kh, kw, sh, sw, ph, pw, ceil_mode, count_include_pad,
                            divisor, "avg_pool2d");
  py::gil_scoped_release nogil;
  cuda::avg_pool2d_forward(dev<const float>(x), dev<float>(y), a, stream_of(stream));
}

void avg_pool2d_backward(Ptr dy, py::handle dy_shape, py::handle x_shape, Ptr dx, int64_t kh,
                         int64_t kw, int64_t sh, int64_t sw, int64_t ph, int64_t pw,
                         bool ceil_mode, bool count_include_pad, py::handle divisor, Ptr stream) {
  const char* op = "avg_pool2d_backward";
  const auto a = avg_params(x_shape, kh, kw, sh, sw, ph, pw, ceil_mode, count_include_pad,
                            divisor, op);
  check_avg_pool2d_grad(shape_of(dy_shape, op, "dy_shape"), a);
  py::gil_scoped_release nogil;
  cuda::avg_pool2d_backward(dev<const float>(dy), dev<float>(dx), a, stream_of(stream));
}

// The output shape (N, C) of a global pooling `op`; with dy_shape: checks dy against it.
py::tuple global_pool2d_plan(py::handle x_shape, const std::string& op, py::handle dy_shape) {
  const auto p = check_global_pool2d_args(shape_of(x_shape, op.c_str(), "x_shape"), op.c_str());
  if (!dy_shape.is_none())
    check_global_pool2d_grad(shape_of(dy_shape, op.c_str(), "dy_shape"), p, op.c_str());
  return to_tuple({p.N, p.C});
}

void global_avg_pool2d_forward(Ptr x, py::handle x_shape, Ptr y, Ptr stream) {
  const char* op = "global_avg_pool2d";
  const auto p = check_global_pool2d_args(shape_of(x_shape, op, "x_shape"), op);
  py::gil_scoped_release nogil;
  cuda::global_avg_pool2d_forward(dev<const float>(x), dev<float>(y), p, stream_of(stream));
}

void global_avg_pool2d_backward(Ptr dy, py::handle dy_shape, py::handle x_shape, Ptr dx,
                                Ptr stream) {
  const char* op = "global_avg_pool2d_backward";
  const auto p = check_global_pool2d_args(shape_of(x_shape, op, "x_shape"), op);
  check_global_pool2d_grad(shape_of(dy_shape, op, "dy_shape"), p, op);
  py::gil_scoped_release nogil;
  cuda::global_avg_pool2d_backward(dev<const float>(dy), dev<float>(dx), p, stream_of(stream));
}

void global_max_pool2d_forward(Ptr x, py::handle x_shape, Ptr y, Ptr idx, Ptr stream) {
  const char* op = "global_max_pool2d";
  const auto p = check_global_pool2d_args(shape_of(x_shape, op, "x_shape"), op);
  py::gil_scoped_release nogil;
  cuda::global_max_pool2d_forward(dev<const float>(x), dev<float>(y), dev<int64_t>(idx), p,
                                  stream_of(stream));
}

// check_indices: the indices came from the user (validated on the device; ws >= 16 bytes).
void global_max_pool2d_backward(Ptr dy, py::handle dy_shape, py::handle x_shape, Ptr idx,
                                py::handle idx_shape, bool check_indices, Ptr ws,
                                int64_t ws_bytes, Ptr dx, Ptr stream) {
  const char* op = "global_max_pool2d_backward";
  const auto p = check_global_pool2d_args(shape_of(x_shape, op, "x_shape"), op);
  const Shape dys = shape_of(dy_shape, op, "dy_shape");
  check_global_pool2d_grad(dys, p, op);
  check_indices_shape(shape_of(idx_shape, op, "indices_shape"), dys, op, "indices");
  if (check_indices) check_workspace(ws_bytes, cuda::kPoolCheckWorkspaceBytes, op);
  py::gil_scoped_release nogil;
  cuda::global_max_pool2d_backward(dev<const float>(dy), dev<const int64_t>(idx),
                                   dev<float>(dx), p, check_indices, dev<void>(ws),
                                   stream_of(stream));
}

}  // namespace

void bind_pooling(py::module_& m) {
  m.def("avg_pool2d_plan", &avg_pool2d_plan, py::arg("x_shape"), py::arg("kh"), py::arg("kw"),
        py::arg("sh"), py::arg("sw"), py::arg("ph"), py::arg("pw"), py::arg("ceil_mode"),
        py::arg("count_include_pad"), py::arg("divisor_override"),
        py::arg("dy_shape") = py::none(), "Validate an avg_pool2d; the output shape.");
  m.def("avg_pool2d_forward", &avg_pool2d_forward, py::arg("x"), py::arg("x_shape"),
        py::arg("y"), py::arg("kh"), py::arg("kw"), py::arg("sh"), py::arg("sw"), py::arg("ph"),
        py::arg("pw"), py::arg("ceil_mode"), py::arg("count_include_pad"),
        py::arg("divisor_override"), py::arg("stream"));
  m.def("avg_pool2d_backward", &avg_pool2d_backward, py::arg("dy"), py::arg("dy_shape"),
        py::arg("x_shape"), py::arg("dx"), py::arg("kh"), py::arg("kw"), py::arg("sh"),
        py::arg("sw"), py::arg("ph"), py::arg("pw"), py::arg("ceil_mode"),
        py::arg("count_include_pad"), py::arg("divisor_override"), py::arg("stream"));
  m.def("global_pool2d_plan", &global_pool2d_plan, py::arg("x_shape"), py::arg("op"),
        py::arg("dy_shape") = py::none(), "Validate a global pooling; the output shape (N, C).");
  m.def("global_avg_pool2d_forward", &global_avg_pool2d_forward, py::arg("x"),
        py::arg("x_shape"), py::arg("y"), py::arg("stream"));
  m.def("global_avg_pool2d_backward", &global_avg_pool2d_backward, py::arg("dy"),
        py::arg("dy_shape"), py::arg("x_shape"), py::arg("dx"), py::arg("stream"));
  m.def("global_max_pool2d_forward", &global_max_pool2d_forward, py::arg("x"), py::arg("x_shape"),
        py::arg("y"), py::arg("indices"), py::arg("stream"));
  m.def("global_max_pool2d_backward", &global_max_pool2d_backward, py::arg("dy"),
        py::arg("dy_shape"), py::arg("x_shape"), py::arg("indices"), py::arg("indices_shape"),
        py::arg("check_indices"), py::arg("ws"), py::arg("ws_bytes"), py::arg("dx"),
        py::arg("stream"));
}

}  // namespace fastcnn::bind
