// cpu_activation.cpp -- fastcnn._cpu's activation family (issue 17): sigmoid, tanh, leaky_relu,
// gelu, silu and their backward. Array rules of cpu_arrays.h (float32 numpy arrays, copied once
// when not C-contiguous, `out=` used as it is, in place allowed); the kernels run without the GIL.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <string>

#include "bindings/cpu_arrays.h"
#include "common/args.h"
#include "common/check.h"
#include "cpu/ops.h"

namespace fastcnn::bind {
namespace {

using FwdOp = void (*)(const float*, float*, int64_t);
using BwdOp = void (*)(const float*, const float*, float*, int64_t);

// negative_slope: a Python / NumPy real number (bools refused), used as float32 (PyTorch)
float as_slope(py::handle v, const char* op) {
  const bool real = (PyFloat_Check(v.ptr()) || PyLong_Check(v.ptr()) ||
                     py::isinstance(v, py::module_::import("numpy").attr("floating")) ||
                     py::isinstance(v, py::module_::import("numpy").attr("integer"))) &&
                    !PyBool_Check(v.ptr());
  if (!real)
    throw py::type_error(cat(op, ": negative_slope must be a real number (a float such as 0.01), "
                             "got ", py::repr(v).cast<std::string>(), " (", type_name(v), ")"));
  return static_cast<float>(v.cast<double>());
}

bool as_approximate(py::handle v, const char* op) {
  if (!py::isinstance<py::str>(v))
    throw py::type_error(cat(op, ": approximate must be a str, 'none' or 'tanh', got ",
                             py::repr(v).cast<std::string>(), " (", type_name(v), ")"));
  return check_gelu_approximate(v.cast<std::string>(), op);
}

template <typename Run>
FArray forward(const char* op, py::handle x_, py::handle out_, Run run) {
  FArray x = as_float(x_, op, "x");
  FArray y = out_.is_none() ? new_float(shape_of(x)) : as_out(out_, shape_of(x), op, {{"x", &x}});
  {
    py::gil_scoped_release nogil;
    run(x.data(), y.mutable_data(), static_cast<int64_t>(x.size()));
  }
  return y;
}

// t: the forward tensor named `tname` (y for sigmoid / tanh, x for the others)
template <typename Run>
FArray backward(const char* op, const char* tname, py::handle dy_, py::handle t_,
                py::handle out_, Run run) {
  FArray dy = as_float(dy_, op, "dy"), t = as_float(t_, op, tname);
  check_activation_grad(shape_of(dy), shape_of(t), op, tname);
  FArray dx = out_.is_none() ? new_float(shape_of(dy))
                             : as_out(out_, shape_of(dy), op, {{"dy", &dy}, {tname, &t}});
  {
    py::gil_scoped_release nogil;
    run(dy.data(), t.data(), dx.mutable_data(), static_cast<int64_t>(dy.size()));
  }
  return dx;
}

void def_fwd(py::module_& m, const char* op, FwdOp f, const char* doc) {
  m.def(op, [op, f](py::handle x, py::handle out) { return forward(op, x, out, f); },
        py::arg("x"), py::arg("out") = py::none(), doc);
}

void def_bwd(py::module_& m, const char* op, const char* tname, BwdOp f, const char* doc) {
  m.def(op, [op, tname, f](py::handle dy, py::handle t, py::handle out) {
    return backward(op, tname, dy, t, out, f);
  }, py::arg("dy"), py::arg(tname), py::arg("out") = py::none(), doc);
}

}  // namespace

void bind_activation(py::module_& m) {
  def_fwd(m, "sigmoid", &cpu::sigmoid_forward, "y = 1 / (1 + exp(-x)), any shape.");
  def_bwd(m, "sigmoid_backward", "y", &cpu::sigmoid_backward,
          "dx = dy * (1 - y) * y from the forward output y.");
  def_fwd(m, "tanh", &cpu::tanh_forward, "y = tanh(x), any shape.");
  def_bwd(m, "tanh_backward", "y", &cpu::tanh_backward,
          "dx = dy * (1 - y * y) from the forward output y.");
  def_fwd(m, "silu", &cpu::silu_forward, "y = x * sigmoid(x), any shape.");
  def_bwd(m, "silu_backward", "x", &cpu::silu_backward,
          "dx = dy * s * (1 + x * (1 - s)), s = sigmoid(x), from the forward input x.");
  m.def("leaky_relu", [](py::handle x, py::handle slope, py::handle out) {
    const float s = as_slope(slope, "leaky_relu");
    return forward("leaky_relu", x, out, [s](const float* a, float* b, int64_t n) {
      cpu::leaky_relu_forward(a, b, n, s);
    });
  }, py::arg("x"), py::arg("negative_slope") = 0.01, py::arg("out") = py::none(),
        "y = x > 0 ? x : x * negative_slope.");
  m.def("leaky_relu_backward", [](py::handle dy, py::handle x, py::handle slope, py::handle out) {
    const float s = as_slope(slope, "leaky_relu_backward");
    return backward("leaky_relu_backward", "x", dy, x, out,
                    [s](const float* a, const float* b, float* c, int64_t n) {
                      cpu::leaky_relu_backward(a, b, c, n, s);
                    });
  }, py::arg("dy"), py::arg("x"), py::arg("negative_slope") = 0.01, py::arg("out") = py::none(),
        "dx = x > 0 ? dy : dy * negative_slope from the forward input x.");
  m.def("gelu", [](py::handle x, py::handle approximate, py::handle out) {
    const bool th = as_approximate(approximate, "gelu");
    return forward("gelu", x, out, [th](const float* a, float* b, int64_t n) {
      cpu::gelu_forward(a, b, n, th);
    });
  }, py::arg("x"), py::arg("approximate") = "none", py::arg("out") = py::none(),
        "y = x * Phi(x) (approximate='none') or its tanh form (approximate='tanh').");
  m.def("gelu_backward", [](py::handle dy, py::handle x, py::handle approximate, py::handle out) {
    const bool th = as_approximate(approximate, "gelu_backward");
    return backward("gelu_backward", "x", dy, x, out,
                    [th](const float* a, const float* b, float* c, int64_t n) {
                      cpu::gelu_backward(a, b, c, n, th);
                    });
  }, py::arg("dy"), py::arg("x"), py::arg("approximate") = "none", py::arg("out") = py::none(),
        "dx = dy * gelu'(x) from the forward input x.");
}

}  // namespace fastcnn::bind
