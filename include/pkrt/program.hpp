// pkrt/program.hpp: turns an actor type into a Program: the type-erased bundle (layout,
// CPU block entry, CUDA kernel) that pkrt::Runtime launches.
//
// Contract
// - Call pkrt::make_program<App>() in exactly one translation unit of your application and
//   expose it through a plain function, e.g.
//       const pkrt::Program& heat2d_program() { return pkrt::make_program<Heat2d>(); }
//   Compile that TU as CUDA (nvcc; CMake: LANGUAGE CUDA) to get the CUDA kernel too; compiled
//   by a host compiler it yields a CPU-only program, and Runtime refuses --backend cuda for
//   it with a message saying so.
// - The returned reference is to a function-local static: valid for the whole program.
// - Thread safety: make_program may be called from any thread (static initialisation).
#pragma once

#include <pkrt/actor.hpp>
#include <pkrt/config.hpp>
#include <pkrt/detail/block_platform.hpp>
#include <pkrt/detail/block_threads.hpp>
#include <pkrt/detail/kernel_args.hpp>

#include <cstddef>
#include <cstdint>

#if defined(__CUDACC__)
#include <pkrt/cuda/persistent_kernel.cuh>
#endif
#include <pkrt/kernels/persistent_loop.hpp>

namespace pkrt {

// Sizes of everything an app needs per actor and per grid, for given params.
struct ProgramLayout {
  std::uint64_t state_bytes = 0;  // sizeof(App::State)
  std::uint32_t region_count = 0;
  const char* region_names[detail::kMaxRegions] = {};
  std::uint64_t region_bytes[detail::kMaxRegions] = {};  // largest over all actors
  std::uint32_t k2k_channels = 0;
  std::uint64_t k2k_payload_bytes = 0;
  std::uint64_t global_bytes = 0;
};

struct Program {
  const char* name;
  std::size_t params_bytes;
  ProgramLayout (*layout)(const void* params, std::uint32_t num_actors);
  void (*run_block_cpu)(const detail::KernelArgs& args, const detail::BlockEnv& env);
  const void* cuda_kernel;  // __global__ void(KernelArgs), or nullptr without nvcc
  std::uint32_t cuda_block_threads;
  bool event_driven;
  // The app's check_params: nullptr when the params suit `num_actors`, else what is wrong
  // and how to fix it. nullptr when the app defines none.
  const char* (*check_params)(const void* params, std::uint32_t num_actors);
  // App::kVersion (0 when the app declares none): bump it when a change keeps the layout
  // but changes what the state means, so checkpoints of the old program are refused.
  std::uint32_t version;
};

namespace detail {

template <class App>
ProgramLayout program_layout(const void* params_ptr, std::uint32_t num_actors) {
  const auto& params = *static_cast<const typename App::Params*>(params_ptr);
  ProgramLayout layout;
  layout.state_bytes = sizeof(typename App::State);
  if constexpr (ActorHasRegions<App>) {
    layout.region_count = actor_region_count<App>();
    for (std::uint32_t r = 0; r < layout.region_count; ++r) {
      layout.region_names[r] = App::kRegionNames[r];
      for (std::uint32_t a = 0; a < num_actors; ++a) {
        const std::uint64_t bytes = App::region_bytes(params, r, a, num_actors);
        if (bytes > layout.region_bytes[r]) layout.region_bytes[r] = bytes;
      }
    }
  }
  if constexpr (ActorHasK2K<App>) {
    layout.k2k_channels = App::kK2KChannels;
    layout.k2k_payload_bytes = App::k2k_payload_bytes(params);
  }
  if constexpr (ActorHasGlobal<App>) layout.global_bytes = App::global_bytes(params);
  return layout;
}

template <class App>
constexpr auto check_params_entry() -> const char* (*)(const void*, std::uint32_t) {
  if constexpr (ActorHasParamCheck<App>) {
    return [](const void* params, std::uint32_t num_actors) -> const char* {
      return App::check_params(*static_cast<const typename App::Params*>(params), num_actors);
    };
  } else {
    return nullptr;
  }
}

template <class App>
constexpr std::uint32_t program_version() {
  if constexpr (requires { App::kVersion; }) return static_cast<std::uint32_t>(App::kVersion);
  else return 0;
}

template <class App>
void run_block_cpu(const KernelArgs& args, const BlockEnv& env) {
  run_persistent_block<App>(args, env);
}


}  // namespace detail

template <class App>
const Program& make_program() {
  static_assert(check_actor_definition<App>());
  static const Program program{
      App::kName,
      sizeof(typename App::Params),
      &detail::program_layout<App>,
      &detail::run_block_cpu<App>,
#if defined(__CUDACC__)
      cuda_detail::persistent_kernel_address<App>(),
#else
      nullptr,
#endif
      detail::cuda_block_threads<App>(),
      !actor_steps_when_idle<App>(),
      detail::check_params_entry<App>(),
      detail::program_version<App>(),
  };
  return program;
}

}  // namespace pkrt
