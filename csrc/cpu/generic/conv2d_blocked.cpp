// conv2d_blocked.cpp (generic) -- the portable tile kernel of the blocked direct convolution
// (csrc/cpu/conv2d_blocked.cpp drives it; the contract is Conv2dBlockedArgs in kernels.h).
// Plain C++ with VL = 8 (the AVX2 layout), the reference for the ISA kernels' loop order: per
// output the products w * x are added in (cb, tap, c) order, one multiply and one add each
// (baseline x86-64 has no FMA and the build contracts nothing), then the bias, then the ReLU.
// Tile: up to 2 oc blocks x 8 pixels = 128 float accumulators (the compiler keeps the k lanes
// in SSE registers); no napkin maths beyond "portable": the ISA files are the fast path.
#include <algorithm>

#include "cpu/kernels.h"

namespace fastcnn::cpu::generic {

const int kBlockedVL = 8, kBlockedMaxOCB = 2, kBlockedMaxNC = 8, kBlockedMaxAcc = 16;

void conv2d_blocked(const Conv2dBlockedArgs& args) {
  constexpr int VL = 8;
  for (int64_t j0 = 0; j0 < args.nc; j0 += kBlockedMaxNC) {
    const int64_t nc = std::min<int64_t>(kBlockedMaxNC, args.nc - j0);
    const int64_t ocb = std::min<int64_t>(args.ocb, kBlockedMaxOCB);
    for (int64_t o0 = 0; o0 < args.ocb; o0 += ocb) {
      const int64_t no = std::min(ocb, args.ocb - o0);
      float acc[kBlockedMaxOCB][kBlockedMaxNC][VL] = {};
      for (int64_t cb = 0; cb < args.cblocks; ++cb)
        for (int64_t t = 0; t < args.taps; ++t) {
          const int64_t off = cb * args.in_cb_stride + args.tap_off[t];
          for (int64_t o = 0; o < no; ++o) {
            const float* wp = args.w + (o0 + o) * args.w_ob_stride + (cb * args.taps + t) * VL * VL;
            for (int64_t j = 0; j < nc; ++j) {
              const float* src = args.in[j0 + j] + off;
              for (int c = 0; c < VL; ++c) {
                const float xv = src[c];
                for (int k = 0; k < VL; ++k) acc[o][j][k] += wp[c * VL + k] * xv;
              }
            }
          }
        }
      for (int64_t o = 0; o < no; ++o)
        for (int k = 0; k < VL; ++k) {
          const int64_t kk = (o0 + o) * VL + k;
          if (kk >= args.kvalid) break;
          float* y = args.y + kk * args.y_ch_stride + j0;
          for (int64_t j = 0; j < nc; ++j) {
            float v = acc[o][j][k];
            if (args.bias) v += args.bias[kk];
            if (args.relu) v = (v > 0.0f || v != v) ? v : 0.0f;  // NaN kept, as generic store_tile
            y[j] = v;
          }
        }
    }
  }
}

}  // namespace fastcnn::cpu::generic
