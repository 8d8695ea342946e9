// bench/compress_bench.cpp: zstd on a heat2d field (float32, after 200 diffusion epochs of
// a random initial field), compressed per 64 KiB chunk as checkpoint files store it, with and
// without the checkpoint format's shuffle filters (4-byte elements).
//   BM_Compress/level:<L>/shuffle:<0|1>   counters: ratio (raw / compressed), bytes_per_second
//                                         0: none; 1: byte shuffle (filter 1)
//   BM_Compress/level:<L>/shuffle:delta   32-bit word deltas, then the byte shuffle (filter 2,
//                                         what checkpoints use by default)
// Filters are inside the timed region (the checkpoint writer pays for them too).
#include "bench/bench_util.hpp"
#include "checkpoint/byte_shuffle.hpp"
#include "examples/heat2d/heat2d_host.hpp"

#include <benchmark/benchmark.h>
#include <zstd.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

namespace pkrt::bench {
namespace {

constexpr std::size_t kChunkBytes = 64 * 1024;

const std::vector<float>& heat2d_field() {
  static const std::vector<float> field = [] {
    examples::Heat2d::Params p;
    p.width = 512;
    p.height = 512;
    p.stats_every = 0;
    return examples::heat2d_reference(p, 200, {});
  }();
  return field;
}

enum class Filter { kNone, kShuffle, kDeltaShuffle };

void BM_Compress(benchmark::State& state, int level, Filter filter) {
  const auto& field = heat2d_field();
  const auto* raw = reinterpret_cast<const std::byte*>(field.data());
  const std::size_t bytes = field.size() * sizeof(float);
  ZSTD_CCtx* cctx = ZSTD_createCCtx();
  std::vector<std::byte> shuffled(kChunkBytes);
  std::vector<std::byte> out(ZSTD_compressBound(kChunkBytes));
  std::size_t compressed = 0;
  for (auto _ : state) {
    compressed = 0;
    for (std::size_t off = 0; off < bytes; off += kChunkBytes) {
      const std::size_t n = std::min(kChunkBytes, bytes - off);
      const std::byte* src = raw + off;
      if (filter == Filter::kShuffle) {
        byte_shuffle(src, shuffled.data(), n, 4);
        src = shuffled.data();
      } else if (filter == Filter::kDeltaShuffle) {
        delta_byte_shuffle(src, shuffled.data(), n, 4);
        src = shuffled.data();
      }
      const std::size_t c = ZSTD_compressCCtx(cctx, out.data(), out.size(), src, n, level);
      if (ZSTD_isError(c)) {
        state.SkipWithError(ZSTD_getErrorName(c));
        break;
      }
      compressed += std::min(c, n);  // the checkpoint stores a chunk raw when zstd does not help
    }
    benchmark::DoNotOptimize(compressed);
  }
  ZSTD_freeCCtx(cctx);
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * static_cast<std::int64_t>(bytes));
  state.counters["ratio"] = compressed == 0 ? 0.0 : static_cast<double>(bytes) / static_cast<double>(compressed);
  state.counters["raw_bytes"] = static_cast<double>(bytes);
}

void register_all() {
  std::vector<int> levels = {1, 3, 9};
  if (short_level() >= 1) levels = {1, 3};
  if (short_level() == 2) levels = {1};
  for (int level : levels) {
    const std::string base = "BM_Compress/level:" + std::to_string(level) + "/shuffle:";
    benchmark::RegisterBenchmark((base + "0").c_str(), BM_Compress, level, Filter::kNone);
    benchmark::RegisterBenchmark((base + "1").c_str(), BM_Compress, level, Filter::kShuffle);
    benchmark::RegisterBenchmark((base + "delta").c_str(), BM_Compress, level, Filter::kDeltaShuffle);
  }
}

const bool registered = (register_all(), true);

}  // namespace
}  // namespace pkrt::bench
