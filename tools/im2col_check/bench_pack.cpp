// bench_pack.cpp -- the AVX2 im2col packers of a base revision ("old", namespace avx2_old, built by
// bench.sh from git) against the working tree's avx2 and generic ones, on ResNet's strided
// shapes: CPU time per packed float, min of 400 interleaved rounds (N = 2 images a round).
#include <chrono>
#include <cstdio>
#include <ctime>
#include <vector>
#include <algorithm>
#include "cpu/kernels.h"
namespace fastcnn::cpu::avx2_old {
void conv2d_im2col_batch(const float* const*, const int64_t*, const int64_t*, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, float*, int64_t);
void conv2d_im2col_wgrad(const float* const*, const int64_t*, const int64_t*, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, float*, int64_t, float*);
void transpose(const float* src, int64_t lds, int64_t rows, int64_t cols, float* dst, int64_t ldd) {
  fastcnn::cpu::avx2::transpose(src, lds, rows, cols, dst, ldd); }
}
namespace k = fastcnn::cpu;
static double cpu() { timespec t; clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t); return t.tv_sec + 1e-9 * t.tv_nsec; }
int main() {
  struct S { const char* name; int64_t C, H, R, s, p; } shapes[] = {{"3x3 16@32/2", 16, 32, 3, 2, 1}, {"3x3 32@16/2", 32, 16, 3, 2, 1}, {"1x1 16@32/2", 16, 32, 1, 2, 0}, {"1x1 32@16/2", 32, 16, 1, 2, 0}, {"3x3 32@16/1", 32, 16, 3, 1, 1}};
  for (auto& sh : shapes) {
    const int64_t N = 2, C = sh.C, H = sh.H, W = H, R = sh.R, s = sh.s, p = sh.p;
    const int64_t P = (H + 2 * p - R) / s + 1, Q = P, HW = H * W, rows = C * R * R;
    std::vector<float> x(N * C * HW, 1.0f);
    std::vector<const float*> planes(rows); std::vector<int64_t> bh(rows), bw(rows);
    for (int64_t i = 0; i < rows; ++i) { planes[i] = x.data() + (i / (R * R)) * HW; bh[i] = (i / R % R) - p; bw[i] = i % R - p; }
    const int64_t nr = 24, total = N * P * Q, kc = std::min<int64_t>(rows, 256);
    std::vector<float> dst((480 / nr) * kc * nr + 1000), scratch(nr * 256);
    auto fwd = [&](auto fn) { for (int64_t k0 = 0; k0 < rows; k0 += kc) for (int64_t j0 = 0; j0 < total; j0 += 480) fn(planes.data() + k0, bh.data() + k0, bw.data() + k0, std::min(kc, rows - k0), C * HW, j0, std::min<int64_t>(480, total - j0), P, Q, H, W, s, s, dst.data(), nr); };
    auto wg = [&](auto fn) { for (int64_t c0 = 0; c0 < rows; c0 += nr) for (int64_t k0 = 0; k0 < total; k0 += 256) fn(planes.data() + c0, bh.data() + c0, bw.data() + c0, std::min(nr, rows - c0), C * HW, k0, std::min<int64_t>(256, total - k0), P, Q, H, W, s, s, dst.data(), nr, scratch.data()); };
    double t[6] = {1e9, 1e9, 1e9, 1e9, 1e9, 1e9};
    for (int rep = 0; rep < 400; ++rep) {
      double a;
      a = cpu(); fwd(k::avx2_old::conv2d_im2col_batch); t[0] = std::min(t[0], cpu() - a);
      a = cpu(); fwd(k::avx2::conv2d_im2col_batch); t[1] = std::min(t[1], cpu() - a);
      a = cpu(); fwd(k::generic::conv2d_im2col_batch); t[2] = std::min(t[2], cpu() - a);
      a = cpu(); wg(k::avx2_old::conv2d_im2col_wgrad); t[3] = std::min(t[3], cpu() - a);
      a = cpu(); wg(k::avx2::conv2d_im2col_wgrad); t[4] = std::min(t[4], cpu() - a);
      a = cpu(); wg(k::generic::conv2d_im2col_wgrad); t[5] = std::min(t[5], cpu() - a);
    }
    const double el = double(rows) * total;
    std::printf("%-12s fwd pack ns/elem old %.3f new %.3f generic %.3f | wgrad pack old %.3f new %.3f generic %.3f\n", sh.name, t[0] / el * 1e9, t[1] / el * 1e9, t[2] / el * 1e9, t[3] / el * 1e9, t[4] / el * 1e9, t[5] / el * 1e9);
  }
}
