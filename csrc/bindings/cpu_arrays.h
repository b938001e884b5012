// cpu_arrays.h -- the CPU binding's array rules, shared by every file of fastcnn._cpu
// (module_cpu.cpp and the op families' cpu_<family>.cpp, each with a bind_<family>(module)).
//
// Array arguments must be numpy.ndarray of dtype float32 (class labels: any integer dtype;
// pooling indices: int64); anything else is a TypeError naming the argument and the
// conversion. Arrays that are not C-contiguous and aligned are copied once; outputs are fresh
// C-contiguous arrays, except an `out=` / `dx_out=` array (as_dest: used as it is, never
// copied; fastcnn's layers pass their reused buffers this way, python/fastcnn/_workspace.py).
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <initializer_list>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "common/args.h"
#include "common/check.h"

namespace fastcnn::bind {

namespace py = pybind11;

using FArray = py::array_t<float, py::array::c_style>;
using IArray = py::array_t<int64_t, py::array::c_style>;

inline std::string type_name(py::handle obj) {
  return py::str(py::type::handle_of(obj).attr("__name__")).cast<std::string>();
}

inline py::array contiguous(py::array a) {
  const int flags = a.flags();
  const bool ok = (flags & py::detail::npy_api::NPY_ARRAY_C_CONTIGUOUS_) &&
                  (flags & py::detail::npy_api::NPY_ARRAY_ALIGNED_);
  if (ok) return a;
  return a.attr("copy")("C");
}

inline FArray as_float(py::handle obj, const char* op, const char* name) {
  if (!py::isinstance<py::array>(obj)) {
    throw py::type_error(cat(op, ": ", name, " must be a numpy.ndarray of float32, got ",
                             type_name(obj)));
  }
  auto a = py::reinterpret_borrow<py::array>(obj);
  if (!a.dtype().equal(py::dtype::of<float>())) {
    throw py::type_error(cat(op, ": ", name, " has dtype ", py::str(a.dtype()).cast<std::string>(),
                             " but fastcnn computes in float32 only; convert it with ", name,
                             ".astype(numpy.float32)"));
  }
  return py::reinterpret_borrow<FArray>(contiguous(a));
}

inline std::optional<FArray> as_float_opt(py::handle obj, const char* op, const char* name) {
  if (obj.is_none()) return std::nullopt;
  return as_float(obj, op, name);
}

inline Shape shape_of(const py::array& a) { return Shape(a.shape(), a.shape() + a.ndim()); }

inline FArray new_float(const Shape& shape) { return FArray(std::vector<py::ssize_t>(shape.begin(), shape.end())); }

// A destination array given by the caller as argument `name` (`out=`, `dx_out=`): a writeable,
// C-contiguous, aligned float32 numpy.ndarray of `shape`, used as it is (never copied): the op
// writes every element, so its old contents never matter. With `in_place_ok` it may be one of
// `inputs` itself (in place: the elementwise kernels read each element before writing it; max
// pooling's backward reads x only before writing) but must not overlap one partially; without
// it (convolutions, GEMMs, batch norm: several passes over the inputs) it must not overlap any.
inline FArray as_dest(py::handle obj, const Shape& shape, const char* op, const char* name,
                      std::initializer_list<std::pair<const char*, const py::array*>> inputs,
                      bool in_place_ok) {
  if (!py::isinstance<py::array>(obj)) {
    throw py::type_error(cat(op, ": ", name, " must be a numpy.ndarray of float32, got ",
                             type_name(obj)));
  }
  auto a = py::reinterpret_borrow<py::array>(obj);
  if (!a.dtype().equal(py::dtype::of<float>())) {
    throw py::type_error(cat(op, ": ", name, " has dtype ",
                             py::str(a.dtype()).cast<std::string>(), "; expected float32"));
  }
  FASTCNN_CHECK(shape_of(a) == shape, op, ": ", name, " has shape ", shape_str(shape_of(a)),
                " but the result has shape ", shape_str(shape));
  const int flags = a.flags();
  FASTCNN_CHECK((flags & py::detail::npy_api::NPY_ARRAY_C_CONTIGUOUS_) &&
                    (flags & py::detail::npy_api::NPY_ARRAY_ALIGNED_),
                op, ": ", name, " must be C-contiguous and aligned (it is written in place), ",
                "got strides ", shape_str(Shape(a.strides(), a.strides() + a.ndim())));
  FASTCNN_CHECK(flags & py::detail::npy_api::NPY_ARRAY_WRITEABLE_, op, ": ", name,
                " is read-only");
  const auto lo = reinterpret_cast<uintptr_t>(a.data());
  const auto hi = lo + static_cast<uintptr_t>(a.nbytes());
  for (const auto& [in_name, in] : inputs) {
    const auto ilo = reinterpret_cast<uintptr_t>(in->data());
    const auto ihi = ilo + static_cast<uintptr_t>(in->nbytes());
    const bool apart = ihi <= lo || hi <= ilo || lo == hi || ilo == ihi;
    if (in_place_ok) {
      const bool same = ilo == lo && ihi == hi;
      FASTCNN_CHECK(same || apart, op, ": ", name, " overlaps ", in_name,
                    " without being the same array; pass ", in_name,
                    " itself (in place) or a separate array");
    } else {
      FASTCNN_CHECK(apart, op, ": ", name, " overlaps ", in_name, "; pass a separate array ",
                    "(this op reads ", in_name, " while it writes ", name, ")");
    }
  }
  return py::reinterpret_borrow<FArray>(a);
}

// An `out=` destination of an elementwise op (as_dest with in-place use allowed).
inline FArray as_out(py::handle obj, const Shape& shape, const char* op,
              std::initializer_list<std::pair<const char*, const py::array*>> inputs) {
  return as_dest(obj, shape, op, "out", inputs, true);
}

// A fresh array of `shape`, or the caller's destination `obj` (argument `name`; see as_dest,
// without in-place use) when it is not None.
inline FArray dest_or_new(py::handle obj, const Shape& shape, const char* op, const char* name,
                          std::initializer_list<std::pair<const char*, const py::array*>> inputs) {
  return obj.is_none() ? new_float(shape) : as_dest(obj, shape, op, name, inputs, false);
}

// Pooling indices from the user (argument `name`): an int64 numpy.ndarray of dy's shape, made
// contiguous (their values are checked by the caller).
inline IArray as_indices(py::handle obj, const Shape& dy, const char* op, const char* name) {
  if (!py::isinstance<py::array>(obj))
    throw py::type_error(cat(op, ": ", name, " must be a numpy.ndarray of int64, got ",
                             type_name(obj)));
  auto a = py::reinterpret_borrow<py::array>(obj);
  if (!a.dtype().equal(py::dtype::of<int64_t>()))
    throw py::type_error(cat(op, ": ", name, " has dtype ", py::str(a.dtype()).cast<std::string>(),
                             "; expected int64 as returned by max_pool2d(..., return_indices=True)"));
  check_indices_shape(shape_of(a), dy, op, name);
  return py::reinterpret_borrow<IArray>(contiguous(a));
}

inline void same_shape(const py::array& a, const py::array& b, const char* op, const char* an,
                const char* bn) {
  FASTCNN_CHECK(shape_of(a) == shape_of(b), op, ": ", an, " has shape ", shape_str(shape_of(a)),
                " but ", bn, " has shape ", shape_str(shape_of(b)), ": expected the same shape");
}


// A float32 array updated in place: C-contiguous, aligned, writeable, `n` elements (n < 0: any).
inline FArray inplace_float(py::handle obj, const char* op, const char* name, int64_t n) {
  FArray a = as_float(obj, op, name);
  FASTCNN_CHECK(a.ptr() == obj.ptr(), op, ": ", name,
                " must be C-contiguous and aligned (it is updated in place)");
  FASTCNN_CHECK(a.writeable(), op, ": ", name, " is read-only (it is updated in place)");
  FASTCNN_CHECK(n < 0 || a.size() == n, op, ": ", name, " has ", a.size(), " elements but p has ",
                n);
  return a;
}

// The op families bound in their own files: csrc/bindings/cpu_<family>.cpp defines
// bind_<family>(m), declared here and called from module_cpu.cpp's PYBIND11_MODULE.
void bind_normalization(py::module_& m);  // cpu_normalization.cpp (batch_norm)
void bind_pooling(py::module_& m);  // cpu_pooling.cpp: avg and global pooling (issue 17)
void bind_activation(py::module_& m);  // cpu_activation.cpp (issue 17)

}  // namespace fastcnn::bind
