// im2col_check.cpp -- randomized bit-for-bit check of the implicit-im2col packers of every ISA
// (generic, avx2, avx512) against the generic one, with every vector load checked to stay
// inside one image row (shim/check.h). AVX-512 runs through SIMDe, so this runs on any AVX2
// machine, including ones without AVX-512 (where the Python tests cannot reach that ISA).
// Build + run: bash tools/im2col_check/run.sh [cases]
// Geometries: stride 1-6 (2 and 3 weighted), dilation 1-3, pad 0-3, kernels 1-5, widths 1-70,
// nr 8 / 24 / 48; forward panels (single image and batched, random column ranges), weight-
// gradient panels (random pixel ranges, cols <= nr). Prints the case count; aborts on a mismatch.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <vector>

#include <immintrin.h>  // shim/immintrin.h: SIMDe + the checked loads (check.h)
#include "cpu/kernels.h"

namespace k = fastcnn::cpu;

namespace {

struct Isa {
  const char* name;
  decltype(&k::generic::conv2d_im2col) single;
  decltype(&k::generic::conv2d_im2col_batch) batch;
  decltype(&k::generic::conv2d_im2col_wgrad) wgrad;
};

const Isa kIsas[] = {
    {"generic", k::generic::conv2d_im2col, k::generic::conv2d_im2col_batch,
     k::generic::conv2d_im2col_wgrad},
    {"avx2", k::avx2::conv2d_im2col, k::avx2::conv2d_im2col_batch, k::avx2::conv2d_im2col_wgrad},
    {"avx512", k::avx512::conv2d_im2col, k::avx512::conv2d_im2col_batch,
     k::avx512::conv2d_im2col_wgrad},
};

[[noreturn]] void fail(const char* what, const char* isa, int64_t c) {
  std::fprintf(stderr, "im2col_check: %s of %s differs from generic (case %lld)\n", what, isa,
               static_cast<long long>(c));
  std::exit(1);
}

}  // namespace

int main(int argc, char** argv) {
  const int64_t cases = argc > 1 ? std::atoll(argv[1]) : 3000;
  std::mt19937_64 gen(12345);
  auto pick = [&](int64_t lo, int64_t hi) {  // uniform in [lo, hi]
    return std::uniform_int_distribution<int64_t>(lo, hi)(gen);
  };
  const int64_t strides[] = {1, 2, 2, 2, 3, 3, 4, 5, 6};
  const int64_t nrs[] = {8, 24, 48};
  for (int64_t c = 0; c < cases; ++c) {
    const int64_t N = pick(1, 3), C = pick(1, 3), H = pick(1, 12), W = pick(1, 70);
    const int64_t R = pick(1, 5), S = pick(1, 5), dh = pick(1, 3), dw = pick(1, 3);
    const int64_t sh = strides[pick(0, 8)], sw = strides[pick(0, 8)];
    const int64_t ph = pick(0, 3), pw = pick(0, 3);
    const int64_t P = (H + 2 * ph - dh * (R - 1) - 1) / sh + 1;
    const int64_t Q = (W + 2 * pw - dw * (S - 1) - 1) / sw + 1;
    if (H + 2 * ph - dh * (R - 1) - 1 < 0 || W + 2 * pw - dw * (S - 1) - 1 < 0) continue;
    const int64_t HW = H * W, img = C * HW;
    // the images with 64 guard floats either side (no other buffer within check.h's reach)
    std::vector<float> xbuf(static_cast<size_t>(N * img + 128), 1e30f);
    float* const xs = xbuf.data() + 64;
    for (int64_t i = 0; i < N * img; ++i) xs[i] = static_cast<float>(pick(-1000, 1000)) * 0.37f;
    im2col_check::region() = {xs, N * img, W};
    // the im2col rows (c, r, s); a null plane now and then (forward only)
    const int64_t rows = C * R * S;
    std::vector<const float*> planes(static_cast<size_t>(rows)), full(planes.size());
    std::vector<int64_t> bh(planes.size()), bw(planes.size());
    for (int64_t i = 0; i < rows; ++i) {
      const int64_t ch = i / (R * S), r = i / S % R, s = i % S;
      full[i] = xs + ch * HW;
      planes[i] = pick(0, 9) == 0 ? nullptr : full[i];
      bh[i] = r * dh - ph, bw[i] = s * dw - pw;
    }
    const int64_t nr = nrs[pick(0, 2)];
    // forward, batched and single image
    const int64_t total = N * P * Q, j0 = pick(0, total - 1), nc = pick(1, total - j0);
    const int64_t kc = pick(1, rows), panels = (nc + nr - 1) / nr;
    std::vector<float> ref(static_cast<size_t>(panels * kc * nr)), out(ref.size());
    im2col_check::label() = "generic";
    kIsas[0].batch(planes.data(), bh.data(), bw.data(), kc, img, j0, nc, P, Q, H, W, sh, sw,
                   ref.data(), nr);
    for (const Isa& isa : kIsas) {
      im2col_check::label() = isa.name;
      std::fill(out.begin(), out.end(), -7.0f);
      isa.batch(planes.data(), bh.data(), bw.data(), kc, img, j0, nc, P, Q, H, W, sh, sw,
                out.data(), nr);
      if (std::memcmp(out.data(), ref.data(), ref.size() * sizeof(float))) fail("batch", isa.name, c);
    }
    const int64_t s0 = pick(0, P * Q - 1), sn = pick(1, P * Q - s0), sp = (sn + nr - 1) / nr;
    std::vector<float> sref(static_cast<size_t>(sp * kc * nr)), sout(sref.size());
    kIsas[0].single(planes.data(), bh.data(), bw.data(), kc, s0, sn, Q, H, W, sh, sw, sref.data(),
                    nr);
    for (const Isa& isa : kIsas) {
      im2col_check::label() = isa.name;
      std::fill(sout.begin(), sout.end(), -7.0f);
      isa.single(planes.data(), bh.data(), bw.data(), kc, s0, sn, Q, H, W, sh, sw, sout.data(), nr);
      if (std::memcmp(sout.data(), sref.data(), sref.size() * sizeof(float)))
        fail("single", isa.name, c);
    }
    // weight gradient: cols <= nr im2col rows from row r0, pixels [k0, k0 + wk)
    const int64_t r0 = pick(0, rows - 1), cols = pick(1, std::min(nr, rows - r0));
    const int64_t k0 = pick(0, total - 1), wk = pick(1, std::min<int64_t>(total - k0, 256));
    std::vector<float> wref(static_cast<size_t>(wk * nr)), wout(wref.size());
    std::vector<float> scratch(static_cast<size_t>(nr * wk));
    kIsas[0].wgrad(full.data() + r0, bh.data() + r0, bw.data() + r0, cols, img, k0, wk, P, Q, H,
                   W, sh, sw, wref.data(), nr, scratch.data());
    for (const Isa& isa : kIsas) {
      im2col_check::label() = isa.name;
      std::fill(wout.begin(), wout.end(), -7.0f);
      isa.wgrad(full.data() + r0, bh.data() + r0, bw.data() + r0, cols, img, k0, wk, P, Q, H, W,
                sh, sw, wout.data(), nr, scratch.data());
      if (std::memcmp(wout.data(), wref.data(), wref.size() * sizeof(float)))
        fail("wgrad", isa.name, c);
    }
  }
  std::printf("im2col_check: %lld cases, generic / avx2 / avx512 (SIMDe) bit-identical, every load "
              "inside its row\n", static_cast<long long>(cases));
  return 0;
}
