// cuda/persistent_kernel.cuh: the __global__ entry of the persistent kernel. Included by
// pkrt/program.hpp only when nvcc compiles the application's program TU; the launch itself
// (occupancy sizing, cooperative launch, streams) is in cuda/cuda_backend.cpp.
#pragma once

#if !defined(__CUDACC__)
#error "cuda/persistent_kernel.cuh needs nvcc: compile this translation unit as CUDA"
#endif

#include <pkrt/detail/block_platform.hpp>
#include <pkrt/detail/kernel_args.hpp>
#include <pkrt/kernels/persistent_loop.hpp>

namespace pkrt::cuda_detail {

// One thread block per grid block; launched cooperatively so grid.sync() is legal, with at
// most as many blocks as can be co-resident (the backend sizes it with the occupancy API).
template <class App>
__global__ void persistent_kernel(pkrt::detail::KernelArgs args) {
  const pkrt::detail::BlockEnv env{blockIdx.x, nullptr, nullptr};
  pkrt::detail::run_persistent_block<App>(args, env);
}

template <class App>
const void* persistent_kernel_address() {
  return reinterpret_cast<const void*>(&persistent_kernel<App>);
}

}  // namespace pkrt::cuda_detail
