// cpu_normalization.cpp -- fastcnn._cpu's normalization family: batch_norm and
// batch_norm_backward (array rules of cpu_arrays.h; the checks are check_batch_norm_args /
// check_batch_norm_backward_args, shared with the CUDA binding; the GIL is released around the
// drivers of csrc/cpu/batch_norm.cpp).
// running_mean / running_var are updated in place in training, so there they must be
// C-contiguous, aligned, writeable float32 arrays (never copied); in inference any float32
// array is taken (copied once when strided). relu=True fuses a following ReLU into the forward
// (y = relu(bn(x))); the backward's relu_y (that y) masks dy inside its passes. out= / dx_out=:
// the caller's destination for y / dx (as_dest: must not overlap the inputs). batch_mean /
// batch_var: the batch's statistics given (float64, from conv2d_stats), training only.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <optional>
#include <string>

#include "bindings/cpu_arrays.h"
#include "common/args.h"
#include "cpu/ops.h"

namespace fastcnn::bind {
namespace {

std::optional<Shape> shape_opt(const std::optional<FArray>& a) {
  if (!a) return std::nullopt;
  return shape_of(*a);
}

const Shape* ptr(const std::optional<Shape>& s) { return s ? &*s : nullptr; }

template <typename A>
auto data_or_null(const std::optional<A>& a) -> decltype(a->data()) {
  return a ? a->data() : nullptr;
}

using DArray = py::array_t<double, py::array::c_style>;

// A given batch statistic (batch_norm's batch_mean / batch_var): a float64 (C,) numpy array
// (conv2d_stats' outputs), copied once when strided.
DArray as_stat(py::handle obj, const char* op, const char* name, int64_t C) {
  if (!py::isinstance<py::array>(obj))
    throw py::type_error(cat(op, ": ", name, " must be a numpy.ndarray of float64 (C,), got ",
                             type_name(obj)));
  auto a = py::reinterpret_borrow<py::array>(obj);
  if (!a.dtype().equal(py::dtype::of<double>()))
    throw py::type_error(cat(op, ": ", name, " has dtype ", py::str(a.dtype()).cast<std::string>(),
                             " but the given batch statistics are float64 (conv2d_stats' "
                             "outputs); convert it with ", name, ".astype(numpy.float64)"));
  FASTCNN_CHECK(a.ndim() == 1 && a.shape(0) == C, op, ": ", name, " has shape ",
                shape_str(shape_of(a)), " but x has ", C, " channels; expected (", C, ",)");
  return py::reinterpret_borrow<DArray>(contiguous(a));
}

py::tuple batch_norm(py::handle x_, py::handle weight_, py::handle bias_,
                     py::handle running_mean_, py::handle running_var_, bool training,
                     double momentum, double eps, bool relu, py::handle out_,
                     py::handle batch_mean_, py::handle batch_var_) {
  const char* op = "batch_norm";
  FArray x = as_float(x_, op, "x");
  auto w = as_float_opt(weight_, op, "weight"), b = as_float_opt(bias_, op, "bias");
  std::optional<FArray> rm, rv;
  if (training) {
    if (!running_mean_.is_none()) rm = inplace_float(running_mean_, op, "running_mean", -1);
    if (!running_var_.is_none()) rv = inplace_float(running_var_, op, "running_var", -1);
  } else {
    rm = as_float_opt(running_mean_, op, "running_mean");
    rv = as_float_opt(running_var_, op, "running_var");
  }
  const auto ws = shape_opt(w), bs = shape_opt(b), ms = shape_opt(rm), vs = shape_opt(rv);
  BatchNormParams p = check_batch_norm_args(shape_of(x), ptr(ws), ptr(bs), ptr(ms), ptr(vs),
                                            training, momentum, eps);
  p.relu = relu;
  FASTCNN_CHECK(!(training && rm && rv && rm->data() == rv->data()), op,
                ": running_mean and running_var are the same array; pass two arrays");
  std::optional<DArray> gm, gv;
  FASTCNN_CHECK(batch_mean_.is_none() == batch_var_.is_none(), op,
                ": batch_mean and batch_var go together; pass both or neither");
  if (!batch_mean_.is_none()) {
    FASTCNN_CHECK(training, op, ": batch_mean / batch_var (the batch's statistics) are for "
                  "training=True; inference normalises with the running statistics");
    gm = as_stat(batch_mean_, op, "batch_mean", p.C);
    gv = as_stat(batch_var_, op, "batch_var", p.C);
    const double* v = gv->data();
    for (int64_t c = 0; c < p.C; ++c)
      FASTCNN_CHECK(!(v[c] < 0.0), op, ": batch_var[", c, "] = ", v[c],
                    " is negative; a variance is >= 0 (or NaN)");
  }
  cpu::ConvBatchStats given;
  if (gm) given.mean = const_cast<double*>(gm->data()), given.var = const_cast<double*>(gv->data());
  FArray y = dest_or_new(out_, shape_of(x), op, "out", {{"x", &x}});
  FArray mean = new_float({p.C}), invstd = new_float({p.C});
  float* rm_p = training && rm ? rm->mutable_data() : nullptr;
  float* rv_p = training && rv ? rv->mutable_data() : nullptr;
  const float* rm_c = rm ? rm->data() : nullptr;
  const float* rv_c = rv ? rv->data() : nullptr;
  {
    py::gil_scoped_release nogil;
    cpu::batch_norm_forward(x.data(), data_or_null(w), data_or_null(b),
                            training ? rm_p : const_cast<float*>(rm_c),
                            training ? rv_p : const_cast<float*>(rv_c), y.mutable_data(),
                            mean.mutable_data(), invstd.mutable_data(), p,
                            gm ? &given : nullptr);
  }
  return py::make_tuple(y, mean, invstd);
}

py::tuple batch_norm_backward(py::handle dy_, py::handle x_, py::handle weight_,
                              py::handle mean_, py::handle invstd_, bool training,
                              bool compute_dx, bool compute_dw, py::handle relu_y_,
                              py::handle dx_out_) {
  const char* op = "batch_norm_backward";
  FArray dy = as_float(dy_, op, "dy"), x = as_float(x_, op, "x");
  auto w = as_float_opt(weight_, op, "weight");
  FArray mean = as_float(mean_, op, "mean"), invstd = as_float(invstd_, op, "invstd");
  const auto ws = shape_opt(w);
  BatchNormParams p = check_batch_norm_backward_args(shape_of(dy), shape_of(x), ptr(ws),
                                                     shape_of(mean), shape_of(invstd), training);
  std::optional<FArray> relu_y;
  if (!relu_y_.is_none()) {
    relu_y = as_float(relu_y_, op, "relu_y");
    same_shape(*relu_y, x, op, "relu_y", "x");
  }
  std::optional<FArray> dx, dw, db;
  if (compute_dx) {
    dx = relu_y ? dest_or_new(dx_out_, shape_of(x), op, "dx_out",
                              {{"dy", &dy}, {"x", &x}, {"relu_y", &*relu_y}})
                : dest_or_new(dx_out_, shape_of(x), op, "dx_out", {{"dy", &dy}, {"x", &x}});
  } else {
    FASTCNN_CHECK(dx_out_.is_none(), op, ": dx_out is given but compute_dx=False");
  }
  if (compute_dw) dw = new_float({p.C}), db = new_float({p.C});
  {
    py::gil_scoped_release nogil;
    cpu::batch_norm_backward(dy.data(), x.data(), data_or_null(w), mean.data(), invstd.data(),
                             dx ? dx->mutable_data() : nullptr, dw ? dw->mutable_data() : nullptr,
                             db ? db->mutable_data() : nullptr, p, data_or_null(relu_y));
  }
  auto obj = [](const std::optional<FArray>& a) -> py::object {
    return a ? py::object(*a) : py::object(py::none());
  };
  return py::make_tuple(obj(dx), obj(dw), obj(db));
}

}  // namespace

void bind_normalization(py::module_& m) {
  m.def("batch_norm", &batch_norm, py::arg("x"), py::arg("weight"), py::arg("bias"),
        py::arg("running_mean"), py::arg("running_var"), py::arg("training"),
        py::arg("momentum"), py::arg("eps"), py::arg("relu") = false,
        py::arg("out") = py::none(), py::arg("batch_mean") = py::none(),
        py::arg("batch_var") = py::none(),
        "(y, mean, invstd): batch normalisation of x (N, C[, L | H, W]) per channel (then "
        "ReLU with relu=True); in training the running statistics (when given) are updated in "
        "place; batch_mean / batch_var (float64 (C,), training): the batch's statistics "
        "already gathered (conv2d_stats), used instead of reducing x.");
  m.def("batch_norm_backward", &batch_norm_backward, py::arg("dy"), py::arg("x"),
        py::arg("weight"), py::arg("mean"), py::arg("invstd"), py::arg("training"),
        py::arg("compute_dx"), py::arg("compute_dw"), py::arg("relu_y") = py::none(),
        py::arg("dx_out") = py::none(),
        "(dx, dweight, dbias) of batch_norm (None where not computed); relu_y: the output of "
        "batch_norm(..., relu=True), dy then being that ReLU output's gradient.");
}

}  // namespace fastcnn::bind
