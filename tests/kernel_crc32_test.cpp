// KernelCrc32: the kernels' CRC32 (host pass) is bit-identical to zlib's and libdeflate's
// for every length class, and the chunked-and-combined form does not depend on chunk size,
// thread count or the order threads run in.
#include <pkrt/crc32.hpp>
#include <pkrt/kernels/crc32.hpp>

#include <gtest/gtest.h>
#include <libdeflate.h>
#include <zlib.h>

#include <algorithm>
#include <cstdint>
#include <random>
#include <vector>

namespace pkrt::crc {
namespace {

constexpr std::uint64_t kChunk = 64 * 1024;

std::vector<unsigned char> random_bytes(std::size_t n, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<unsigned char> v(n);
  for (auto& b : v) b = static_cast<unsigned char>(rng());
  return v;
}

std::uint32_t zlib_crc(const unsigned char* p, std::size_t n) {
  return static_cast<std::uint32_t>(::crc32(0L, p, static_cast<uInt>(n)));
}

const std::vector<std::size_t>& lengths() {
  static const std::vector<std::size_t> v = {0, 1, 2, 3, 7, 8, 9, 15, 16, 17, 63, 64, 65, 255, 1000,
                                             kChunk - 1, kChunk, kChunk + 1, 3 * kChunk + 12345};
  return v;
}

TEST(KernelCrc32, MatchesZlibAndLibdeflateForEveryLengthClass) {
  const auto data = random_bytes(3 * kChunk + 20000, 11);
  for (std::size_t n : lengths()) {
    const std::uint32_t expected = zlib_crc(data.data(), n);
    EXPECT_EQ(crc32_update(0, data.data(), n), expected) << "length " << n;
    EXPECT_EQ(static_cast<std::uint32_t>(libdeflate_crc32(0, data.data(), n)), expected) << "length " << n;
    EXPECT_EQ(pkrt::crc32(data.data(), n), expected) << "host (ISA-L) path, length " << n;
  }
}

TEST(KernelCrc32, UnalignedStartsMatchZlib) {
  const auto data = random_bytes(4096, 12);
  for (std::size_t off = 0; off < 16; ++off)
    for (std::size_t n : {0u, 1u, 9u, 100u, 1000u})
      EXPECT_EQ(crc32_update(0, data.data() + off, n), zlib_crc(data.data() + off, n)) << off << "+" << n;
}

TEST(KernelCrc32, RunningUpdateMatchesOneShot) {
  const auto data = random_bytes(10000, 13);
  std::uint32_t c = 0;
  for (std::size_t off = 0; off < data.size(); off += 777)
    c = crc32_update(c, data.data() + off, std::min<std::size_t>(777, data.size() - off));
  EXPECT_EQ(c, zlib_crc(data.data(), data.size()));
}

TEST(KernelCrc32, CombineMatchesZlibCombineAndTheWholeBuffer) {
  const auto data = random_bytes(200000, 14);
  std::mt19937_64 rng(15);
  for (int i = 0; i < 200; ++i) {
    const std::size_t split = rng() % data.size();
    const std::uint32_t a = zlib_crc(data.data(), split);
    const std::uint32_t b = zlib_crc(data.data() + split, data.size() - split);
    const std::uint32_t combined = crc32_combine(a, b, data.size() - split);
    EXPECT_EQ(combined, static_cast<std::uint32_t>(::crc32_combine(a, b, static_cast<z_off_t>(data.size() - split))));
    EXPECT_EQ(combined, zlib_crc(data.data(), data.size())) << "split at " << split;
  }
  EXPECT_EQ(crc32_combine(0x12345678u, 0, 0), 0x12345678u) << "an empty suffix changes nothing";
}

TEST(KernelCrc32, ChunkedValueDoesNotDependOnChunkSizeThreadsOrOrder) {
  const auto data = random_bytes(5 * kChunk + 999, 16);
  std::mt19937_64 rng(17);
  for (std::size_t n : lengths()) {
    const std::uint32_t expected = zlib_crc(data.data(), n);
    for (std::uint64_t chunk : {std::uint64_t{1}, std::uint64_t{64}, std::uint64_t{4096}, kChunk}) {
      if (n / chunk > 100000) continue;  // 1-byte chunks only for short buffers
      for (std::uint64_t threads : {1u, 2u, 3u, 7u, 32u}) {
        std::vector<std::uint32_t> crcs(chunk_count(n, chunk) + 1, 0xDEADBEEFu);
        std::vector<std::uint64_t> ranks(threads);
        for (std::uint64_t r = 0; r < threads; ++r) ranks[r] = r;
        std::shuffle(ranks.begin(), ranks.end(), rng);  // threads finish in any order
        for (std::uint64_t r : ranks) crc32_chunks(data.data(), n, chunk, r, threads, crcs.data());
        EXPECT_EQ(crc32_combine_chunks(crcs.data(), n, chunk), expected)
            << "length " << n << ", chunk " << chunk << ", threads " << threads;
        EXPECT_EQ(crcs[chunk_count(n, chunk)], 0xDEADBEEFu) << "wrote past the chunk table";
      }
    }
  }
}

}  // namespace
}  // namespace pkrt::crc
