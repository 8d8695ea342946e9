// bench/bench_util.cpp: the CUDA availability check shared by the benchmarks.
#include "bench/bench_util.hpp"
#include "examples/echo/echo.hpp"

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

}  // namespace pkrt::bench
