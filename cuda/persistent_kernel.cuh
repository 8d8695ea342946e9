// cuda/persistent_kernel.cuh: the __global__ entry of the persistent kernel. Included by
// pkrt/program.hpp only when nvcc compiles the application's program TU; the launch itself
// (occupancy sizing, cooperative launch, streams) is in cuda/cuda_backend.cpp.
#pragma once

#if !defined(__CUDACC__)
#error "cuda/persistent_kernel.cuh needs nvcc: compile this translation unit as CUDA"
#endif

#include <pkrt/detail/block_platform.hpp>
#include <pkrt/detail/block_threads.hpp>
#include <pkrt/detail/kernel_args.hpp>
#include <pkrt/kernels/persistent_loop.hpp>

namespace pkrt::cuda_detail {

// One thread block per grid block; launched cooperatively so that every block is resident at
// once (the grid barrier waits for all of them), with at
// most as many blocks as can be co-resident (the backend sizes it with the occupancy API).
// __launch_bounds__: without it nvcc may use more registers per thread than a block of
// kCudaBlockThreads threads can have, and the launch fails (seen: 128 registers, which
// rules out 1024-thread blocks).
template <class App>
__global__ void __launch_bounds__(pkrt::detail::cuda_block_threads<App>())
    persistent_kernel(pkrt::detail::KernelArgs args) {
  // The loop takes the arguments by reference, and a kernel parameter whose address is taken
  // is copied into every thread's local memory (hundreds of bytes of stack each). One copy in
  // shared memory serves the block instead; nobody writes it after the barrier.
  __shared__ pkrt::detail::KernelArgs block_args;
  if (threadIdx.x == 0) block_args = args;
  __syncthreads();
  // Barrier waiters ask for sleeps of at most 2 us (the balanced cap, or the policy's if
  // lower; __nanosleep may sleep up to twice that): a grid woken from idle then adds only a
  // few microseconds to block 0's own pickup delay.
  const std::uint32_t barrier_cap = block_args.poll_sleep_cap_ns < pkrt::detail::kDevicePollCapBalancedNs
                                        ? block_args.poll_sleep_cap_ns
                                        : pkrt::detail::kDevicePollCapBalancedNs;
  const pkrt::detail::BlockEnv env{blockIdx.x, nullptr, nullptr, &block_args.grid->barrier, block_args.idle_spin,
                                   barrier_cap};
  pkrt::detail::run_persistent_block<App>(block_args, env);
}

template <class App>
const void* persistent_kernel_address() {
  return reinterpret_cast<const void*>(&persistent_kernel<App>);
}

}  // namespace pkrt::cuda_detail
