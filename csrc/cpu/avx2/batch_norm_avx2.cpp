// batch_norm_avx2.cpp -- batch normalisation's tile kernels, AVX2 + FMA (8 floats per ymm).
//   A tile: rows r < rows, each of `cols` contiguous floats at x + r*ld, <= kBnTileElems (4096)
//   floats = 16 KiB, so bn_stats' second pass re-reads it from L1 (memory sees one read).
//   bn_stats      pass 1: s = sum x (4 ymm lane accumulators, summed in double) -> m0 = s / n;
//                 pass 2: d = x - m0, sd += d, sq += d*d (lanes), then in double:
//                 mean = m0 + sd/n, m2 = sq - sd^2/n (the centred sum of squares: no
//                 E[x^2] - E[x]^2 cancellation; for x = 1000 + N(0,1), d ~ N(0,1)).
//   bn_col_stats  the same per column j < cols <= 512 (accumulators in stack arrays, L1), two
//                 rows a sweep (s += x0 + x1; sd += u0 + u1, sq: 2 FMAs): half the accumulator
//                 loads / stores, and two rows' streams in flight (measured 20-35 % faster out of
//                 cache than row by row; four rows no better).
//   bn_bwd_col_sums  the same, two rows a sweep (four rows' 8 streams: 15 % slower, measured).
//   bn_bwd_sums   sdy = sum dy, sdxm = sum dy*(x - m) (lanes, summed in double).
//   bn_apply      y = (x - m)*a + b;  bn_bwd_apply  dx = (dy - p)*s - (x - m)*q.
//   *_cols        the same with per-column m, a, b (p, s, q) arrays (the (N, C*S) layout with
//                 small S: columns are (channel, position) pairs, vectorised across channels).
// Tails: one maskload/maskstore for the last cols % 8 of each row (nothing outside the tile is
// read or written); masked-off lanes are zeroed before they enter a sum.
// Lane sums: fixed order (lane order of the 4 accumulators, then lanes 0..7 in double), so the
// same tile gives the same bits on every call.
// Napkin: per 8 floats pass 1 = 1 load + 1 add, pass 2 = 1 load + sub + add + fma; apply = 1 load
// + sub + fma + 1 store: ~1 cycle per 8 floats in L1, ~25 GB/s per core of x, well above the
// ~10-20 GB/s one core gets from DRAM: memory bound (2 reads + 1 write of x forward, 2x(dy, x)
// + dx backward).
#include <immintrin.h>

#include "cpu/kernels.h"

namespace fastcnn::cpu::avx2 {
namespace {

inline __m256i tail_mask(int64_t r) {  // lanes [0, r) all-ones, 0 <= r <= 8
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(r)),
                            _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

inline double hsum_d(__m256 v) {  // lanes 0..7 summed in double, in lane order
  alignas(32) float t[8];
  _mm256_store_ps(t, v);
  double s = 0.0;
  for (float f : t) s += f;
  return s;
}

inline __m256 sum4(__m256 a, __m256 b, __m256 c, __m256 d) {
  return _mm256_add_ps(_mm256_add_ps(a, b), _mm256_add_ps(c, d));
}

}  // namespace

void bn_stats(const float* x, int64_t rows, int64_t cols, int64_t ld, double* mean, double* m2) {
  const __m256 zero = _mm256_setzero_ps();
  const int64_t tail = cols % 8;
  const __m256i tm = tail_mask(tail);
  __m256 a0 = zero, a1 = zero, a2 = zero, a3 = zero;
  for (int64_t r = 0; r < rows; ++r) {
    const float* p = x + r * ld;
    int64_t j = 0;
    for (; j + 32 <= cols; j += 32) {
      a0 = _mm256_add_ps(a0, _mm256_loadu_ps(p + j));
      a1 = _mm256_add_ps(a1, _mm256_loadu_ps(p + j + 8));
      a2 = _mm256_add_ps(a2, _mm256_loadu_ps(p + j + 16));
      a3 = _mm256_add_ps(a3, _mm256_loadu_ps(p + j + 24));
    }
    for (; j + 8 <= cols; j += 8) a0 = _mm256_add_ps(a0, _mm256_loadu_ps(p + j));
    if (tail) a1 = _mm256_add_ps(a1, _mm256_maskload_ps(p + j, tm));
  }
  const double n = static_cast<double>(rows * cols);
  const float m0 = static_cast<float>(hsum_d(sum4(a0, a1, a2, a3)) / n);
  const __m256 vm = _mm256_set1_ps(m0);
  __m256 d0 = zero, d1 = zero, q0 = zero, q1 = zero;
  for (int64_t r = 0; r < rows; ++r) {
    const float* p = x + r * ld;
    int64_t j = 0;
    for (; j + 16 <= cols; j += 16) {
      const __m256 u = _mm256_sub_ps(_mm256_loadu_ps(p + j), vm);
      const __m256 v = _mm256_sub_ps(_mm256_loadu_ps(p + j + 8), vm);
      d0 = _mm256_add_ps(d0, u), q0 = _mm256_fmadd_ps(u, u, q0);
      d1 = _mm256_add_ps(d1, v), q1 = _mm256_fmadd_ps(v, v, q1);
    }
    for (; j + 8 <= cols; j += 8) {
      const __m256 u = _mm256_sub_ps(_mm256_loadu_ps(p + j), vm);
      d0 = _mm256_add_ps(d0, u), q0 = _mm256_fmadd_ps(u, u, q0);
    }
    if (tail) {
      const __m256 u = _mm256_and_ps(_mm256_sub_ps(_mm256_maskload_ps(p + j, tm), vm),
                                     _mm256_castsi256_ps(tm));
      d1 = _mm256_add_ps(d1, u), q1 = _mm256_fmadd_ps(u, u, q1);
    }
  }
  const double sd = hsum_d(_mm256_add_ps(d0, d1)), sq = hsum_d(_mm256_add_ps(q0, q1));
  *mean = m0 + sd / n;
  *m2 = sq - sd * sd / n;
}

void bn_col_stats(const float* x, int64_t rows, int64_t cols, int64_t ld, double* mean,
                  double* m2) {
  alignas(32) float s[kBnColTile], sd[kBnColTile], sq[kBnColTile];
  const int64_t full = cols & ~int64_t{7}, tail = cols - full;
  const __m256i tm = tail_mask(tail);
  const __m256 tmf = _mm256_castsi256_ps(tm);
  const int64_t padded = full + (tail ? 8 : 0);
  for (int64_t j = 0; j < padded; j += 8) {
    _mm256_store_ps(s + j, _mm256_setzero_ps());
    _mm256_store_ps(sd + j, _mm256_setzero_ps());
    _mm256_store_ps(sq + j, _mm256_setzero_ps());
  }
  // pass 1, 2 rows a sweep: s += x0 + x1 (4 rows: no faster, measured)
  auto sum2_at = [ld](const float* p, int64_t j, __m256i m, bool masked) {
    __m256 v[2];
    for (int k = 0; k < 2; ++k)
      v[k] = masked ? _mm256_maskload_ps(p + k * ld + j, m) : _mm256_loadu_ps(p + k * ld + j);
    return _mm256_add_ps(v[0], v[1]);
  };
  int64_t r = 0;
  for (; r + 2 <= rows; r += 2) {
    const float* p = x + r * ld;
    for (int64_t j = 0; j < full; j += 8)
      _mm256_store_ps(s + j, _mm256_add_ps(_mm256_load_ps(s + j), sum2_at(p, j, tm, false)));
    if (tail)
      _mm256_store_ps(s + full,
                      _mm256_add_ps(_mm256_load_ps(s + full), sum2_at(p, full, tm, true)));
  }
  for (; r < rows; ++r) {
    const float* p = x + r * ld;
    for (int64_t j = 0; j < full; j += 8)
      _mm256_store_ps(s + j, _mm256_add_ps(_mm256_load_ps(s + j), _mm256_loadu_ps(p + j)));
    if (tail)
      _mm256_store_ps(s + full,
                      _mm256_add_ps(_mm256_load_ps(s + full), _mm256_maskload_ps(p + full, tm)));
  }
  const float inv_n = 1.0f / static_cast<float>(rows);  // m0 is only a shift: any value works
  const __m256 vinv = _mm256_set1_ps(inv_n);
  for (int64_t j = 0; j < padded; j += 8)
    _mm256_store_ps(s + j, _mm256_mul_ps(_mm256_load_ps(s + j), vinv));  // s now holds m0
  // pass 2 (from L2), 2 rows a sweep: sd += u0 + u1, sq: 2 FMAs, u = x - m0
  auto centred2_at = [&](const float* p, int64_t j, bool masked) {
    const __m256 m0 = _mm256_load_ps(s + j);
    __m256 v[2];
    for (int k = 0; k < 2; ++k) {
      v[k] = _mm256_sub_ps(
          masked ? _mm256_maskload_ps(p + k * ld + j, tm) : _mm256_loadu_ps(p + k * ld + j), m0);
      if (masked) v[k] = _mm256_and_ps(v[k], tmf);
    }
    __m256 q = _mm256_load_ps(sq + j);
    for (int k = 0; k < 2; ++k) q = _mm256_fmadd_ps(v[k], v[k], q);
    const __m256 t = _mm256_add_ps(v[0], v[1]);
    _mm256_store_ps(sd + j, _mm256_add_ps(_mm256_load_ps(sd + j), t));
    _mm256_store_ps(sq + j, q);
  };
  for (r = 0; r + 2 <= rows; r += 2) {
    const float* p = x + r * ld;
    for (int64_t j = 0; j < full; j += 8) centred2_at(p, j, false);
    if (tail) centred2_at(p, full, true);
  }
  for (; r < rows; ++r) {
    const float* p = x + r * ld;
    for (int64_t j = 0; j < full; j += 8) {
      const __m256 u = _mm256_sub_ps(_mm256_loadu_ps(p + j), _mm256_load_ps(s + j));
      _mm256_store_ps(sd + j, _mm256_add_ps(_mm256_load_ps(sd + j), u));
      _mm256_store_ps(sq + j, _mm256_fmadd_ps(u, u, _mm256_load_ps(sq + j)));
    }
    if (tail) {
      const __m256 u = _mm256_and_ps(
          _mm256_sub_ps(_mm256_maskload_ps(p + full, tm), _mm256_load_ps(s + full)), tmf);
      _mm256_store_ps(sd + full, _mm256_add_ps(_mm256_load_ps(sd + full), u));
      _mm256_store_ps(sq + full, _mm256_fmadd_ps(u, u, _mm256_load_ps(sq + full)));
    }
  }
  const double n = static_cast<double>(rows);
  for (int64_t j = 0; j < cols; ++j) {
    const double d = sd[j];
    mean[j] = s[j] + d / n;
    m2[j] = sq[j] - d * d / n;
  }
}

void bn_bwd_sums(const float* dy, const float* x, int64_t rows, int64_t cols, int64_t ld, float m,
                 double* sdy, double* sdxm) {
  const __m256 zero = _mm256_setzero_ps(), vm = _mm256_set1_ps(m);
  const int64_t tail = cols % 8;
  const __m256i tm = tail_mask(tail);
  __m256 g0 = zero, g1 = zero, h0 = zero, h1 = zero;
  for (int64_t r = 0; r < rows; ++r) {
    const float* pg = dy + r * ld;
    const float* px = x + r * ld;
    int64_t j = 0;
    for (; j + 16 <= cols; j += 16) {
      const __m256 a = _mm256_loadu_ps(pg + j), b = _mm256_loadu_ps(pg + j + 8);
      g0 = _mm256_add_ps(g0, a), g1 = _mm256_add_ps(g1, b);
      h0 = _mm256_fmadd_ps(a, _mm256_sub_ps(_mm256_loadu_ps(px + j), vm), h0);
      h1 = _mm256_fmadd_ps(b, _mm256_sub_ps(_mm256_loadu_ps(px + j + 8), vm), h1);
    }
    for (; j + 8 <= cols; j += 8) {
      const __m256 a = _mm256_loadu_ps(pg + j);
      g0 = _mm256_add_ps(g0, a);
      h0 = _mm256_fmadd_ps(a, _mm256_sub_ps(_mm256_loadu_ps(px + j), vm), h0);
    }
    if (tail) {
      const __m256 a = _mm256_maskload_ps(pg + j, tm);
      const __m256 u = _mm256_and_ps(_mm256_sub_ps(_mm256_maskload_ps(px + j, tm), vm),
                                     _mm256_castsi256_ps(tm));
      g1 = _mm256_add_ps(g1, a), h1 = _mm256_fmadd_ps(a, u, h1);
    }
  }
  *sdy = hsum_d(_mm256_add_ps(g0, g1));
  *sdxm = hsum_d(_mm256_add_ps(h0, h1));
}

void bn_bwd_col_sums(const float* dy, const float* x, int64_t rows, int64_t cols, int64_t ld,
                     const float* m, double* sdy, double* sdxm) {
  alignas(32) float g[kBnColTile], h[kBnColTile];
  const int64_t full = cols & ~int64_t{7}, tail = cols - full;
  const __m256i tm = tail_mask(tail);
  const __m256 tmf = _mm256_castsi256_ps(tm);
  const int64_t padded = full + (tail ? 8 : 0);
  for (int64_t j = 0; j < padded; j += 8) {
    _mm256_store_ps(g + j, _mm256_setzero_ps());
    _mm256_store_ps(h + j, _mm256_setzero_ps());
  }
  // 2 rows a sweep (4 streams; 4 rows' 8 streams, 4 KiB-aliased when ld is a multiple of 1024,
  // measured 15 % slower): g += a0 + a1, h: 2 FMAs
  auto sums2_at = [&](const float* pg, const float* px, int64_t j, bool masked) {
    const __m256 mj = masked ? _mm256_maskload_ps(m + j, tm) : _mm256_loadu_ps(m + j);
    __m256 a[2], u[2];
    for (int k = 0; k < 2; ++k) {
      a[k] = masked ? _mm256_maskload_ps(pg + k * ld + j, tm) : _mm256_loadu_ps(pg + k * ld + j);
      u[k] = _mm256_sub_ps(
          masked ? _mm256_maskload_ps(px + k * ld + j, tm) : _mm256_loadu_ps(px + k * ld + j), mj);
      if (masked) u[k] = _mm256_and_ps(u[k], tmf);
    }
    const __m256 q =
        _mm256_fmadd_ps(a[1], u[1], _mm256_fmadd_ps(a[0], u[0], _mm256_load_ps(h + j)));
    _mm256_store_ps(g + j, _mm256_add_ps(_mm256_load_ps(g + j), _mm256_add_ps(a[0], a[1])));
    _mm256_store_ps(h + j, q);
  };
  int64_t r = 0;
  for (; r + 2 <= rows; r += 2) {
    const float* pg = dy + r * ld;
    const float* px = x + r * ld;
    for (int64_t j = 0; j < full; j += 8) sums2_at(pg, px, j, false);
    if (tail) sums2_at(pg, px, full, true);
  }
  for (; r < rows; ++r) {
    const float* pg = dy + r * ld;
    const float* px = x + r * ld;
    for (int64_t j = 0; j < full; j += 8) {
      const __m256 a = _mm256_loadu_ps(pg + j);
      const __m256 u = _mm256_sub_ps(_mm256_loadu_ps(px + j), _mm256_loadu_ps(m + j));
      _mm256_store_ps(g + j, _mm256_add_ps(_mm256_load_ps(g + j), a));
      _mm256_store_ps(h + j, _mm256_fmadd_ps(a, u, _mm256_load_ps(h + j)));
    }
    if (tail) {
      const __m256 a = _mm256_maskload_ps(pg + full, tm);
      const __m256 u = _mm256_and_ps(_mm256_sub_ps(_mm256_maskload_ps(px + full, tm),
                                                   _mm256_maskload_ps(m + full, tm)),
                                     tmf);
      _mm256_store_ps(g + full, _mm256_add_ps(_mm256_load_ps(g + full), a));
      _mm256_store_ps(h + full, _mm256_fmadd_ps(a, u, _mm256_load_ps(h + full)));
    }
  }
  for (int64_t j = 0; j < cols; ++j) sdy[j] = g[j], sdxm[j] = h[j];
}

void bn_apply(const float* x, float* y, int64_t rows, int64_t cols, int64_t ld, float m, float a,
              float b) {
  const __m256 vm = _mm256_set1_ps(m), va = _mm256_set1_ps(a), vb = _mm256_set1_ps(b);
  const int64_t tail = cols % 8;
  const __m256i tm = tail_mask(tail);
  for (int64_t r = 0; r < rows; ++r) {
    const float* p = x + r * ld;
    float* o = y + r * ld;
    int64_t j = 0;
    for (; j + 32 <= cols; j += 32)
      for (int k = 0; k < 32; k += 8)
        _mm256_storeu_ps(o + j + k,
                         _mm256_fmadd_ps(_mm256_sub_ps(_mm256_loadu_ps(p + j + k), vm), va, vb));
    for (; j + 8 <= cols; j += 8)
      _mm256_storeu_ps(o + j, _mm256_fmadd_ps(_mm256_sub_ps(_mm256_loadu_ps(p + j), vm), va, vb));
    if (tail)
      _mm256_maskstore_ps(
          o + j, tm, _mm256_fmadd_ps(_mm256_sub_ps(_mm256_maskload_ps(p + j, tm), vm), va, vb));
  }
}

void bn_apply_cols(const float* x, float* y, int64_t rows, int64_t cols, int64_t ld,
                   const float* m, const float* a, const float* b) {
  const int64_t full = cols & ~int64_t{7}, tail = cols - full;
  const __m256i tm = tail_mask(tail);
  for (int64_t r = 0; r < rows; ++r) {
    const float* p = x + r * ld;
    float* o = y + r * ld;
    for (int64_t j = 0; j < full; j += 8)
      _mm256_storeu_ps(o + j, _mm256_fmadd_ps(_mm256_sub_ps(_mm256_loadu_ps(p + j),
                                                            _mm256_loadu_ps(m + j)),
                                              _mm256_loadu_ps(a + j), _mm256_loadu_ps(b + j)));
    if (tail)
      _mm256_maskstore_ps(
          o + full, tm,
          _mm256_fmadd_ps(_mm256_sub_ps(_mm256_maskload_ps(p + full, tm),
                                        _mm256_maskload_ps(m + full, tm)),
                          _mm256_maskload_ps(a + full, tm), _mm256_maskload_ps(b + full, tm)));
  }
}

void bn_bwd_apply(const float* dy, const float* x, float* dx, int64_t rows, int64_t cols,
                  int64_t ld, float m, float p, float s, float q) {
  const __m256 vm = _mm256_set1_ps(m), vp = _mm256_set1_ps(p), vs = _mm256_set1_ps(s),
               vq = _mm256_set1_ps(q);
  const int64_t tail = cols % 8;
  const __m256i tm = tail_mask(tail);
  auto f = [&](__m256 g, __m256 v) {
    return _mm256_fmsub_ps(_mm256_sub_ps(g, vp), vs, _mm256_mul_ps(_mm256_sub_ps(v, vm), vq));
  };
  for (int64_t r = 0; r < rows; ++r) {
    const float* pg = dy + r * ld;
    const float* px = x + r * ld;
    float* o = dx + r * ld;
    int64_t j = 0;
    for (; j + 16 <= cols; j += 16) {
      const __m256 a = f(_mm256_loadu_ps(pg + j), _mm256_loadu_ps(px + j));
      const __m256 b = f(_mm256_loadu_ps(pg + j + 8), _mm256_loadu_ps(px + j + 8));
      _mm256_storeu_ps(o + j, a);
      _mm256_storeu_ps(o + j + 8, b);
    }
    for (; j + 8 <= cols; j += 8)
      _mm256_storeu_ps(o + j, f(_mm256_loadu_ps(pg + j), _mm256_loadu_ps(px + j)));
    if (tail)
      _mm256_maskstore_ps(o + j, tm,
                          f(_mm256_maskload_ps(pg + j, tm), _mm256_maskload_ps(px + j, tm)));
  }
}

void bn_bwd_apply_cols(const float* dy, const float* x, float* dx, int64_t rows, int64_t cols,
                       int64_t ld, const float* m, const float* p, const float* s,
                       const float* q) {
  const int64_t full = cols & ~int64_t{7}, tail = cols - full;
  const __m256i tm = tail_mask(tail);
  for (int64_t r = 0; r < rows; ++r) {
    const float* pg = dy + r * ld;
    const float* px = x + r * ld;
    float* o = dx + r * ld;
    for (int64_t j = 0; j < full; j += 8) {
      const __m256 g = _mm256_sub_ps(_mm256_loadu_ps(pg + j), _mm256_loadu_ps(p + j));
      const __m256 u = _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(px + j), _mm256_loadu_ps(m + j)),
                                     _mm256_loadu_ps(q + j));
      _mm256_storeu_ps(o + j, _mm256_fmsub_ps(g, _mm256_loadu_ps(s + j), u));
    }
    if (tail) {
      const __m256 g = _mm256_sub_ps(_mm256_maskload_ps(pg + full, tm),
                                     _mm256_maskload_ps(p + full, tm));
      const __m256 u = _mm256_mul_ps(_mm256_sub_ps(_mm256_maskload_ps(px + full, tm),
                                                   _mm256_maskload_ps(m + full, tm)),
                                     _mm256_maskload_ps(q + full, tm));
      _mm256_maskstore_ps(o + full, tm, _mm256_fmsub_ps(g, _mm256_maskload_ps(s + full, tm), u));
    }
  }
}

}  // namespace fastcnn::cpu::avx2
