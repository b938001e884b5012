// device.cu -- the device facts: device count, runtime and driver versions. The only host-only
// CUDA calls of the module; they never throw (0 without a driver or a GPU), so importing
// fastcnn._cuda and asking fastcnn.info() works on any machine.
#include "cuda/common.cuh"

namespace fastcnn::cuda {

int device_count() noexcept {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    (void)cudaGetLastError();  // no driver / no device: not an error for the caller
    return 0;
  }
  return n;
}

int runtime_version() noexcept {
  int v = 0;
  if (cudaRuntimeGetVersion(&v) != cudaSuccess) {
    (void)cudaGetLastError();
    return 0;
  }
  return v;
}

int driver_version() noexcept {
  int v = 0;
  if (cudaDriverGetVersion(&v) != cudaSuccess) {
    (void)cudaGetLastError();
    return 0;
  }
  return v;
}

}  // namespace fastcnn::cuda
