// cpu_features.cpp -- cpuid / XGETBV probing. Compiled without ISA flags.
#include "common/cpu_features.h"

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#define FASTCNN_X86 1
#endif

namespace fastcnn {

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::avx512: return "avx512";
    case Isa::avx2: return "avx2";
    default: return "generic";
  }
}

Isa parse_isa(const std::string& name) {
  std::string s = name;
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  if (s == "generic") return Isa::generic;
  if (s == "avx2") return Isa::avx2;
  if (s == "avx512") return Isa::avx512;
  throw std::invalid_argument("isa: expected 'generic', 'avx2' or 'avx512', got '" + name + "'");
}

#ifdef FASTCNN_X86
static unsigned long long xgetbv0() {
  unsigned int eax, edx;
  __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
  return (static_cast<unsigned long long>(edx) << 32) | eax;
}
#endif

Isa detect_isa() {
#ifdef FASTCNN_X86
  unsigned int a, b, c, d;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return Isa::generic;
  const bool osxsave = c & (1u << 27), avx = c & (1u << 28), fma = c & (1u << 12);
  if (!(osxsave && avx && fma)) return Isa::generic;
  const unsigned long long xcr0 = xgetbv0();
  const bool ymm_state = (xcr0 & 0x6) == 0x6;          // SSE + AVX state
  const bool zmm_state = (xcr0 & 0xE6) == 0xE6;        // + opmask, ZMM_Hi256, Hi16_ZMM
  if (!ymm_state) return Isa::generic;
  if (__get_cpuid_max(0, nullptr) < 7) return Isa::generic;
  __cpuid_count(7, 0, a, b, c, d);
  const bool avx2 = b & (1u << 5);
  const bool f = b & (1u << 16), dq = b & (1u << 17), bw = b & (1u << 30), vl = b & (1u << 31);
  if (avx2 && f && dq && bw && vl && zmm_state) return Isa::avx512;
#ifdef FASTCNN_AVX512_SIMDE
  if (avx2) return Isa::avx512;  // the test build: AVX-512 through SIMDe (CMakeLists.txt)
#endif
  if (avx2) return Isa::avx2;
#endif
  return Isa::generic;
}

Isa default_isa() {
  Isa best = detect_isa();
  if (const char* env = std::getenv("FASTCNN_ISA")) {
    if (*env == '\0') return best;
    try {
      Isa cap = parse_isa(env);
      return static_cast<int>(cap) < static_cast<int>(best) ? cap : best;
    } catch (const std::invalid_argument&) {
      std::fprintf(stderr, "fastcnn: ignoring FASTCNN_ISA=%s (expected generic, avx2 or avx512)\n", env);
    }
  }
  return best;
}

}  // namespace fastcnn
