// global_pool2d_impl.h -- the ISA-neutral body of the global pools, included INSIDE the anonymous
// namespace of avx2/global_pool2d_avx2.cpp and avx512/global_pool2d_avx512.cpp after each defines
// its vector traits `struct V` (own internal copy per file, as maxpool2d_impl.h). V provides, for
// kW float lanes (F), kW int32 lanes (I) and a lane mask (M):
//   F zero(); F set1(float); F add(F, F); F load(const float*);
//   F load_n(const float* p, int64_t n, F fill);   lanes [0, n) = p[lane], others fill
//   void store(float*, F); void store_n(float*, F, int64_t n);
//   float fold32(const F* acc);                    the fixed tree below over kA = 32 / kW vectors
//   M take(F v, F best);                           v > best || isnan(v)
//   F blend(F a, F b, M m); I blendi(I a, I b, M m);   b where m
//   I iota(); I set1i(int); I addi(I, I);
//   bool any_nan(F); float hmax(F);                (hmax: no NaN lanes)
//   int hmin_where_eq(F best, I idx, float m);     min idx over lanes with best == m (INT_MAX: none)
//   void spill(F, float*); void spilli(I, int*);
// The includer includes <climits>, <cstdint>, <cstring>; no std:: calls here.
//
// global_avg: the plane's sum in one fixed order, the same on every ISA (and in the reference):
// 32 lane sums s[l] = 0 + x[l] + x[l+32] + ... (kA vectors of kW lanes, the tail loaded with
// zeros, which never change a sum that starts at +0), folded s[l] + s[l+16], + 8, + 4, + 2, + 1;
// then y = sum / float(H*W). global_max: 2 vectors of kW lanes, each lane keeps max_pool2d's rule
// (`v > best || isnan(v)`: first maximum, last NaN) with its int32 index (lanes start at -inf
// with index INT_MAX); the lanes are merged as the sequential loop would choose (a NaN lane: the
// largest index among NaN lanes; else the smallest index holding the maximum; none above -inf:
// index 0). Planes of H*W >= 2^31 - 64 take the scalar loop.

constexpr int kA = 32 / V::kW;  // accumulators of the sum

inline float gavg_plane(const float* x, int64_t n) {
  typename V::F acc[kA];
  for (int k = 0; k < kA; ++k) acc[k] = V::zero();
  int64_t i = 0;
  for (; i + 32 <= n; i += 32)
    for (int k = 0; k < kA; ++k) acc[k] = V::add(acc[k], V::load(x + i + k * V::kW));
  if (i < n) {
    for (int k = 0; k < kA; ++k) {
      const int64_t left = n - i - k * V::kW;
      if (left > 0)
        acc[k] = V::add(acc[k], V::load_n(x + i + k * V::kW, left < V::kW ? left : V::kW,
                                          V::zero()));
    }
  }
  return V::fold32(acc) / static_cast<float>(n);
}

inline void gavg_fwd_impl(const float* x, float* y, int64_t planes, int64_t HW) {
  for (int64_t pl = 0; pl < planes; ++pl) y[pl] = gavg_plane(x + pl * HW, HW);
}

inline void gavg_bwd_impl(const float* dy, float* dx, int64_t planes, int64_t HW) {
  const float hw = static_cast<float>(HW);
  for (int64_t pl = 0; pl < planes; ++pl) {
    const typename V::F v = V::set1(dy[pl] / hw);
    float* d = dx + pl * HW;
    int64_t i = 0;
    for (; i + V::kW <= HW; i += V::kW) V::store(d + i, v);
    if (i < HW) V::store_n(d + i, v, HW - i);
  }
}

// The scalar rule (max_pool2d's loop over one plane).
inline int64_t gmax_scalar(const float* x, int64_t n) {
  float best = -__builtin_inff();
  int64_t bi = 0;
  for (int64_t i = 0; i < n; ++i) {
    const float v = x[i];
    if (v > best || v != v) {
      best = v;
      bi = i;
    }
  }
  return bi;
}

inline int64_t gmax_plane(const float* x, int64_t n) {
  constexpr int64_t L = V::kW;
  const typename V::F ninf = V::set1(-__builtin_inff());
  typename V::F best[2] = {ninf, ninf};
  typename V::I bi[2] = {V::set1i(INT_MAX), V::set1i(INT_MAX)};
  typename V::I cur[2] = {V::iota(), V::addi(V::iota(), V::set1i(static_cast<int>(L)))};
  const typename V::I step = V::set1i(static_cast<int>(2 * L));
  int64_t i = 0;
  for (; i + 2 * L <= n; i += 2 * L) {
    for (int u = 0; u < 2; ++u) {
      const typename V::F v = V::load(x + i + u * L);
      const typename V::M m = V::take(v, best[u]);
      best[u] = V::blend(best[u], v, m);
      bi[u] = V::blendi(bi[u], cur[u], m);
      cur[u] = V::addi(cur[u], step);
    }
  }
  for (int u = 0; u < 2 && i < n; ++u) {
    const int64_t left = n - i - u * L;
    if (left <= 0) break;
    const typename V::F v = V::load_n(x + i + u * L, left < L ? left : L, ninf);
    const typename V::M m = V::take(v, best[u]);  // -inf fill lanes are never taken
    best[u] = V::blend(best[u], v, m);
    bi[u] = V::blendi(bi[u], cur[u], m);
  }
  if (V::any_nan(best[0]) || V::any_nan(best[1])) {  // the last NaN: the largest NaN index
    float bv[2 * L];
    int bix[2 * L];
    V::spill(best[0], bv), V::spill(best[1], bv + L);
    V::spilli(bi[0], bix), V::spilli(bi[1], bix + L);
    int64_t r = -1;
    for (int64_t l = 0; l < 2 * L; ++l)
      if (bv[l] != bv[l] && bix[l] > r) r = bix[l];
    return r;
  }
  const float m = V::hmax(V::blend(best[0], best[1], V::take(best[1], best[0])));
  const int a = V::hmin_where_eq(best[0], bi[0], m), b = V::hmin_where_eq(best[1], bi[1], m);
  const int r = a < b ? a : b;
  return r == INT_MAX ? 0 : r;
}

inline void gmax_fwd_impl(const float* x, float* y, int64_t* idx, int64_t planes, int64_t HW) {
  const bool vec = HW < INT_MAX - 64;
  for (int64_t pl = 0; pl < planes; ++pl) {
    const float* xp = x + pl * HW;
    const int64_t j = vec ? gmax_plane(xp, HW) : gmax_scalar(xp, HW);
    y[pl] = xp[j];
    if (idx) idx[pl] = j;
  }
}

inline bool gmax_bwd_impl(const float* dy, const int64_t* idx, float* dx, int64_t planes,
                          int64_t HW) {
  bool ok = true;
  const typename V::F z = V::zero();
  for (int64_t pl = 0; pl < planes; ++pl) {
    float* d = dx + pl * HW;
    int64_t i = 0;
    for (; i + V::kW <= HW; i += V::kW) V::store(d + i, z);
    if (i < HW) V::store_n(d + i, z, HW - i);
    const int64_t j = idx[pl];
    if (static_cast<uint64_t>(j) < static_cast<uint64_t>(HW)) {
      d[j] = 0.0f + dy[pl];
    } else {
      ok = false;
    }
  }
  return ok;
}
