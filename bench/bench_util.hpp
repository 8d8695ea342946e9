// bench/bench_util.hpp: helpers shared by the benchmark files: short mode, scratch
// directories, CUDA availability, context-switch counts, and running a benchmark body on a
// fixed batch.
#pragma once

#include <pkrt/runtime.hpp>
#include <pkrt/status.hpp>

#include <benchmark/benchmark.h>

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <optional>
#include <string>

namespace pkrt::bench {

// PKRT_BENCH_SHORT=1 (bench/report.sh) trims sizes and iterations so the whole suite runs in
// a few minutes on 2 cores; PKRT_BENCH_SHORT=smoke (ctest) trims to the bare minimum.
inline int short_level() {
  const char* v = std::getenv("PKRT_BENCH_SHORT");
  if (v == nullptr || *v == '\0' || std::string(v) == "0") return 0;
  return std::string(v) == "smoke" ? 2 : 1;
}

// A fresh directory for files a benchmark writes: $PKRT_BENCH_DIR, else the build directory's
// working directory (a real disk: /tmp may be tmpfs, where fsync costs nothing).
inline std::filesystem::path scratch_dir(const std::string& name) {
  const char* root = std::getenv("PKRT_BENCH_DIR");
  std::filesystem::path dir = root != nullptr && *root != '\0' ? std::filesystem::path(root)
                                                                 : std::filesystem::current_path() / "bench-scratch";
  dir /= name;
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
  std::filesystem::create_directories(dir);
  return dir;
}

// Why the CUDA backend cannot be used here (ok when it can). Checked once.
Status cuda_unavailable_reason();

// Skips `state` with a message when the CUDA backend is unavailable; true when skipped.
inline bool skip_without_cuda(benchmark::State& state) {
  const Status& why = cuda_unavailable_reason();
  if (why.ok()) return false;
  state.SkipWithError(("no CUDA GPU: " + why.message()).c_str());
  return true;
}

// Context switches (voluntary and involuntary) of every thread of this process so far, from
// /proc/self/task/*/status; nullopt where that is unavailable. A round trip in which no thread
// sleeps or is preempted adds none: the difference over a timed loop, per operation, tells a
// spinning hand-off from one through the scheduler.
std::optional<std::uint64_t> process_context_switches();

// Sets the counter switches_per_op to the context switches since `before` per operation.
inline void publish_switches(benchmark::State& state, std::optional<std::uint64_t> before, double operations) {
  const std::optional<std::uint64_t> after = process_context_switches();
  if (before && after && *after >= *before && operations > 0)
    state.counters["switches_per_op"] = static_cast<double>(*after - *before) / operations;
}

inline double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

inline const char* backend_label(BackendKind kind) { return kind == BackendKind::kCuda ? "cuda" : "cpu"; }

}  // namespace pkrt::bench
