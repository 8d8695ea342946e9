// DeviceCrc: the block CRC code the snapshot and digest kernels run (kernels/block_crc32.hpp,
// summarize_chunks in kernels/snapshot.hpp), on the host pass: its chunk, image and digest CRCs
// equal pkrt::crc32 for every image size class, and no split of the work over threads (each
// chunk over parts, the chunks over runs, the runs' reduction tree) changes a value.
#include <pkrt/crc32.hpp>
#include <pkrt/kernels/block_crc32.hpp>
#include <pkrt/kernels/crc32.hpp>
#include <pkrt/kernels/snapshot.hpp>

#include <gtest/gtest.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <random>
#include <vector>

namespace pkrt {
namespace {

constexpr std::uint64_t kChunk = 64 * 1024;
constexpr std::uint32_t kBlockThreads = 128;  // the block size the host pass is compiled for
constexpr std::uint64_t kSeed = 20261111;

std::vector<std::byte> random_bytes(std::size_t n, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<std::byte> v(n);
  for (auto& b : v) b = static_cast<std::byte>(rng());
  return v;
}

// 1 byte, under one chunk, exactly N chunks, N chunks + 1 byte, and a ragged last chunk.
const std::vector<std::uint64_t>& image_sizes() {
  static const std::vector<std::uint64_t> v = {1, 1000, kChunk - 1, kChunk, 3 * kChunk, 3 * kChunk + 1,
                                               5 * kChunk + 12345};
  return v;
}

// Thread counts a block may have (multiples of 32 up to 1024) and odd ones the split must
// also survive.
const std::vector<std::uint32_t>& part_counts() {
  static const std::vector<std::uint32_t> v = {1, 2, 3, 7, 32, 96, 128, 1000, 1024};
  return v;
}

std::uint32_t plain_crc(const std::byte* p, std::uint64_t n) { return crc32(p, static_cast<std::size_t>(n)); }

TEST(DeviceCrc, RangeSplitGivesThePlainCrcForEveryPartCount) {
  std::printf("[ seed ] %llu\n", static_cast<unsigned long long>(kSeed));
  for (const std::uint64_t bytes : std::vector<std::uint64_t>{0, 1, 63, 64, 65, 1000, kChunk - 1, kChunk, kChunk + 1}) {
    const std::vector<std::byte> data = random_bytes(bytes + 1, kSeed + bytes);
    // From an aligned and from an odd start: the device's 16-byte loads need a byte-wise lead-in.
    for (const std::uint64_t start : {0, 1}) {
      const std::byte* p = data.data() + start;
      for (const std::uint32_t parts : part_counts()) {
        EXPECT_EQ(crc::crc32_of_range_split(p, bytes, parts), plain_crc(p, bytes))
            << bytes << " bytes from offset " << start << " over " << parts << " parts, seed " << kSeed;
      }
    }
  }
}

TEST(DeviceCrc, RangePartsTileTheRangeInOrderOnCacheLines) {
  for (const std::uint64_t bytes : std::vector<std::uint64_t>{0, 1, 100, kChunk, 3 * kChunk + 1}) {
    for (const std::uint32_t parts : part_counts()) {
      std::uint64_t next = 0;
      for (std::uint32_t t = 0; t < parts; ++t) {
        const crc::Crc32Part part = crc::crc32_part(bytes, parts, t);
        EXPECT_EQ(part.begin, next) << bytes << " bytes, part " << t << " of " << parts;
        EXPECT_LE(part.begin, part.end);
        EXPECT_TRUE(part.begin == bytes || part.begin % 64 == 0) << part.begin;
        next = part.end;
      }
      EXPECT_EQ(next, bytes) << bytes << " bytes over " << parts << " parts";
    }
  }
}

TEST(DeviceCrc, ChunkCrcsEqualThePlainCrcOfEachChunkForOddImageSizes) {
  const crc::Crc32Slices& tables = detail::block_crc32_tables();
  for (const std::uint64_t bytes : image_sizes()) {
    const std::vector<std::byte> image = random_bytes(bytes, kSeed ^ bytes);
    std::vector<std::uint32_t> crcs(crc::chunk_count(bytes, kChunk), 0);
    detail::block_crc32_chunks<kBlockThreads>(tables, image.data(), bytes, kChunk, crcs.data());
    for (std::uint64_t c = 0; c < crcs.size(); ++c) {
      const std::uint64_t n = std::min(kChunk, bytes - c * kChunk);
      const std::uint32_t expected = plain_crc(image.data() + c * kChunk, n);
      EXPECT_EQ(crcs[c], expected) << "chunk " << c << " of a " << bytes << "-byte image, seed " << kSeed;
      // What a block of `parts` threads computes for this chunk (block_crc32_chunks splits each
      // chunk like this).
      for (const std::uint32_t parts : part_counts()) {
        EXPECT_EQ(crc::crc32_of_range_split(image.data() + c * kChunk, n, parts), expected)
            << "chunk " << c << " of a " << bytes << "-byte image over " << parts << " parts";
      }
    }
  }
}

TEST(DeviceCrc, ImageCrcEqualsThePlainCrcAndCountsEveryChunkOfAFullSnapshot) {
  for (const std::uint64_t bytes : image_sizes()) {
    const std::vector<std::byte> image = random_bytes(bytes, kSeed + 7 * bytes);
    const auto chunks = static_cast<std::uint32_t>(crc::chunk_count(bytes, kChunk));
    std::vector<std::uint32_t> crcs(chunks), prev(chunks, 0);
    std::vector<std::uint8_t> changed(chunks, 0);
    for (std::uint32_t c = 0; c < chunks; ++c)
      crcs[c] = plain_crc(image.data() + c * kChunk, std::min(kChunk, bytes - c * kChunk));
    const detail::SnapshotSummary summary = detail::summarize_chunks<kBlockThreads>(
        crcs.data(), prev.data(), changed.data(), chunks, bytes, kChunk, /*all=*/true);
    EXPECT_EQ(summary.image_crc, plain_crc(image.data(), bytes)) << bytes << "-byte image, seed " << kSeed;
    EXPECT_EQ(summary.changed, chunks);
    EXPECT_EQ(prev, crcs) << "the new chunk CRCs become the previous ones";
    EXPECT_EQ(std::count(changed.begin(), changed.end(), std::uint8_t{1}), chunks);
  }
}

TEST(DeviceCrc, DeltaSummaryMarksExactlyTheChunksWhoseCrcChanged) {
  constexpr std::uint32_t kChunks = 9;
  std::mt19937_64 rng(kSeed);
  std::vector<std::uint32_t> prev(kChunks), crcs(kChunks);
  for (auto& c : prev) c = static_cast<std::uint32_t>(rng());
  crcs = prev;
  crcs[0] ^= 1u;
  crcs[4] ^= 0x80000000u;
  crcs[8] += 1u;
  const std::vector<std::uint32_t> next = crcs;
  std::vector<std::uint8_t> changed(kChunks, 7);
  const detail::SnapshotSummary summary = detail::summarize_chunks<kBlockThreads>(
      crcs.data(), prev.data(), changed.data(), kChunks, kChunks * kChunk, kChunk, /*all=*/false);
  EXPECT_EQ(summary.changed, 3u);
  EXPECT_EQ(changed, (std::vector<std::uint8_t>{1, 0, 0, 0, 1, 0, 0, 0, 1}));
  EXPECT_EQ(prev, next);
  EXPECT_EQ(summary.image_crc, crc::crc32_combine_chunks(next.data(), kChunks * kChunk, kChunk));
}

// summarize_chunks on a device: thread t folds chunk_run(chunks, threads, t) in order, and
// BlockReduce concatenates the runs in thread order, pairing neighbours in a tree (CUB's warp
// reductions). Simulated here for every thread count, with a pairwise tree: the value is the
// sequential fold's.
TEST(DeviceCrc, ImageCrcDoesNotDependOnHowChunkRunsAreSplitOrReduced) {
  for (const std::uint64_t bytes : image_sizes()) {
    const std::vector<std::byte> image = random_bytes(bytes, kSeed - bytes);
    const auto chunks = static_cast<std::uint32_t>(crc::chunk_count(bytes, kChunk));
    std::vector<std::uint32_t> crcs(chunks);
    for (std::uint32_t c = 0; c < chunks; ++c)
      crcs[c] = plain_crc(image.data() + c * kChunk, std::min(kChunk, bytes - c * kChunk));
    for (const std::uint32_t threads : part_counts()) {
      std::vector<crc::Crc32Span> runs(threads, crc::Crc32Span{0, 0});
      std::uint32_t next = 0;
      for (std::uint32_t t = 0; t < threads; ++t) {
        const detail::ChunkRun run = detail::chunk_run(chunks, threads, t);
        ASSERT_EQ(run.first, next) << "runs cover the chunks in thread order";
        ASSERT_LE(run.first, run.last);
        for (std::uint32_t c = run.first; c < run.last; ++c)
          runs[t] = crc::Crc32Concat{}(runs[t], {crcs[c], std::min(kChunk, bytes - std::uint64_t{c} * kChunk)});
        next = run.last;
      }
      ASSERT_EQ(next, chunks);
      for (std::size_t width = 1; width < runs.size(); width *= 2)
        for (std::size_t i = 0; i + width < runs.size(); i += 2 * width)
          runs[i] = crc::Crc32Concat{}(runs[i], runs[i + width]);
      EXPECT_EQ(runs[0].crc, plain_crc(image.data(), bytes)) << bytes << " bytes over " << threads << " threads";
      EXPECT_EQ(runs[0].bytes, bytes);
    }
  }
}

TEST(DeviceCrc, ConcatenationIsOrderSensitive) {
  const std::vector<std::byte> a = random_bytes(100, kSeed), b = random_bytes(37, kSeed + 1);
  const crc::Crc32Span sa{plain_crc(a.data(), a.size()), a.size()}, sb{plain_crc(b.data(), b.size()), b.size()};
  std::vector<std::byte> ab = a;
  ab.insert(ab.end(), b.begin(), b.end());
  EXPECT_EQ(crc::Crc32Concat{}(sa, sb).crc, plain_crc(ab.data(), ab.size()));
  EXPECT_NE(crc::Crc32Concat{}(sb, sa).crc, crc::Crc32Concat{}(sa, sb).crc)
      << "a commutative-only reduction (BLOCK_REDUCE_RAKING_COMMUTATIVE_ONLY) would be wrong here";
  EXPECT_EQ(crc::Crc32Concat{}(crc::Crc32Span{0, 0}, sa).crc, sa.crc) << "{0, 0} is the identity";
  EXPECT_EQ(crc::Crc32Concat{}(sa, crc::Crc32Span{0, 0}).crc, sa.crc) << "{0, 0} is the identity";
}

TEST(DeviceCrc, BlockDigestEqualsThePlainCrcOfTheArena) {
  const crc::Crc32Slices& tables = detail::block_crc32_tables();
  for (const std::uint64_t bytes : image_sizes()) {
    const std::vector<std::byte> arena = random_bytes(bytes, kSeed * 3 + bytes);
    EXPECT_EQ(detail::block_crc32<kBlockThreads>(tables, arena.data(), bytes), plain_crc(arena.data(), bytes))
        << bytes << "-byte arena, seed " << kSeed;
  }
}

// The device runs crc32_update with its block's table copy; the host pass of the same code,
// given the host tables, is the portable slice-by-8.
TEST(DeviceCrc, SliceBy8WithTheBlockTablesMatchesThePlainCrc) {
  const crc::Crc32Slices& tables = detail::block_crc32_tables();
  const std::vector<std::byte> data = random_bytes(3 * kChunk + 17, kSeed + 99);
  for (const std::uint64_t start : {0, 1, 5, 8, 15})
    for (const std::uint64_t n : std::vector<std::uint64_t>{0, 1, 7, 8, 15, 16, 17, 31, 1000, 3 * kChunk})
      EXPECT_EQ(crc::crc32_update(tables, 0, data.data() + start, n), plain_crc(data.data() + start, n))
          << n << " bytes from offset " << start;
}

}  // namespace
}  // namespace pkrt
