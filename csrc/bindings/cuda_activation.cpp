// cuda_activation.cpp -- fastcnn._cuda's activation family (issue 17): two launchers over device
// pointers, activation_forward / activation_backward, for op in sigmoid, tanh, leaky_relu, gelu,
// silu. The adapter fastcnn._cuda_ops checks dtypes, shapes and out= and allocates; the options
// (negative_slope, approximate) are checked here with the CPU binding's messages.
#include <pybind11/pybind11.h>

#include <string>

#include "bindings/cuda_args.h"
#include "common/args.h"
#include "common/check.h"
#include "cuda/launch.h"

namespace fastcnn::bind {
namespace {

std::string type_name(py::handle obj) {
  return py::str(py::type::handle_of(obj).attr("__name__")).cast<std::string>();
}

// the CPU binding's rule (cpu_activation.cpp): a real number, bools refused, used as float32
float as_slope(py::handle v, const char* op) {
  const py::module_ np = py::module_::import("numpy");
  const bool real = (PyFloat_Check(v.ptr()) || PyLong_Check(v.ptr()) ||
                     py::isinstance(v, np.attr("floating")) ||
                     py::isinstance(v, np.attr("integer"))) &&
                    !PyBool_Check(v.ptr());
  if (!real)
    throw py::type_error(cat(op, ": negative_slope must be a real number (a float such as 0.01), "
                             "got ", py::repr(v).cast<std::string>(), " (", type_name(v), ")"));
  return static_cast<float>(v.cast<double>());
}

cuda::ActOp act_op(const std::string& op, py::handle approximate, bool backward) {
  const char* name = backward ? "activation_backward" : "activation_forward";
  if (op == "sigmoid") return cuda::ActOp::sigmoid;
  if (op == "tanh") return cuda::ActOp::tanh;
  if (op == "leaky_relu") return cuda::ActOp::leaky_relu;
  if (op == "silu") return cuda::ActOp::silu;
  if (op == "gelu") {
    const char* gop = backward ? "gelu_backward" : "gelu";
    if (!py::isinstance<py::str>(approximate))
      throw py::type_error(cat(gop, ": approximate must be a str, 'none' or 'tanh', got ",
                               py::repr(approximate).cast<std::string>(), " (",
                               type_name(approximate), ")"));
    return check_gelu_approximate(approximate.cast<std::string>(), gop) ? cuda::ActOp::gelu_tanh
                                                                        : cuda::ActOp::gelu;
  }
  throw std::invalid_argument(cat(name, ": op must be one of sigmoid, tanh, leaky_relu, gelu, "
                                  "silu, got '", op, "'"));
}

void forward(const std::string& op, Ptr x, Ptr y, int64_t n, py::handle negative_slope,
             py::handle approximate, Ptr stream) {
  const cuda::ActOp a = act_op(op, approximate, false);
  const float s = a == cuda::ActOp::leaky_relu ? as_slope(negative_slope, "leaky_relu") : 0.0f;
  FASTCNN_CHECK(n >= 0, op, ": n must be >= 0, got ", n);
  py::gil_scoped_release nogil;
  cuda::activation_forward(a, dev<const float>(x), dev<float>(y), n, s, stream_of(stream));
}

void backward(const std::string& op, Ptr dy, Ptr t, Ptr dx, int64_t n, py::handle negative_slope,
              py::handle approximate, Ptr stream) {
  const cuda::ActOp a = act_op(op, approximate, true);
  const float s =
      a == cuda::ActOp::leaky_relu ? as_slope(negative_slope, "leaky_relu_backward") : 0.0f;
  FASTCNN_CHECK(n >= 0, op, "_backward: n must be >= 0, got ", n);
  py::gil_scoped_release nogil;
  cuda::activation_backward(a, dev<const float>(dy), dev<const float>(t), dev<float>(dx), n, s,
                            stream_of(stream));
}

}  // namespace

void bind_activation(py::module_& m) {
  m.def("activation_forward", &forward, py::arg("op"), py::arg("x"), py::arg("y"), py::arg("n"),
        py::arg("negative_slope") = 0.01, py::arg("approximate") = "none", py::arg("stream"),
        "y = op(x) over n floats (op: sigmoid, tanh, leaky_relu, gelu, silu).");
  m.def("activation_backward", &backward, py::arg("op"), py::arg("dy"), py::arg("t"),
        py::arg("dx"), py::arg("n"), py::arg("negative_slope") = 0.01,
        py::arg("approximate") = "none", py::arg("stream"),
        "dx = dy * op'(.) from t: the forward output (sigmoid, tanh) or input (the others).");
}

}  // namespace fastcnn::bind
