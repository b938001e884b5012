// cuda_args.h -- the CUDA binding's argument rules, shared by every file of fastcnn._cuda
// (module_cuda.cpp and the op families' cuda_<family>.cpp, each with a bind_<family>(module)).
//
// Arrays arrive as device pointers (Python ints) with their shapes (tuples of ints) and the
// stream to launch on; the adapter fastcnn._cuda_ops checks dtypes and allocates.
#pragma once
#include <pybind11/pybind11.h>

#include <cstdint>
#include <optional>

#include "common/args.h"
#include "common/check.h"
#include "cuda/launch.h"

namespace fastcnn::bind {

namespace py = pybind11;

using Ptr = uintptr_t;  // a device address as a Python int

inline Shape shape_of(const py::handle& obj, const char* op, const char* name) {
  if (!py::isinstance<py::sequence>(obj) || py::isinstance<py::str>(obj))
    throw py::type_error(cat(op, ": ", name, " must be a shape tuple of ints"));
  Shape s;
  for (const py::handle& d : py::reinterpret_borrow<py::sequence>(obj)) s.push_back(d.cast<int64_t>());
  return s;
}

inline std::optional<Shape> shape_opt(const py::handle& obj, const char* op, const char* name) {
  if (obj.is_none()) return std::nullopt;
  return shape_of(obj, op, name);
}

template <typename T>
inline T* dev(Ptr p) {
  return reinterpret_cast<T*>(p);
}

inline cuda::Stream stream_of(Ptr s) { return reinterpret_cast<cuda::Stream>(s); }

inline py::tuple to_tuple(const Shape& s) {
  py::tuple t(s.size());
  for (size_t i = 0; i < s.size(); ++i) t[i] = py::int_(s[i]);
  return t;
}

inline void check_workspace(int64_t have, int64_t need, const char* op) {
  FASTCNN_CHECK(have >= need, op, ": workspace of ", have, " elements is smaller than the ", need,
                " this problem needs (size it with the matching *_plan function)");
}

// The op families bound in their own files: csrc/bindings/cuda_<family>.cpp defines
// bind_<family>(m), declared here and called from module_cuda.cpp's PYBIND11_MODULE.
void bind_normalization(py::module_& m);  // cuda_normalization.cpp (batch_norm)
void bind_pooling(py::module_& m);  // cuda_pooling.cpp: avg and global pooling (issue 17)
void bind_activation(py::module_& m);  // cuda_activation.cpp (issue 17)
void bind_plans(py::module_& m);  // cuda_plans.cpp: launch plans (Conv2dPlan, ...; issue 14)

}  // namespace fastcnn::bind
