// conv2d_im2col_avx512.cpp -- conv2d's implicit-im2col packers (conv2d_im2col_impl.h), AVX-512.
// conv2d_im2col: B panels (kc x nr) of the forward / gather GEMM; conv2d_im2col_wgrad: the
// weight gradient's transposed B panel. A segment (one output row inside one panel, <= 48
// floats) is 16 outputs a vector, masked stores writing the zero padding too:
//  * ws = 1: one 16-lane load (masked to the in-bounds part at the segment's ends);
//  * ws = 2: the 32 floats under the 16 outputs as two loads, the even lanes picked by one
//    _mm512_permutex2var_ps (2 loads + 1 permute per 16 outputs; the gather it replaces is 16
//    load uops, slower still with the GDS microcode);
//  * 3 <= ws <= 4: ws loads, each merged into the lanes i with (ws*i) >> 4 == its number by a
//    masked _mm512_permutexvar_ps on the index (ws*i) & 15;
//  * ws > 4: a masked gather (16 lanes, the masked-off ones never read).
// Loads are unmasked only where all 16*ws floats under them lie in the row; otherwise masked to
// the floats from the first to the last in-bounds output ([a*ws, (b-1)*ws]), so nothing outside
// the row is read; masked-off lanes come back 0 (the padding value). Permutes only move values:
// the packed bits equal the generic copy's.
#include "cpu/avx512/intrin.h"

#include "cpu/kernels.h"

namespace fastcnn::cpu::avx512 {
namespace {

inline __mmask16 below(int64_t n) {  // lanes [0, n), n clamped to [0, 16]
  return n <= 0 ? __mmask16(0) : n >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << n) - 1u);
}

#include "cpu/conv2d_im2col_impl.h"
#include "cpu/avx512/transpose16.h"

inline __mmask16 between(int64_t a, int64_t b) {  // lanes [a, b)
  return static_cast<__mmask16>(below(b) & ~below(a));
}

constexpr int64_t kMaxPermStride = 4;  // widest stride gathered by permutes (above: a gather)

// The per-stride constants of strided16: step = ws*i (the gather's offsets), idx = (ws*i) & 15,
// sel = (ws*i) >> 4 (which 16-float load lane i comes from), even = 0, 2, .., 30.
struct Strided {
  __m512i step, idx, sel, even;
  explicit Strided(int64_t ws) {
    const __m512i lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    step = _mm512_mullo_epi32(lane, _mm512_set1_epi32(static_cast<int>(ws)));
    idx = _mm512_and_epi32(step, _mm512_set1_epi32(15));
    sel = _mm512_srli_epi32(step, 4);
    even = _mm512_add_epi32(lane, lane);
  }
};

// 16 outputs of a stride-ws window: lane i = src[i*ws] for i in [a, b), 0 elsewhere
// (0 <= a < b <= 16). `full` (ws <= kMaxPermStride): all of src[0, 16*ws) lies in the row
// (unmasked loads); else only src[a*ws .. (b-1)*ws] is read.
inline __m512 strided16(const float* src, int64_t ws, int64_t a, int64_t b, bool full,
                        const Strided& k) {
  const int64_t e0 = a * ws, e1 = (b - 1) * ws + 1;  // floats [e0, e1) of the span are read
  if (ws == 1) return full ? _mm512_loadu_ps(src) : _mm512_maskz_loadu_ps(between(e0, e1), src);
  if (ws == 2) {
    const __m512 x = full ? _mm512_loadu_ps(src) : _mm512_maskz_loadu_ps(between(e0, e1), src);
    const __m512 y = full ? _mm512_loadu_ps(src + 16)
                          : _mm512_maskz_loadu_ps(between(e0 - 16, e1 - 16), src + 16);
    return _mm512_permutex2var_ps(x, k.even, y);
  }
  if (ws > kMaxPermStride)
    return _mm512_mask_i32gather_ps(_mm512_setzero_ps(), between(a, b), k.step, src, 4);
  __m512 r = _mm512_setzero_ps();
  for (int64_t v = e0 >> 4; v * 16 < e1; ++v) {
    const __m512 x = full ? _mm512_loadu_ps(src + 16 * v)
                          : _mm512_maskz_loadu_ps(between(e0 - 16 * v, e1 - 16 * v), src + 16 * v);
    const __mmask16 pick =
        _mm512_cmpeq_epi32_mask(k.sel, _mm512_set1_epi32(static_cast<int>(v)));
    r = _mm512_mask_permutexvar_ps(r, pick, k.idx, x);
  }
  return r;
}

// 16 outputs from row column `first` on (lanes [a, b) in bounds): strided16 with `full` decided.
inline __m512 window16(const float* row, int64_t W, int64_t first, int64_t ws, int64_t a,
                       int64_t b, const Strided& k) {
  const bool full = a == 0 && b == 16 && ws <= kMaxPermStride && first + 16 * ws <= W;
  return strided16(row + first, ws, a, b, full, k);
}

inline void segment_span(float* dst, const float* row, int64_t W, int64_t w0, int64_t ws,
                         int64_t len, int64_t lo, int64_t hi) {
  const Strided k(ws);
  for (int64_t t = 0; t < len; t += 16) {
    const int64_t a = lo - t > 0 ? lo - t : 0, b = hi - t < 16 ? hi - t : 16;
    __m512 v = _mm512_setzero_ps();
    if (a < b) v = window16(row, W, w0 + t * ws, ws, a, b, k);
    _mm512_mask_storeu_ps(dst + t, below(len - t), v);
  }
}

}  // namespace

void conv2d_im2col(const float* const* planes, const int64_t* bh, const int64_t* bw, int64_t kc,
                   int64_t j0, int64_t nc, int64_t Qo, int64_t Hs, int64_t Ws, int64_t a_h,
                   int64_t a_w, float* dst, int64_t nr) {
  im2col_impl(planes, bh, bw, kc, j0, nc, Qo, Hs, Ws, a_h, a_w, dst, nr);
}

void conv2d_im2col_batch(const float* const* planes, const int64_t* bh, const int64_t* bw,
                         int64_t kc, int64_t img_stride, int64_t j0, int64_t nc, int64_t P,
                         int64_t Q, int64_t Hs, int64_t Ws, int64_t a_h, int64_t a_w, float* dst,
                         int64_t nr) {
  im2col_batch_impl(planes, bh, bw, kc, img_stride, j0, nc, P, Q, Hs, Ws, a_h, a_w, dst, nr);
}

// Fused gather + transpose: for each run of <= 16 pixels inside one output row, 16 columns at a
// time: one window16 per column (its strided im2col run, as in a segment), a 16x16 register
// transpose, one 16-float store per pixel. No staging pass, no scalar stores.
void conv2d_im2col_wgrad(const float* const* planes, const int64_t* bh, const int64_t* bw,
                         int64_t cols, int64_t img_stride, int64_t k0, int64_t kc, int64_t P,
                         int64_t Q, int64_t Hs, int64_t Ws, int64_t a_h, int64_t a_w, float* dst,
                         int64_t nr, float* scratch) {
  constexpr int64_t kMaxNr = 64;
  if (nr % 16 != 0 || nr > kMaxNr) {  // the kernel table's nr is 48: never taken, kept for safety
    im2col_wgrad_two_pass(planes, bh, bw, cols, img_stride, k0, kc, P, Q, Hs, Ws, a_h, a_w, dst,
                          nr, scratch);
    return;
  }
  const int64_t PQ = P * Q;
  const Strided strided(a_w);
  int64_t qlo[kMaxNr], qhi[kMaxNr];  // each column's in-bounds output columns (row_bounds)
  for (int64_t col = 0; col < cols; ++col) row_bounds(Ws, bw[col], a_w, qlo[col], qhi[col]);
  int64_t k = 0, n = k0 / PQ, pq = k0 % PQ;
  int64_t op = pq / Q, oq = pq % Q;
  while (k < kc) {
    int64_t len = Q - oq < kc - k ? Q - oq : kc - k;
    if (len > 16) len = 16;
    for (int64_t g = 0; g < nr; g += 16) {
      __m512 r[16];
      for (int i = 0; i < 16; ++i) {
        const int64_t col = g + i;
        r[i] = _mm512_setzero_ps();
        if (col >= cols) continue;
        const int64_t h = op * a_h + bh[col];
        if (h < 0 || h >= Hs) continue;
        const float* row = planes[col] + n * img_stride + h * Ws;
        int64_t lo, hi;
        clamp_bounds(qlo[col], qhi[col], oq, len, lo, hi);
        if (lo < hi) r[i] = window16(row, Ws, oq * a_w + bw[col], a_w, lo, hi, strided);
      }
      transpose16(r);
      for (int64_t t = 0; t < len; ++t) _mm512_storeu_ps(dst + (k + t) * nr + g, r[t]);
    }
    k += len;
    oq += len;
    if (oq == Q) {
      oq = 0;
      if (++op == P) op = 0, ++n;
    }
  }
}

}  // namespace fastcnn::cpu::avx512
