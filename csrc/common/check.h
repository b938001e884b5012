// check.h -- one way to report a user error from C++: FASTCNN_CHECK(cond, msg...) throws
// std::invalid_argument (ValueError in Python) with the pieces of msg streamed together.
// Never used inside an OpenMP region (an exception escaping one aborts the process).
#pragma once
#include <sstream>
#include <stdexcept>
#include <string>
#include <cstdint>
#include <vector>

namespace fastcnn {

using Shape = std::vector<int64_t>;  // an array's shape (the bindings' view of it)

template <typename... Args>
std::string cat(const Args&... args) {
  std::ostringstream os;
  (os << ... << args);
  return os.str();
}

inline std::string shape_str(const Shape& s) {
  std::ostringstream os;
  os << "(";
  for (size_t i = 0; i < s.size(); ++i) os << (i ? ", " : "") << s[i];
  if (s.size() == 1) os << ",";
  os << ")";
  return os.str();
}

// a * b with overflow and a sanity cap (2^62); throws ValueError naming what was being sized.
inline int64_t checked_mul(int64_t a, int64_t b, const char* what) {
  int64_t r;
  if (a < 0 || b < 0 || __builtin_mul_overflow(a, b, &r) || r > (int64_t{1} << 62))
    throw std::invalid_argument(cat(what, ": size ", a, " x ", b, " is too large"));
  return r;
}

inline int64_t checked_numel(const Shape& shape, const char* what) {
  int64_t n = 1;
  for (int64_t d : shape) n = checked_mul(n, d, what);
  return n;
}

}  // namespace fastcnn

#define FASTCNN_CHECK(cond, ...)                                        \
  do {                                                                  \
    if (!(cond)) throw std::invalid_argument(::fastcnn::cat(__VA_ARGS__)); \
  } while (0)
