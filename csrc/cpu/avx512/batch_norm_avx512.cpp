// batch_norm_avx512.cpp -- batch normalisation's tile kernels, AVX-512F (16 floats per zmm).
//   The AVX2 file's algorithm (see avx2/batch_norm_avx2.cpp for the maths), 16 lanes wide:
//   A tile: rows r < rows, each of `cols` contiguous floats at x + r*ld, <= kBnTileElems (4096)
//   floats = 16 KiB, so bn_stats' second pass re-reads it from L1 (memory sees one read).
//   bn_stats      pass 1: s = sum x (lanes, summed in double) -> m0 = s / n; pass 2: d = x - m0,
//                 sd += d, sq += d*d; mean = m0 + sd/n, m2 = sq - sd^2/n (double).
//   bn_col_stats  the same per column j < cols <= 512 (accumulators in stack arrays, L1).
//   bn_bwd_sums   sdy = sum dy, sdxm = sum dy*(x - m).
//   bn_apply      y = (x - m)*a + b;  bn_bwd_apply  dx = (dy - p)*s - (x - m)*q;  *_cols: per
//                 column m, a, b (p, s, q) arrays.
// Tails: k-masks on the last cols % 16 of each row (masked-off lanes are neither read nor
// written; maskz loads give 0 and the centred values are re-masked before they enter a sum).
// Lane sums: fixed order (accumulators, then lanes 0..15 in double): deterministic.
// Napkin: ~1 cycle per 16 floats in L1 per pass: far above one core's DRAM share: memory bound.
#include "cpu/avx512/intrin.h"

#include "cpu/kernels.h"

namespace fastcnn::cpu::avx512 {
namespace {

inline __mmask16 tail_mask(int64_t r) {  // 0 <= r < 16
  return static_cast<__mmask16>((1u << r) - 1u);
}

inline double hsum_d(__m512 v) {  // lanes 0..15 summed in double, in lane order
  alignas(64) float t[16];
  _mm512_store_ps(t, v);
  double s = 0.0;
  for (float f : t) s += f;
  return s;
}

}  // namespace

void bn_stats(const float* x, int64_t rows, int64_t cols, int64_t ld, double* mean, double* m2) {
  const __m512 zero = _mm512_setzero_ps();
  const int64_t tail = cols % 16;
  const __mmask16 tm = tail_mask(tail);
  __m512 a0 = zero, a1 = zero, a2 = zero, a3 = zero;
  for (int64_t r = 0; r < rows; ++r) {
    const float* p = x + r * ld;
    int64_t j = 0;
    for (; j + 64 <= cols; j += 64) {
      a0 = _mm512_add_ps(a0, _mm512_loadu_ps(p + j));
      a1 = _mm512_add_ps(a1, _mm512_loadu_ps(p + j + 16));
      a2 = _mm512_add_ps(a2, _mm512_loadu_ps(p + j + 32));
      a3 = _mm512_add_ps(a3, _mm512_loadu_ps(p + j + 48));
    }
    for (; j + 16 <= cols; j += 16) a0 = _mm512_add_ps(a0, _mm512_loadu_ps(p + j));
    if (tail) a1 = _mm512_add_ps(a1, _mm512_maskz_loadu_ps(tm, p + j));
  }
  const double n = static_cast<double>(rows * cols);
  const __m512 s4 = _mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3));
  const float m0 = static_cast<float>(hsum_d(s4) / n);
  const __m512 vm = _mm512_set1_ps(m0);
  __m512 d0 = zero, d1 = zero, q0 = zero, q1 = zero;
  for (int64_t r = 0; r < rows; ++r) {
    const float* p = x + r * ld;
    int64_t j = 0;
    for (; j + 32 <= cols; j += 32) {
      const __m512 u = _mm512_sub_ps(_mm512_loadu_ps(p + j), vm);
      const __m512 v = _mm512_sub_ps(_mm512_loadu_ps(p + j + 16), vm);
      d0 = _mm512_add_ps(d0, u), q0 = _mm512_fmadd_ps(u, u, q0);
      d1 = _mm512_add_ps(d1, v), q1 = _mm512_fmadd_ps(v, v, q1);
    }
    for (; j + 16 <= cols; j += 16) {
      const __m512 u = _mm512_sub_ps(_mm512_loadu_ps(p + j), vm);
      d0 = _mm512_add_ps(d0, u), q0 = _mm512_fmadd_ps(u, u, q0);
    }
    if (tail) {
      const __m512 u = _mm512_maskz_sub_ps(tm, _mm512_maskz_loadu_ps(tm, p + j), vm);
      d1 = _mm512_add_ps(d1, u), q1 = _mm512_fmadd_ps(u, u, q1);
    }
  }
  const double sd = hsum_d(_mm512_add_ps(d0, d1)), sq = hsum_d(_mm512_add_ps(q0, q1));
  *mean = m0 + sd / n;
  *m2 = sq - sd * sd / n;
}

void bn_col_stats(const float* x, int64_t rows, int64_t cols, int64_t ld, double* mean,
                  double* m2) {
  alignas(64) float s[kBnColTile], sd[kBnColTile], sq[kBnColTile];
  const int64_t full = cols & ~int64_t{15}, tail = cols - full;
  const __mmask16 tm = tail_mask(tail);
  const int64_t padded = full + (tail ? 16 : 0);
  for (int64_t j = 0; j < padded; j += 16) {
    _mm512_store_ps(s + j, _mm512_setzero_ps());
    _mm512_store_ps(sd + j, _mm512_setzero_ps());
    _mm512_store_ps(sq + j, _mm512_setzero_ps());
  }
  auto load = [tm](const float* q, bool masked) {
    return masked ? _mm512_maskz_loadu_ps(tm, q) : _mm512_loadu_ps(q);
  };
  // pass 1, 2 rows a sweep (as the AVX2 file): s += x0 + x1
  auto sum2_at = [&](const float* p, int64_t j, bool masked) {
    const __m512 t = _mm512_add_ps(load(p + j, masked), load(p + ld + j, masked));
    _mm512_store_ps(s + j, _mm512_add_ps(_mm512_load_ps(s + j), t));
  };
  int64_t r = 0;
  for (; r + 2 <= rows; r += 2) {
    const float* p = x + r * ld;
    for (int64_t j = 0; j < full; j += 16) sum2_at(p, j, false);
    if (tail) sum2_at(p, full, true);
  }
  for (; r < rows; ++r) {
    const float* p = x + r * ld;
    for (int64_t j = 0; j < full; j += 16)
      _mm512_store_ps(s + j, _mm512_add_ps(_mm512_load_ps(s + j), _mm512_loadu_ps(p + j)));
    if (tail)
      _mm512_store_ps(s + full, _mm512_add_ps(_mm512_load_ps(s + full),
                                              _mm512_maskz_loadu_ps(tm, p + full)));
  }
  const __m512 vinv = _mm512_set1_ps(1.0f / static_cast<float>(rows));  // m0: only a shift
  for (int64_t j = 0; j < padded; j += 16)
    _mm512_store_ps(s + j, _mm512_mul_ps(_mm512_load_ps(s + j), vinv));  // s now holds m0
  // pass 2 (from L2), 2 rows a sweep: sd += u0 + u1, sq: 2 FMAs, u = x - m0 (0 off the tail)
  auto centred2_at = [&](const float* p, int64_t j, bool masked) {
    const __m512 m0 = _mm512_load_ps(s + j);
    const __mmask16 k = masked ? tm : __mmask16(0xFFFF);
    const __m512 u0 = _mm512_maskz_sub_ps(k, load(p + j, masked), m0);
    const __m512 u1 = _mm512_maskz_sub_ps(k, load(p + ld + j, masked), m0);
    const __m512 q = _mm512_fmadd_ps(u1, u1, _mm512_fmadd_ps(u0, u0, _mm512_load_ps(sq + j)));
    _mm512_store_ps(sd + j, _mm512_add_ps(_mm512_load_ps(sd + j), _mm512_add_ps(u0, u1)));
    _mm512_store_ps(sq + j, q);
  };
  for (r = 0; r + 2 <= rows; r += 2) {
    const float* p = x + r * ld;
    for (int64_t j = 0; j < full; j += 16) centred2_at(p, j, false);
    if (tail) centred2_at(p, full, true);
  }
  for (; r < rows; ++r) {
    const float* p = x + r * ld;
    for (int64_t j = 0; j < full; j += 16) {
      const __m512 u = _mm512_sub_ps(_mm512_loadu_ps(p + j), _mm512_load_ps(s + j));
      _mm512_store_ps(sd + j, _mm512_add_ps(_mm512_load_ps(sd + j), u));
      _mm512_store_ps(sq + j, _mm512_fmadd_ps(u, u, _mm512_load_ps(sq + j)));
    }
    if (tail) {
      const __m512 u =
          _mm512_maskz_sub_ps(tm, _mm512_maskz_loadu_ps(tm, p + full), _mm512_load_ps(s + full));
      _mm512_store_ps(sd + full, _mm512_add_ps(_mm512_load_ps(sd + full), u));
      _mm512_store_ps(sq + full, _mm512_fmadd_ps(u, u, _mm512_load_ps(sq + full)));
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
  const __m512 zero = _mm512_setzero_ps(), vm = _mm512_set1_ps(m);
  const int64_t tail = cols % 16;
  const __mmask16 tm = tail_mask(tail);
  __m512 g0 = zero, g1 = zero, h0 = zero, h1 = zero;
  for (int64_t r = 0; r < rows; ++r) {
    const float* pg = dy + r * ld;
    const float* px = x + r * ld;
    int64_t j = 0;
    for (; j + 32 <= cols; j += 32) {
      const __m512 a = _mm512_loadu_ps(pg + j), b = _mm512_loadu_ps(pg + j + 16);
      g0 = _mm512_add_ps(g0, a), g1 = _mm512_add_ps(g1, b);
      h0 = _mm512_fmadd_ps(a, _mm512_sub_ps(_mm512_loadu_ps(px + j), vm), h0);
      h1 = _mm512_fmadd_ps(b, _mm512_sub_ps(_mm512_loadu_ps(px + j + 16), vm), h1);
    }
    for (; j + 16 <= cols; j += 16) {
      const __m512 a = _mm512_loadu_ps(pg + j);
      g0 = _mm512_add_ps(g0, a);
      h0 = _mm512_fmadd_ps(a, _mm512_sub_ps(_mm512_loadu_ps(px + j), vm), h0);
    }
    if (tail) {
      const __m512 a = _mm512_maskz_loadu_ps(tm, pg + j);
      const __m512 u = _mm512_maskz_sub_ps(tm, _mm512_maskz_loadu_ps(tm, px + j), vm);
      g1 = _mm512_add_ps(g1, a), h1 = _mm512_fmadd_ps(a, u, h1);
    }
  }
  *sdy = hsum_d(_mm512_add_ps(g0, g1));
  *sdxm = hsum_d(_mm512_add_ps(h0, h1));
}

void bn_bwd_col_sums(const float* dy, const float* x, int64_t rows, int64_t cols, int64_t ld,
                     const float* m, double* sdy, double* sdxm) {
  alignas(64) float g[kBnColTile], h[kBnColTile];
  const int64_t full = cols & ~int64_t{15}, tail = cols - full;
  const __mmask16 tm = tail_mask(tail);
  const int64_t padded = full + (tail ? 16 : 0);
  for (int64_t j = 0; j < padded; j += 16) {
    _mm512_store_ps(g + j, _mm512_setzero_ps());
    _mm512_store_ps(h + j, _mm512_setzero_ps());
  }
  auto load = [tm](const float* q, bool masked) {
    return masked ? _mm512_maskz_loadu_ps(tm, q) : _mm512_loadu_ps(q);
  };
  // 2 rows a sweep (as the AVX2 file): g += a0 + a1, h: 2 FMAs
  auto sums2_at = [&](const float* pg, const float* px, int64_t j, bool masked) {
    const __m512 mj = load(m + j, masked);
    const __mmask16 k = masked ? tm : __mmask16(0xFFFF);
    const __m512 a0 = load(pg + j, masked), a1 = load(pg + ld + j, masked);
    const __m512 u0 = _mm512_maskz_sub_ps(k, load(px + j, masked), mj);
    const __m512 u1 = _mm512_maskz_sub_ps(k, load(px + ld + j, masked), mj);
    const __m512 q = _mm512_fmadd_ps(a1, u1, _mm512_fmadd_ps(a0, u0, _mm512_load_ps(h + j)));
    _mm512_store_ps(g + j, _mm512_add_ps(_mm512_load_ps(g + j), _mm512_add_ps(a0, a1)));
    _mm512_store_ps(h + j, q);
  };
  int64_t r = 0;
  for (; r + 2 <= rows; r += 2) {
    const float* pg = dy + r * ld;
    const float* px = x + r * ld;
    for (int64_t j = 0; j < full; j += 16) sums2_at(pg, px, j, false);
    if (tail) sums2_at(pg, px, full, true);
  }
  for (; r < rows; ++r) {
    const float* pg = dy + r * ld;
    const float* px = x + r * ld;
    for (int64_t j = 0; j < full; j += 16) {
      const __m512 a = _mm512_loadu_ps(pg + j);
      const __m512 u = _mm512_sub_ps(_mm512_loadu_ps(px + j), _mm512_loadu_ps(m + j));
      _mm512_store_ps(g + j, _mm512_add_ps(_mm512_load_ps(g + j), a));
      _mm512_store_ps(h + j, _mm512_fmadd_ps(a, u, _mm512_load_ps(h + j)));
    }
    if (tail) {
      const __m512 a = _mm512_maskz_loadu_ps(tm, pg + full);
      const __m512 u = _mm512_maskz_sub_ps(tm, _mm512_maskz_loadu_ps(tm, px + full),
                                           _mm512_maskz_loadu_ps(tm, m + full));
      _mm512_store_ps(g + full, _mm512_add_ps(_mm512_load_ps(g + full), a));
      _mm512_store_ps(h + full, _mm512_fmadd_ps(a, u, _mm512_load_ps(h + full)));
    }
  }
  for (int64_t j = 0; j < cols; ++j) sdy[j] = g[j], sdxm[j] = h[j];
}

void bn_apply(const float* x, float* y, int64_t rows, int64_t cols, int64_t ld, float m, float a,
              float b) {
  const __m512 vm = _mm512_set1_ps(m), va = _mm512_set1_ps(a), vb = _mm512_set1_ps(b);
  const int64_t tail = cols % 16;
  const __mmask16 tm = tail_mask(tail);
  for (int64_t r = 0; r < rows; ++r) {
    const float* p = x + r * ld;
    float* o = y + r * ld;
    int64_t j = 0;
    for (; j + 64 <= cols; j += 64)
      for (int k = 0; k < 64; k += 16)
        _mm512_storeu_ps(o + j + k,
                         _mm512_fmadd_ps(_mm512_sub_ps(_mm512_loadu_ps(p + j + k), vm), va, vb));
    for (; j + 16 <= cols; j += 16)
      _mm512_storeu_ps(o + j, _mm512_fmadd_ps(_mm512_sub_ps(_mm512_loadu_ps(p + j), vm), va, vb));
    if (tail)
      _mm512_mask_storeu_ps(
          o + j, tm, _mm512_fmadd_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(tm, p + j), vm), va, vb));
  }
}

void bn_apply_cols(const float* x, float* y, int64_t rows, int64_t cols, int64_t ld,
                   const float* m, const float* a, const float* b) {
  const int64_t full = cols & ~int64_t{15}, tail = cols - full;
  const __mmask16 tm = tail_mask(tail);
  for (int64_t r = 0; r < rows; ++r) {
    const float* p = x + r * ld;
    float* o = y + r * ld;
    for (int64_t j = 0; j < full; j += 16)
      _mm512_storeu_ps(o + j, _mm512_fmadd_ps(_mm512_sub_ps(_mm512_loadu_ps(p + j),
                                                            _mm512_loadu_ps(m + j)),
                                              _mm512_loadu_ps(a + j), _mm512_loadu_ps(b + j)));
    if (tail)
      _mm512_mask_storeu_ps(
          o + full, tm,
          _mm512_fmadd_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(tm, p + full),
                                        _mm512_maskz_loadu_ps(tm, m + full)),
                          _mm512_maskz_loadu_ps(tm, a + full),
                          _mm512_maskz_loadu_ps(tm, b + full)));
  }
}

void bn_bwd_apply(const float* dy, const float* x, float* dx, int64_t rows, int64_t cols,
                  int64_t ld, float m, float p, float s, float q) {
  const __m512 vm = _mm512_set1_ps(m), vp = _mm512_set1_ps(p), vs = _mm512_set1_ps(s),
               vq = _mm512_set1_ps(q);
  const int64_t tail = cols % 16;
  const __mmask16 tm = tail_mask(tail);
  auto f = [&](__m512 g, __m512 v) {
    return _mm512_fmsub_ps(_mm512_sub_ps(g, vp), vs, _mm512_mul_ps(_mm512_sub_ps(v, vm), vq));
  };
  for (int64_t r = 0; r < rows; ++r) {
    const float* pg = dy + r * ld;
    const float* px = x + r * ld;
    float* o = dx + r * ld;
    int64_t j = 0;
    for (; j + 32 <= cols; j += 32) {
      const __m512 a = f(_mm512_loadu_ps(pg + j), _mm512_loadu_ps(px + j));
      const __m512 b = f(_mm512_loadu_ps(pg + j + 16), _mm512_loadu_ps(px + j + 16));
      _mm512_storeu_ps(o + j, a);
      _mm512_storeu_ps(o + j + 16, b);
    }
    for (; j + 16 <= cols; j += 16)
      _mm512_storeu_ps(o + j, f(_mm512_loadu_ps(pg + j), _mm512_loadu_ps(px + j)));
    if (tail)
      _mm512_mask_storeu_ps(o + j, tm,
                            f(_mm512_maskz_loadu_ps(tm, pg + j), _mm512_maskz_loadu_ps(tm, px + j)));
  }
}

void bn_bwd_apply_cols(const float* dy, const float* x, float* dx, int64_t rows, int64_t cols,
                       int64_t ld, const float* m, const float* p, const float* s,
                       const float* q) {
  const int64_t full = cols & ~int64_t{15}, tail = cols - full;
  const __mmask16 tm = tail_mask(tail);
  for (int64_t r = 0; r < rows; ++r) {
    const float* pg = dy + r * ld;
    const float* px = x + r * ld;
    float* o = dx + r * ld;
    for (int64_t j = 0; j < full; j += 16) {
      const __m512 g = _mm512_sub_ps(_mm512_loadu_ps(pg + j), _mm512_loadu_ps(p + j));
      const __m512 u = _mm512_mul_ps(
          _mm512_sub_ps(_mm512_loadu_ps(px + j), _mm512_loadu_ps(m + j)), _mm512_loadu_ps(q + j));
      _mm512_storeu_ps(o + j, _mm512_fmsub_ps(g, _mm512_loadu_ps(s + j), u));
    }
    if (tail) {
      const __m512 g = _mm512_sub_ps(_mm512_maskz_loadu_ps(tm, pg + full),
                                     _mm512_maskz_loadu_ps(tm, p + full));
      const __m512 u = _mm512_mul_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(tm, px + full),
                                                   _mm512_maskz_loadu_ps(tm, m + full)),
                                     _mm512_maskz_loadu_ps(tm, q + full));
      _mm512_mask_storeu_ps(o + full, tm,
                            _mm512_fmsub_ps(g, _mm512_maskz_loadu_ps(tm, s + full), u));
    }
  }
}

}  // namespace fastcnn::cpu::avx512
