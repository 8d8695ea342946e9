// tests/test_support.hpp: small helpers shared by the runtime test files.
#pragma once

#include <pkrt/runtime.hpp>

#include <cstdint>

namespace pkrt::testing {

// Options for a CPU-backend runtime with `actors` actors on `threads` worker threads.
inline RuntimeOptions cpu_runtime(std::uint32_t actors, std::uint32_t threads,
                                  std::uint32_t chunk_bytes = 64 * 1024) {
  RuntimeOptions o;
  o.backend = BackendKind::kCpu;
  o.num_actors = actors;
  o.threads = threads;
  o.chunk_bytes = chunk_bytes;
  return o;
}

}  // namespace pkrt::testing
