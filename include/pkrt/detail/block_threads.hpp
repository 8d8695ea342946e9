// pkrt/detail/block_threads.hpp: the CUDA block size of an actor type (App::kCudaBlockThreads,
// default 128). Shared by pkrt/program.hpp (the launch) and the kernel's __launch_bounds__,
// so the compiler budgets registers for exactly the block size the backend launches.
#pragma once

#include <concepts>
#include <cstdint>

namespace pkrt::detail {

template <class App>
constexpr std::uint32_t cuda_block_threads() {
  if constexpr (requires { { App::kCudaBlockThreads } -> std::convertible_to<std::uint32_t>; }) {
    static_assert(App::kCudaBlockThreads >= 32 && App::kCudaBlockThreads <= 1024 &&
                      App::kCudaBlockThreads % 32 == 0,
                  "pkrt: kCudaBlockThreads must be a multiple of 32 between 32 and 1024");
    return App::kCudaBlockThreads;
  } else {
    return 128;
  }
}

}  // namespace pkrt::detail
