// pkrt/detail/block_threads.hpp: the CUDA block size of an actor type (App::kCudaBlockThreads,
// default 128). Shared by pkrt/program.hpp (the launch) and the kernel's __launch_bounds__,
// so the compiler budgets registers for exactly the block size the backend launches.
#pragma once

#include <pkrt/config.hpp>

#include <concepts>
#include <cstdint>

namespace pkrt::detail {

// The CUDA block size of a program that does not set kCudaBlockThreads.
inline constexpr std::uint32_t kDefaultBlockThreads = 128;

template <class App>
PKRT_HD constexpr std::uint32_t cuda_block_threads() {
  if constexpr (requires { { App::kCudaBlockThreads } -> std::convertible_to<std::uint32_t>; }) {
    static_assert(App::kCudaBlockThreads >= 32 && App::kCudaBlockThreads <= 1024 &&
                      App::kCudaBlockThreads % 32 == 0,
                  "pkrt: kCudaBlockThreads must be a multiple of 32 between 32 and 1024");
    return App::kCudaBlockThreads;
  } else {
    return kDefaultBlockThreads;
  }
}

}  // namespace pkrt::detail
