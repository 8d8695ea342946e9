// cuda/cuda_check.hpp: the one check for CUDA runtime calls in pkrt. Turns a cudaError_t
// into a pkrt::Status naming the call, the file and line, the driver's words, and a fix.
// Host-only; used by cuda/cuda_backend.cpp.
#pragma once

#include <pkrt/status.hpp>

#include <cuda_runtime_api.h>

#include <string>

namespace pkrt::cuda_detail {

// Sticky errors leave the context unusable: only a process restart recovers.
inline bool cuda_error_is_sticky(cudaError_t err) {
  switch (err) {
    case cudaErrorIllegalAddress:
    case cudaErrorLaunchFailure:
    case cudaErrorAssert:
    case cudaErrorHardwareStackError:
    case cudaErrorIllegalInstruction:
    case cudaErrorMisalignedAddress:
    case cudaErrorInvalidAddressSpace:
    case cudaErrorInvalidPc:
    case cudaErrorLaunchTimeout:
    case cudaErrorECCUncorrectable:
      return true;
    default:
      return false;
  }
}

inline StatusCode classify_cuda_error(cudaError_t err) {
  switch (err) {
    case cudaSuccess: return StatusCode::kOk;
    case cudaErrorNoDevice:
    case cudaErrorInsufficientDriver:
    case cudaErrorDevicesUnavailable:
    case cudaErrorInvalidDevice:
    case cudaErrorSystemDriverMismatch:
    case cudaErrorCompatNotSupportedOnDevice:
    case cudaErrorNoKernelImageForDevice:
    case cudaErrorUnsupportedPtxVersion:
    case cudaErrorInitializationError:
    case cudaErrorStubLibrary:
    case cudaErrorSystemNotReady:
      return StatusCode::kDeviceUnavailable;
    case cudaErrorMemoryAllocation: return StatusCode::kInvalidArgument;
    case cudaErrorCooperativeLaunchTooLarge: return StatusCode::kInvalidArgument;
    default: return cuda_error_is_sticky(err) ? StatusCode::kDeviceFault : StatusCode::kInternal;
  }
}

inline const char* cuda_error_fix(cudaError_t err) {
  switch (classify_cuda_error(err)) {
    case StatusCode::kDeviceUnavailable:
      if (err == cudaErrorNoKernelImageForDevice)
        return "rebuild with -DPKRT_CUDA_ARCHS=<your GPU's compute capability, e.g. 80 or 90>, "
               "or run with --backend cpu";
      return "check `nvidia-smi` and the NVIDIA driver installation (driver must support the "
             "CUDA runtime pkrt was built with), or run with --backend cpu";
    case StatusCode::kDeviceFault:
      return "the GPU context is corrupted; restart the process. Rerun under "
             "compute-sanitizer to find the faulting access";
    case StatusCode::kInvalidArgument:
      return "reduce --actors or the state size, or free GPU memory used by other processes";
    default: return "please report this with the message above";
  }
}

inline Status cuda_status(cudaError_t err, const char* expr, const char* file, int line) {
  if (err == cudaSuccess) return Status();
  // Clear the non-sticky error so the next call does not report it again.
  if (!cuda_error_is_sticky(err)) (void)cudaGetLastError();
  return Status(classify_cuda_error(err),
                std::string(expr) + " failed at " + file + ":" + std::to_string(line) + ": " +
                    cudaGetErrorName(err) + " (" + cudaGetErrorString(err) + "). Fix: " +
                    cuda_error_fix(err));
}

}  // namespace pkrt::cuda_detail

// Evaluates a CUDA runtime call; on failure returns a pkrt::Status from the enclosing function.
#define PKRT_CUDA_CHECK(expr)                                                                \
  do {                                                                                       \
    const cudaError_t pkrt_cuda_err_ = (expr);                                               \
    if (pkrt_cuda_err_ != cudaSuccess)                                                       \
      return ::pkrt::cuda_detail::cuda_status(pkrt_cuda_err_, #expr, __FILE__, __LINE__);    \
  } while (0)
