// maxpool2d_scatter.h -- max pooling's backward on one plane as a scalar scatter-add: the generic
// ISA's kernel and every ISA's fallback. Included INSIDE an anonymous namespace (generic/
// maxpool2d.cpp, and maxpool2d_impl.h in the ISA files), so each file keeps its own internal copy
// (no weak symbol shared between ISA and baseline code); the includer includes <cstring>.
// Backward: memset + a scalar scatter-add in order (overlapping windows collide). Returns
// whether every index was inside the plane.
inline bool maxpool2d_bwd_scatter(const float* dy, const int64_t* idx, float* dx, int64_t HW,
                                  int64_t PQ) {
  if (HW > 0) std::memset(dx, 0, static_cast<size_t>(HW) * sizeof(float));
  const uint64_t hw = static_cast<uint64_t>(HW);
  bool ok = true;
  for (int64_t i = 0; i < PQ; ++i) {  // in order: overlapping windows repeat a j
    const int64_t j = idx[i];
    if (static_cast<uint64_t>(j) < hw) {
      dx[j] += dy[i];
    } else {
      ok = false;  // -1 (empty window) and junk skipped
    }
  }
  return ok;
}
