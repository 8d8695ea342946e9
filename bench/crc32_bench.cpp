// bench/crc32_bench.cpp: CRC32 (IEEE, zlib-compatible) on the host, every implementation
// on the same buffers:
//   BM_Crc32/isal/<bytes>              ISA-L crc32_gzip_refl (baseline: the fastest known)
//   BM_Crc32/libdeflate/<bytes>        libdeflate_crc32
//   BM_Crc32/zlib/<bytes>              zlib crc32
//   BM_Crc32/pkrt_host/<bytes>         pkrt::crc32, the runtime's host path
//   BM_Crc32/kernel_slice8/<bytes>     the kernels' crc32_update compiled for the host
//   BM_Crc32/kernel_chunked_tN/<bytes> the kernels' slice-by-8 crc32_chunks over N host threads
//                                      (64 KiB chunks) + crc32_combine_chunks: the portable
//                                      kernel code on a CPU, not the runtime's snapshot path
//                                      (the CPU backend's block CRC uses ISA-L)
// Bytes processed are set, so GB/s prints; every variant checks its result against zlib.
// The target comparisons also run paired (the two implementations alternate call by call, so
// a change of machine load hits both alike); the report uses these:
//   BM_Crc32/paired:pkrt_host_vs_isal/<bytes>
//   BM_Crc32/paired:kernel_chunked_t1_vs_kernel_slice8/<bytes>
//   BM_Crc32/paired:kernel_chunked_t2_vs_kernel_chunked_t1/<bytes>
// Counters: a_bytes_per_second, b_bytes_per_second, ratio (a / b); the time is a's.
#include "bench/bench_util.hpp"

#include <pkrt/crc32.hpp>
#include <pkrt/kernels/crc32.hpp>

#include <benchmark/benchmark.h>
#include <isa-l/crc.h>
#include <libdeflate.h>
#include <zlib.h>

#include <atomic>
#include <barrier>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <random>
#include <thread>
#include <vector>

namespace pkrt::bench {
namespace {

constexpr std::uint64_t kChunkBytes = 64 * 1024;

const std::vector<unsigned char>& buffer(std::size_t bytes) {
  static std::map<std::size_t, std::vector<unsigned char>> cache;
  auto it = cache.find(bytes);
  if (it == cache.end()) {
    std::vector<unsigned char> b(bytes);
    std::mt19937_64 rng(bytes);
    for (auto& c : b) c = static_cast<unsigned char>(rng());
    it = cache.emplace(bytes, std::move(b)).first;
  }
  return it->second;
}

std::uint32_t zlib_crc(const unsigned char* p, std::size_t n) {
  uLong crc = crc32(0L, Z_NULL, 0);
  while (n > 0) {
    const uInt step = n > (1u << 30) ? (1u << 30) : static_cast<uInt>(n);
    crc = ::crc32(crc, p, step);
    p += step;
    n -= step;
  }
  return static_cast<std::uint32_t>(crc);
}

// Runs fn(rank, threads) on `threads` threads per call; the workers persist across calls so
// a call costs one barrier hand-off, not a thread start.
class ThreadTeam {
 public:
  explicit ThreadTeam(unsigned threads) : threads_(threads), start_(threads), finish_(threads) {
    for (unsigned r = 1; r < threads; ++r) {
      workers_.emplace_back([this, r] {
        for (;;) {
          start_.arrive_and_wait();
          if (stop_) return;
          job_(r, threads_);
          finish_.arrive_and_wait();
        }
      });
    }
  }
  ~ThreadTeam() {
    stop_ = true;
    start_.arrive_and_wait();
    for (auto& t : workers_) t.join();
  }
  void run(const std::function<void(unsigned, unsigned)>& job) {
    job_ = job;
    start_.arrive_and_wait();  // the barrier orders job_ before the workers read it
    job_(0, threads_);
    finish_.arrive_and_wait();
  }

 private:
  unsigned threads_;
  std::barrier<> start_, finish_;
  std::function<void(unsigned, unsigned)> job_;
  bool stop_ = false;  // written before start_'s arrival, read after it
  std::vector<std::thread> workers_;
};

enum class Impl { kIsal, kLibdeflate, kZlib, kPkrtHost, kKernelSlice8, kKernelChunked };

void BM_Crc32(benchmark::State& state, Impl impl, unsigned threads) {
  const std::size_t bytes = static_cast<std::size_t>(state.range(0));
  const auto& buf = buffer(bytes);
  const unsigned char* p = buf.data();
  const std::uint32_t expect = zlib_crc(p, bytes);
  std::uint32_t got = 0;
  std::unique_ptr<ThreadTeam> team;
  std::vector<std::uint32_t> chunk_crcs(crc::chunk_count(bytes, kChunkBytes));
  if (impl == Impl::kKernelChunked && threads > 1) team = std::make_unique<ThreadTeam>(threads);
  for (auto _ : state) {
    switch (impl) {
      case Impl::kIsal: got = crc32_gzip_refl(0, p, bytes); break;
      case Impl::kLibdeflate: got = libdeflate_crc32(0, p, bytes); break;
      case Impl::kZlib: got = zlib_crc(p, bytes); break;
      case Impl::kPkrtHost: got = pkrt::crc32(p, bytes); break;
      case Impl::kKernelSlice8: got = crc::crc32_update(0, p, bytes); break;
      case Impl::kKernelChunked:
        if (team) {
          team->run([&](unsigned rank, unsigned n) {
            crc::crc32_chunks(p, bytes, kChunkBytes, rank, n, chunk_crcs.data());
          });
        } else {
          crc::crc32_chunks(p, bytes, kChunkBytes, 0, 1, chunk_crcs.data());
        }
        got = crc::crc32_combine_chunks(chunk_crcs.data(), bytes, kChunkBytes);
        break;
    }
    benchmark::DoNotOptimize(got);
  }
  if (got != expect) state.SkipWithError("CRC does not match zlib's");
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * static_cast<std::int64_t>(bytes));
  state.counters["threads"] = threads;
}

// One call of `impl` on `threads` threads (a team of more than one is created by the caller).
std::uint32_t crc_once(Impl impl, const unsigned char* p, std::size_t bytes, ThreadTeam* team,
                       std::vector<std::uint32_t>& chunk_crcs) {
  switch (impl) {
    case Impl::kIsal: return crc32_gzip_refl(0, p, bytes);
    case Impl::kLibdeflate: return libdeflate_crc32(0, p, bytes);
    case Impl::kZlib: return zlib_crc(p, bytes);
    case Impl::kPkrtHost: return pkrt::crc32(p, bytes);
    case Impl::kKernelSlice8: return crc::crc32_update(0, p, bytes);
    case Impl::kKernelChunked:
      if (team != nullptr) {
        team->run([&](unsigned rank, unsigned n) { crc::crc32_chunks(p, bytes, kChunkBytes, rank, n, chunk_crcs.data()); });
      } else {
        crc::crc32_chunks(p, bytes, kChunkBytes, 0, 1, chunk_crcs.data());
      }
      return crc::crc32_combine_chunks(chunk_crcs.data(), bytes, kChunkBytes);
  }
  return 0;
}

struct Side {
  Impl impl;
  unsigned threads;
};

void BM_Crc32Paired(benchmark::State& state, Side a, Side b) {
  const std::size_t bytes = static_cast<std::size_t>(state.range(0));
  const auto& buf = buffer(bytes);
  const std::uint32_t expect = zlib_crc(buf.data(), bytes);
  std::vector<std::uint32_t> crcs_a(crc::chunk_count(bytes, kChunkBytes)), crcs_b(crcs_a.size());
  std::unique_ptr<ThreadTeam> team_a, team_b;
  if (a.threads > 1) team_a = std::make_unique<ThreadTeam>(a.threads);
  if (b.threads > 1) team_b = std::make_unique<ThreadTeam>(b.threads);
  double ta = 0, tb = 0;
  bool ok = true;
  for (auto _ : state) {
    auto t0 = std::chrono::steady_clock::now();
    ok = ok && crc_once(a.impl, buf.data(), bytes, team_a.get(), crcs_a) == expect;
    const double da = seconds_since(t0);
    t0 = std::chrono::steady_clock::now();
    ok = ok && crc_once(b.impl, buf.data(), bytes, team_b.get(), crcs_b) == expect;
    tb += seconds_since(t0);
    ta += da;
    state.SetIterationTime(da);
  }
  if (!ok) state.SkipWithError("CRC does not match zlib's");
  const double total = static_cast<double>(state.iterations()) * static_cast<double>(bytes);
  state.SetBytesProcessed(static_cast<std::int64_t>(total));
  state.counters["a_bytes_per_second"] = ta > 0 ? total / ta : 0.0;
  state.counters["b_bytes_per_second"] = tb > 0 ? total / tb : 0.0;
  state.counters["ratio"] = ta > 0 ? tb / ta : 0.0;  // a's rate over b's
}

void register_all() {
  // 128 bytes: a replay-log record (small-buffer costs); 64 MiB: a large actor state.
  std::vector<std::int64_t> sizes = {128, 4 << 10, 64 << 10, 1 << 20, 64 << 20};
  if (short_level() == 1) sizes = {128, 4 << 10, 1 << 20, 64 << 20};
  if (short_level() == 2) sizes = {64 << 10};
  const std::vector<std::int64_t> big = short_level() == 2 ? sizes : std::vector<std::int64_t>{1 << 20, 64 << 20};
  auto reg = [](const char* name, Impl impl, unsigned threads, const std::vector<std::int64_t>& s) {
    auto* b = benchmark::RegisterBenchmark(name, BM_Crc32, impl, threads);
    for (auto n : s) b->Arg(n);
    if (threads > 1) b->UseRealTime();
  };
  reg("BM_Crc32/isal", Impl::kIsal, 1, sizes);
  reg("BM_Crc32/libdeflate", Impl::kLibdeflate, 1, sizes);
  reg("BM_Crc32/zlib", Impl::kZlib, 1, sizes);
  reg("BM_Crc32/pkrt_host", Impl::kPkrtHost, 1, sizes);
  reg("BM_Crc32/kernel_slice8", Impl::kKernelSlice8, 1, sizes);
  reg("BM_Crc32/kernel_chunked_t1", Impl::kKernelChunked, 1, big);
  const unsigned hw = std::max(2u, std::thread::hardware_concurrency());
  reg("BM_Crc32/kernel_chunked_t2", Impl::kKernelChunked, 2, big);
  if (hw >= 4 && short_level() == 0) reg("BM_Crc32/kernel_chunked_t4", Impl::kKernelChunked, 4, big);
  auto pair = [&](const char* name, Side a, Side b) {
    auto* bm = benchmark::RegisterBenchmark(name, BM_Crc32Paired, a, b)->UseManualTime();
    for (auto n : big) bm->Arg(n);
  };
  pair("BM_Crc32/paired:pkrt_host_vs_isal", {Impl::kPkrtHost, 1}, {Impl::kIsal, 1});
  pair("BM_Crc32/paired:kernel_chunked_t1_vs_kernel_slice8", {Impl::kKernelChunked, 1}, {Impl::kKernelSlice8, 1});
  pair("BM_Crc32/paired:kernel_chunked_t2_vs_kernel_chunked_t1", {Impl::kKernelChunked, 2}, {Impl::kKernelChunked, 1});
}

const bool registered = (register_all(), true);

}  // namespace
}  // namespace pkrt::bench
