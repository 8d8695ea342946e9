// bench/latency_histogram.hpp: the round-trip benchmarks' side of the latency histogram
// (host/latency_histogram.hpp): percentiles as benchmark counters and the CDF file for
// bench/report.py.
#pragma once

#include "host/latency_histogram.hpp"

#include <benchmark/benchmark.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

namespace pkrt::bench {

using detail::LatencyHistogram;

// Sets the counters p50_ns, p99_ns, p999_ns (p99.9) and samples on `state`, and, when
// $PKRT_BENCH_CDF_DIR is set (bench/report.sh), writes the CDF to <dir>/<name>.cdf for the
// report's plot. `name` is the benchmark's name as registered (the file says it).
inline void publish_latency(benchmark::State& state, const LatencyHistogram& histogram, const std::string& name) {
  state.counters["p50_ns"] = histogram.percentile(50);
  state.counters["p99_ns"] = histogram.percentile(99);
  state.counters["p999_ns"] = histogram.percentile(99.9);
  state.counters["samples"] = static_cast<double>(histogram.count());
  const char* dir = std::getenv("PKRT_BENCH_CDF_DIR");
  if (dir == nullptr || *dir == '\0' || histogram.count() == 0) return;
  std::string file = name;
  for (char& c : file)
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_')) c = '_';
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  std::ofstream out(std::filesystem::path(dir) / (file + ".cdf"));
  histogram.write_cdf(out, name);
}

}  // namespace pkrt::bench
