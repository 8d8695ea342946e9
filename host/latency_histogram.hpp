// host/latency_histogram.hpp: a log-bucketed latency histogram: percentiles (p50, p99, p99.9)
// in constant memory however many samples are recorded (`pkrt run --app echo`, the round-trip
// benchmarks), and a CDF dump for bench/report.py.
//
// Contract
// - Records nanoseconds. Buckets are exact below 64 ns, then 64 per power of two, so a bucket
//   is at most 1/64 (1.6%) of its lower bound wide; the range covers 10 ns .. 1 s with room to
//   spare (values above kMaxNs, ~2.1 s, are counted as kMaxNs).
// - record() costs a bit-width, a shift and an increment: no allocation and no floating point,
//   so timing every iteration does not disturb what is timed beyond the clock reads.
// - percentile(p) returns the middle of the bucket holding the sample of rank ceil(p% of count),
//   clamped to the smallest and largest value recorded (so p0 and p100 are exact).
// - Not thread-safe: one thread records at a time (a caller handing it between threads orders
//   the hand-off itself).
// - Host only; header-only so that CUDA sources (bench/cuda_bench.cu) can use it too.
#pragma once

#include <algorithm>
#include <bit>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <limits>
#include <ostream>
#include <string>
#include <vector>

namespace pkrt::detail {

class LatencyHistogram {
 public:
  static constexpr int kSubBucketBits = 6;
  static constexpr std::uint64_t kSubBuckets = std::uint64_t{1} << kSubBucketBits;
  static constexpr int kMaxBits = 31;
  static constexpr std::uint64_t kMaxNs = (std::uint64_t{1} << kMaxBits) - 1;
  static constexpr std::size_t kBuckets = kSubBuckets * (kMaxBits - kSubBucketBits + 1);

  static constexpr std::size_t bucket_of(std::uint64_t ns) {
    if (ns < kSubBuckets) return static_cast<std::size_t>(ns);
    const int shift = static_cast<int>(std::bit_width(ns)) - 1 - kSubBucketBits;
    return static_cast<std::size_t>(kSubBuckets * static_cast<std::uint64_t>(shift) + (ns >> shift));
  }
  static constexpr std::uint64_t bucket_width(std::size_t bucket) {
    return bucket < 2 * kSubBuckets ? 1 : std::uint64_t{1} << (bucket / kSubBuckets - 1);
  }
  static constexpr std::uint64_t bucket_low(std::size_t bucket) {
    return bucket < 2 * kSubBuckets ? bucket : (bucket % kSubBuckets + kSubBuckets) * bucket_width(bucket);
  }

  LatencyHistogram() : counts_(kBuckets, 0) {}

  void record(std::uint64_t ns) {
    ns = std::min(ns, kMaxNs);
    ++counts_[bucket_of(ns)];
    ++count_;
    sum_ns_ += ns;
    min_ns_ = std::min(min_ns_, ns);
    max_ns_ = std::max(max_ns_, ns);
  }
  void record(std::chrono::nanoseconds elapsed) {
    record(elapsed.count() > 0 ? static_cast<std::uint64_t>(elapsed.count()) : 0);
  }

  std::uint64_t count() const { return count_; }
  double mean_ns() const { return count_ == 0 ? 0.0 : static_cast<double>(sum_ns_) / static_cast<double>(count_); }
  std::uint64_t min_ns() const { return count_ == 0 ? 0 : min_ns_; }
  std::uint64_t max_ns() const { return max_ns_; }

  // p in [0, 100]: 50 for the median, 99.9 for p99.9. 0 when nothing was recorded.
  double percentile(double p) const {
    if (count_ == 0) return 0.0;
    const double wanted = std::clamp(p, 0.0, 100.0) / 100.0 * static_cast<double>(count_);
    const auto rank = std::max<std::uint64_t>(1, static_cast<std::uint64_t>(std::ceil(wanted)));
    std::uint64_t seen = 0;
    for (std::size_t b = 0; b < kBuckets; ++b) {
      seen += counts_[b];
      if (seen >= rank) {
        const double middle = static_cast<double>(bucket_low(b)) + static_cast<double>(bucket_width(b) - 1) / 2.0;
        return std::clamp(middle, static_cast<double>(min_ns_), static_cast<double>(max_ns_));
      }
    }
    return static_cast<double>(max_ns_);
  }

  // The CDF, one line per non-empty bucket: "<bucket's upper edge, ns> <fraction of samples
  // below it>", after a first line "<lowest bucket's lower edge> 0" and '#' comment lines naming
  // the benchmark and its sample count (gnuplot reads it as is; bench/report.py reads the name).
  void write_cdf(std::ostream& out, const std::string& benchmark_name) const {
    out << "# benchmark: " << benchmark_name << "\n# samples: " << count_ << " min_ns: " << min_ns()
        << " max_ns: " << max_ns_ << "\n# upper_edge_ns cumulative_fraction\n";
    out.precision(9);  // the tail needs its digits: 0.999 and 0.9999 must differ
    if (count_ != 0) out << bucket_low(bucket_of(min_ns_)) << " 0\n";  // where the curve starts
    std::uint64_t seen = 0;
    for (std::size_t b = 0; b < kBuckets; ++b) {
      if (counts_[b] == 0) continue;
      seen += counts_[b];
      out << bucket_low(b) + bucket_width(b) << ' ' << static_cast<double>(seen) / static_cast<double>(count_) << '\n';
    }
  }

 private:
  std::vector<std::uint64_t> counts_;
  std::uint64_t count_ = 0;
  std::uint64_t sum_ns_ = 0;
  std::uint64_t min_ns_ = std::numeric_limits<std::uint64_t>::max();
  std::uint64_t max_ns_ = 0;
};

static_assert(LatencyHistogram::kBuckets == LatencyHistogram::bucket_of(LatencyHistogram::kMaxNs) + 1,
              "kBuckets holds the bucket of kMaxNs, the largest value recorded");
static_assert(LatencyHistogram::bucket_low(LatencyHistogram::bucket_of(1000)) <= 1000 &&
                  1000 < LatencyHistogram::bucket_low(LatencyHistogram::bucket_of(1000)) +
                             LatencyHistogram::bucket_width(LatencyHistogram::bucket_of(1000)),
              "a value lies in the bucket bucket_of() gives it");

}  // namespace pkrt::detail
