// kernels/block_collectives.hpp: block-wide reductions written once for both backends. The
// device pass runs CUB's BlockReduce; the host pass runs a CPU block's one thread, for which
// the sequential fold of the block's values is that thread's own value.
//
// Contract
// - Call from every thread of the block, with the same kBlockThreads: the launch's block size
//   (pkrt::detail::cuda_block_threads<App>(), i.e. App::kCudaBlockThreads or 128). CUB lays out
//   its warps and shared storage for it at compile time; a device block of another size stops
//   the kernel (trap) rather than combine lanes no thread wrote.
// - The result is valid on thread 0 only (CUB's contract); other threads get an unspecified
//   value. Broadcast it (block_broadcast) if every thread needs it.
// - `op` must be associative; it need not be commutative: BLOCK_REDUCE_WARP_REDUCTIONS
//   combines the values in thread order, op(op(v0, v1), v2) ... up to associativity.
// - Calls may follow each other directly: each ends with a barrier, after which its shared
//   storage may be rewritten.
#pragma once

#include <pkrt/config.hpp>
#include <pkrt/detail/block_threads.hpp>

#include <cstdint>

#if defined(__CUDACC__)
#include <cub/block/block_reduce.cuh>
#endif

namespace pkrt::detail {

#if PKRT_DEVICE_PASS
template <std::uint32_t kBlockThreads>
__device__ inline void require_block_threads() {
  static_assert(kBlockThreads >= 32 && kBlockThreads <= 1024 && kBlockThreads % 32 == 0,
                "pkrt: kBlockThreads must be a multiple of 32 between 32 and 1024 (kCudaBlockThreads)");
  if (blockDim.x != kBlockThreads) __trap();
}

// Latency over throughput: a persistent grid has few warps per SM, and this algorithm keeps
// thread order (non-commutative operators) with one barrier.
template <class T, std::uint32_t kBlockThreads>
using CubBlockReduce = cub::BlockReduce<T, static_cast<int>(kBlockThreads), cub::BLOCK_REDUCE_WARP_REDUCTIONS>;
#endif

// op(v0, v1, ..., v_{n-1}) over the block's threads in thread order, on thread 0.
template <std::uint32_t kBlockThreads, class T, class Op>
PKRT_HD T block_reduce(T value, Op op) {
#if PKRT_DEVICE_PASS
  require_block_threads<kBlockThreads>();
  using Reduce = CubBlockReduce<T, kBlockThreads>;
  __shared__ typename Reduce::TempStorage storage;
  value = Reduce(storage).Reduce(value, op);
  __syncthreads();  // the next call may rewrite `storage`
#else
  (void)op;
#endif
  return value;
}

// Sum over the block's threads, on thread 0 (CUB's Sum: warp sums with redux.sync on sm_80+).
template <std::uint32_t kBlockThreads>
PKRT_HD std::uint32_t block_sum(std::uint32_t value) {
#if PKRT_DEVICE_PASS
  require_block_threads<kBlockThreads>();
  using Reduce = CubBlockReduce<std::uint32_t, kBlockThreads>;
  __shared__ typename Reduce::TempStorage storage;
  value = Reduce(storage).Sum(value);
  __syncthreads();  // the next call may rewrite `storage`
#endif
  return value;
}

}  // namespace pkrt::detail
