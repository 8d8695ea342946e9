// host/cuda_unavailable.cpp: the CUDA entry points of a build configured without nvcc
// (PKRT_ENABLE_CUDA=OFF or no toolkit). Asking for the CUDA backend gets a clear refusal.
#include "host/backend.hpp"

namespace pkrt::host {

bool cuda_backend_compiled() { return false; }

Result<std::unique_ptr<Backend>> make_cuda_backend(int) {
  return Status(StatusCode::kDeviceUnavailable,
                "CUDA backend unavailable: this pkrt was built without CUDA (nvcc was not "
                "found or PKRT_ENABLE_CUDA=OFF at configure time). Fix: install the CUDA "
                "toolkit and reconfigure with -DPKRT_ENABLE_CUDA=ON, or run with --backend cpu");
}

}  // namespace pkrt::host

namespace pkrt {
int cuda_device_count() { return 0; }
}  // namespace pkrt
