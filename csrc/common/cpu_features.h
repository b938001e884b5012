// cpu_features.h -- what the CPU and OS support (cpuid + XGETBV) and the FASTCNN_ISA cap.
#pragma once
#include <string>

namespace fastcnn {

enum class Isa : int { generic = 0, avx2 = 1, avx512 = 2 };

const char* isa_name(Isa isa);
// Parses "generic" | "avx2" | "avx512" (case-insensitive); throws std::invalid_argument otherwise.
Isa parse_isa(const std::string& name);
// Best ISA this CPU and OS can run (AVX2 needs AVX2+FMA and YMM state saved by the OS; AVX-512
// needs F/BW/VL/DQ and ZMM/opmask state saved).
Isa detect_isa();
// detect_isa() capped by the environment variable FASTCNN_ISA when set (an unknown value is
// ignored with a message on stderr, never a crash at import).
Isa default_isa();

}  // namespace fastcnn
