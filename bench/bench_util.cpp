// bench/bench_util.cpp: the CUDA availability check and the context-switch count shared by
// the benchmarks.
#include "bench/bench_util.hpp"
#include "examples/echo/echo.hpp"

#include <fstream>
#include <system_error>

namespace pkrt::bench {

Status cuda_unavailable_reason() {
  static const Status reason = [] {
    RuntimeOptions o;
    o.backend = BackendKind::kCuda;
    o.num_actors = 1;
    o.snapshots = false;
    auto rt = Runtime::create(examples::echo_program(), examples::Echo::Params{}, o);
    return rt.ok() ? Status() : rt.status();
  }();
  return reason;
}

std::optional<std::uint64_t> process_context_switches() {
  std::error_code ec;
  std::filesystem::directory_iterator tasks("/proc/self/task", ec);
  if (ec) return std::nullopt;
  std::uint64_t total = 0;
  for (const auto& task : tasks) {
    // A thread that exits meanwhile has no file any more: it is skipped, its switches lost.
    std::ifstream status(task.path() / "status");
    std::string line;
    while (std::getline(status, line)) {
      for (const char* key : {"voluntary_ctxt_switches:", "nonvoluntary_ctxt_switches:"}) {
        if (line.rfind(key, 0) == 0) total += std::stoull(line.substr(std::char_traits<char>::length(key)));
      }
    }
  }
  return total;
}

}  // namespace pkrt::bench
