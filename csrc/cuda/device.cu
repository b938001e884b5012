// device.cu -- the device facts: device count, runtime and driver versions. The only host-only
// CUDA calls of the module; they never throw (0 without a driver or a GPU), so importing
// fastcnn._cuda and asking fastcnn.info() works on any machine.
#include "cuda/common.cuh"

namespace fastcnn::cuda {
namespace {

// f(&v) or 0 when it fails (no driver / no device: not an error for the caller)
int query(cudaError_t (*f)(int*)) noexcept {
  int v = 0;
  if (f(&v) != cudaSuccess) {
    (void)cudaGetLastError();
    return 0;
  }
  return v;
}

}  // namespace

int device_count() noexcept { return query(cudaGetDeviceCount); }
int runtime_version() noexcept { return query(cudaRuntimeGetVersion); }
int driver_version() noexcept { return query(cudaDriverGetVersion); }

}  // namespace fastcnn::cuda
