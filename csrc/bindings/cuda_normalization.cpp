// cuda_normalization.cpp -- fastcnn._cuda's normalization family: batch_norm_plan /
// batch_norm_forward and batch_norm_backward_plan / batch_norm_backward (device pointers as
// ints, shapes as tuples, CuPy's stream; the adapter fastcnn._cuda_ops allocates the outputs and
// the workspace). The checks are the CPU binding's (check_batch_norm_args /
// check_batch_norm_backward_args), so the messages are the same. relu / relu_y: the fused ReLU
// (cpu_normalization.cpp).
#include <pybind11/pybind11.h>

#include <optional>

#include "bindings/cuda_args.h"

namespace fastcnn::bind {
namespace {

const Shape* ptr(const std::optional<Shape>& s) { return s ? &*s : nullptr; }

BatchNormParams forward_params(py::handle x_shape, py::handle weight_shape, py::handle bias_shape,
                               py::handle running_mean_shape, py::handle running_var_shape,
                               bool training, double momentum, double eps) {
  const char* op = "batch_norm";
  const auto ws = shape_opt(weight_shape, op, "weight_shape");
  const auto bs = shape_opt(bias_shape, op, "bias_shape");
  const auto ms = shape_opt(running_mean_shape, op, "running_mean_shape");
  const auto vs = shape_opt(running_var_shape, op, "running_var_shape");
  return check_batch_norm_args(shape_of(x_shape, op, "x_shape"), ptr(ws), ptr(bs), ptr(ms),
                               ptr(vs), training, momentum, eps);
}

BatchNormParams backward_params(py::handle dy_shape, py::handle x_shape, py::handle weight_shape,
                                py::handle mean_shape, py::handle invstd_shape, bool training) {
  const char* op = "batch_norm_backward";
  const auto ws = shape_opt(weight_shape, op, "weight_shape");
  return check_batch_norm_backward_args(shape_of(dy_shape, op, "dy_shape"),
                                        shape_of(x_shape, op, "x_shape"), ptr(ws),
                                        shape_of(mean_shape, op, "mean_shape"),
                                        shape_of(invstd_shape, op, "invstd_shape"), training);
}

void check_ws_bytes(int64_t have, int64_t need, const char* op) {
  FASTCNN_CHECK(have >= need, op, ": workspace of ", have, " bytes is smaller than the ", need,
                " this problem needs (size it with the matching *_plan function)");
}

void batch_norm_forward(Ptr x, py::handle x_shape, Ptr weight, py::handle weight_shape, Ptr bias,
                        py::handle bias_shape, Ptr running_mean, py::handle running_mean_shape,
                        Ptr running_var, py::handle running_var_shape, Ptr y, Ptr mean,
                        Ptr invstd, Ptr ws, int64_t ws_bytes, bool training, double momentum,
                        double eps, bool relu, Ptr stream) {
  BatchNormParams p = forward_params(x_shape, weight_shape, bias_shape, running_mean_shape,
                                     running_var_shape, training, momentum, eps);
  p.relu = relu;
  check_ws_bytes(ws_bytes, cuda::batch_norm_workspace(p), "batch_norm");
  py::gil_scoped_release nogil;
  cuda::batch_norm_forward(dev<const float>(x), dev<const float>(weight), dev<const float>(bias),
                           dev<float>(running_mean), dev<float>(running_var), dev<float>(y),
                           dev<float>(mean), dev<float>(invstd), dev<void>(ws), p,
                           stream_of(stream));
}

void batch_norm_backward(Ptr dy, py::handle dy_shape, Ptr x, py::handle x_shape, Ptr weight,
                         py::handle weight_shape, Ptr mean, py::handle mean_shape, Ptr invstd,
                         py::handle invstd_shape, Ptr relu_y, py::handle relu_y_shape, Ptr dx,
                         Ptr dweight, Ptr dbias, Ptr ws, int64_t ws_bytes, bool training,
                         Ptr stream) {
  const char* op = "batch_norm_backward";
  const BatchNormParams p =
      backward_params(dy_shape, x_shape, weight_shape, mean_shape, invstd_shape, training);
  if (const auto rs = shape_opt(relu_y_shape, op, "relu_y_shape")) {
    const Shape xs = shape_of(x_shape, op, "x_shape");
    FASTCNN_CHECK(*rs == xs, op, ": relu_y has shape ", shape_str(*rs), " but x has shape ",
                  shape_str(xs), ": expected the same shape");
  }
  check_ws_bytes(ws_bytes, cuda::batch_norm_workspace(p), "batch_norm_backward");
  py::gil_scoped_release nogil;
  cuda::batch_norm_backward(dev<const float>(dy), dev<const float>(x), dev<const float>(weight),
                            dev<const float>(mean), dev<const float>(invstd), dev<float>(dx),
                            dev<float>(dweight), dev<float>(dbias), dev<void>(ws), p,
                            stream_of(stream), dev<const float>(relu_y));
}

}  // namespace

void bind_normalization(py::module_& m) {
  m.def("batch_norm_plan",
        [](py::handle x_shape, py::handle weight_shape, py::handle bias_shape,
           py::handle running_mean_shape, py::handle running_var_shape, bool training,
           double momentum, double eps) {
          return cuda::batch_norm_workspace(forward_params(x_shape, weight_shape, bias_shape,
                                                           running_mean_shape, running_var_shape,
                                                           training, momentum, eps));
        },
        py::arg("x_shape"), py::arg("weight_shape"), py::arg("bias_shape"),
        py::arg("running_mean_shape"), py::arg("running_var_shape"), py::arg("training"),
        py::arg("momentum"), py::arg("eps"),
        "Validate a batch_norm; the workspace size in bytes.");
  m.def("batch_norm_backward_plan",
        [](py::handle dy_shape, py::handle x_shape, py::handle weight_shape,
           py::handle mean_shape, py::handle invstd_shape, bool training) {
          return cuda::batch_norm_workspace(
              backward_params(dy_shape, x_shape, weight_shape, mean_shape, invstd_shape, training));
        },
        py::arg("dy_shape"), py::arg("x_shape"), py::arg("weight_shape"), py::arg("mean_shape"),
        py::arg("invstd_shape"), py::arg("training"),
        "Validate a batch_norm_backward; the workspace size in bytes.");
  m.def("batch_norm_forward", &batch_norm_forward, py::arg("x"), py::arg("x_shape"),
        py::arg("weight"), py::arg("weight_shape"), py::arg("bias"), py::arg("bias_shape"),
        py::arg("running_mean"), py::arg("running_mean_shape"), py::arg("running_var"),
        py::arg("running_var_shape"), py::arg("y"), py::arg("mean"), py::arg("invstd"),
        py::arg("ws"), py::arg("ws_bytes"), py::arg("training"), py::arg("momentum"),
        py::arg("eps"), py::arg("relu"), py::arg("stream"));
  m.def("batch_norm_backward", &batch_norm_backward, py::arg("dy"), py::arg("dy_shape"),
        py::arg("x"), py::arg("x_shape"), py::arg("weight"), py::arg("weight_shape"),
        py::arg("mean"), py::arg("mean_shape"), py::arg("invstd"), py::arg("invstd_shape"),
        py::arg("relu_y"), py::arg("relu_y_shape"), py::arg("dx"), py::arg("dweight"), py::arg("dbias"), py::arg("ws"), py::arg("ws_bytes"),
        py::arg("training"), py::arg("stream"));
}

}  // namespace fastcnn::bind
