// CheckpointAlloc: parsing damaged or truncated checkpoint files never allocates more than
// the file's size. Its own binary: it replaces the global operator new to watch sizes.
#include <pkrt/checkpoint.hpp>
#include <pkrt/crc32.hpp>

#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <new>

namespace {
std::atomic<bool> g_watch{false};
std::atomic<std::size_t> g_largest{0};
}  // namespace

// The counters are atomics only because operator new may run on any thread; the parser
// runs on the test thread, which also reads them, so every access is relaxed.
void* operator new(std::size_t n) {
  if (g_watch.load(std::memory_order_relaxed)) {  // Relaxed: see above
    std::size_t prev = g_largest.load(std::memory_order_relaxed);  // Relaxed: see above
    while (n > prev && !g_largest.compare_exchange_weak(prev, n, std::memory_order_relaxed)) {  // Relaxed
    }
  }
  if (void* p = std::malloc(n == 0 ? 1 : n)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }

namespace pkrt {
namespace {

std::vector<std::byte> sample_file() {
  std::vector<std::byte> state(3000);
  for (std::size_t i = 0; i < state.size(); ++i) state[i] = static_cast<std::byte>(i * 7);
  CheckpointInfo info;
  info.app = "heat2d";
  info.regions = {{"state", 0, state.size()}};
  info.num_actors = 1;
  info.state_bytes = state.size();
  info.chunk_bytes = 512;
  info.state_crc = crc32(state.data(), state.size());
  std::vector<std::uint32_t> chunks(info.chunk_count());
  for (std::uint32_t i = 0; i < chunks.size(); ++i) chunks[i] = i;
  return encode_checkpoint(info, state, chunks, {}).value();
}

std::size_t largest_allocation_parsing(const std::vector<std::byte>& file) {
  g_largest = 0;
  g_watch = true;
  auto parsed = parse_checkpoint(file, "x.pkck");
  g_watch = false;
  (void)parsed.ok();
  return g_largest;
}

TEST(CheckpointAlloc, DamagedOrTruncatedFilesNeverMakeTheParserAllocateMoreThanTheFile) {
  const auto file = sample_file();
  // Error messages allocate a little too; allow them a fixed 1 KiB beyond the file size.
  const std::size_t bound = file.size() + 1024;
  ASSERT_GT(largest_allocation_parsing(file), 0u) << "the allocation hook must see the parser's allocations";
  for (std::size_t pos = 0; pos < file.size(); ++pos) {
    for (std::byte flip : {std::byte{0x01}, std::byte{0xFF}}) {
      auto bad = file;
      bad[pos] ^= flip;
      ASSERT_LE(largest_allocation_parsing(bad), bound) << "flip at byte " << pos;
    }
  }
  for (std::size_t n = 0; n < file.size(); ++n) {
    std::vector<std::byte> cut(file.begin(), file.begin() + static_cast<std::ptrdiff_t>(n));
    ASSERT_LE(largest_allocation_parsing(cut), bound) << "truncated to " << n;
  }
}

}  // namespace
}  // namespace pkrt
