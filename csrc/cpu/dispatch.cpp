// dispatch.cpp -- one kernel table per ISA, ordered avx512 -> avx2 -> generic; the active one is
// chosen once at load (best supported, capped by FASTCNN_ISA) and can be re-capped by tests.
// This table and the thread count (parallel.cpp) are the library's only mutable global state.
#include <atomic>

#include "cpu/kernels.h"

namespace fastcnn::cpu {
namespace {

#define FASTCNN_TABLE(ns, isa_value)                                                        \
  KernelTable {                                                                             \
    isa_value, ns::kMR, ns::kNR, ns::gemm_ukernel,                                          \
        ns::gemm_ukernel_sa, ns::gemm_ukernel_sa_tall, ns::conv2d_ukernel,                  \
        ns::conv2d_wgrad_ukernel, ns::store_tile, ns::relu_fwd, ns::relu_bwd,               \
        ns::maxpool2d_fwd, ns::maxpool2d_bwd, ns::sum, ns::add, ns::fma_probe,              \
        ns::kFmaProbeFlopsPerIter, ns::transpose, ns::conv2d_im2col,                        \
        ns::conv2d_im2col_wgrad, ns::conv2d_im2col_batch,                                   \
        /* normalization family */                                                          \
        ns::bn_stats, ns::bn_col_stats, ns::bn_bwd_sums, ns::bn_bwd_col_sums, ns::bn_apply, \
        ns::bn_apply_cols, ns::bn_bwd_apply, ns::bn_bwd_apply_cols,                         \
        /* pooling family (issue 17) */                                                     \
        ns::avgpool2d_fwd, ns::avgpool2d_bwd, ns::global_avgpool2d_fwd,                     \
        ns::global_avgpool2d_bwd, ns::global_maxpool2d_fwd, ns::global_maxpool2d_bwd,       \
        /* activation family (issue 17) */                                                 \
        ns::sigmoid_fwd, ns::sigmoid_bwd, ns::tanh_fwd, ns::tanh_bwd, ns::leaky_relu_fwd,   \
        ns::leaky_relu_bwd, ns::gelu_fwd, ns::gelu_bwd, ns::gelu_tanh_fwd,                  \
        ns::gelu_tanh_bwd, ns::silu_fwd, ns::silu_bwd,                                      \
        /* blocked direct convolution (issue 16) */                                         \
        ns::conv2d_blocked, ns::kBlockedVL, ns::kBlockedMaxOCB, ns::kBlockedMaxNC,          \
        ns::kBlockedMaxAcc, ns::conv2d_blocked_wgrad,                                       \
        /* small-channel direct convolution (issue 16) */                                   \
        ns::conv2d_smallc, ns::conv2d_smallc_wgrad, ns::kSmallcVL, ns::kSmallcRegs          \
  }

const KernelTable& table_for(Isa isa) {
  static const KernelTable generic_table = FASTCNN_TABLE(generic, Isa::generic);
  static const KernelTable avx2_table = FASTCNN_TABLE(avx2, Isa::avx2);
  static const KernelTable avx512_table = FASTCNN_TABLE(avx512, Isa::avx512);
  switch (isa) {
    case Isa::avx512: return avx512_table;
    case Isa::avx2: return avx2_table;
    default: return generic_table;
  }
}

std::atomic<const KernelTable*>& active() {
  static std::atomic<const KernelTable*> table{&table_for(default_isa())};
  return table;
}

}  // namespace

const KernelTable& kernels() { return *active().load(std::memory_order_acquire); }

Isa best_isa() {
  static const Isa best = detect_isa();
  return best;
}

Isa set_isa(Isa requested) {
  const Isa chosen = static_cast<int>(requested) < static_cast<int>(best_isa()) ? requested : best_isa();
  active().store(&table_for(chosen), std::memory_order_release);
  return chosen;
}

Isa active_isa() { return kernels().isa; }

}  // namespace fastcnn::cpu
