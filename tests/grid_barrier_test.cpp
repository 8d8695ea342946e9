// GridBarrier: the device's grid barrier protocol (pkrt/detail/grid_barrier.hpp), run by host
// threads standing in for blocks. Under TSan this also checks its memory orders: the data the
// threads exchange across the barrier is read and written with plain accesses, so a missing
// release or acquire is a reported race.
#include <pkrt/detail/grid_barrier.hpp>

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <random>
#include <thread>
#include <vector>

namespace pkrt::detail {
namespace {

void print_seed(std::uint64_t seed) { std::printf("[ seed     ] %llu\n", static_cast<unsigned long long>(seed)); }

// Each round every thread writes its cell, passes the barrier, checks every other thread's
// cell of this round, and passes the barrier again before the next round overwrites them.
TEST(GridBarrier, EveryBlockSeesEveryOtherBlocksWritesOfTheRoundAfterTheBarrier) {
  const std::uint64_t seed = 20261205;
  print_seed(seed);
  constexpr std::uint32_t kBlocks = 5, kRounds = 400;
  GridBarrierWord word{};
  std::vector<std::uint64_t> cells(kBlocks, 0);  // plain: ordered by the barrier alone
  std::atomic<std::uint32_t> mismatches{0};
  std::vector<std::thread> blocks;
  for (std::uint32_t b = 0; b < kBlocks; ++b) {
    blocks.emplace_back([&, b] {
      std::mt19937_64 rng(seed + b);
      auto pause = [] { std::this_thread::yield(); };
      for (std::uint64_t round = 1; round <= kRounds; ++round) {
        // Uneven arrivals: sometimes a block is late, as block 0 is when it waits for the host.
        if (rng() % 16 == 0) std::this_thread::sleep_for(std::chrono::microseconds(rng() % 200));
        cells[b] = round * kBlocks + b;
        grid_barrier_arrive_and_wait(word, kBlocks, b == 0, 8, pause);
        for (std::uint32_t other = 0; other < kBlocks; ++other)
          // Relaxed: a count read after the threads are joined.
          if (cells[other] != round * kBlocks + other) mismatches.fetch_add(1, std::memory_order_relaxed);
        grid_barrier_arrive_and_wait(word, kBlocks, b == 0, 8, pause);
      }
    });
  }
  for (std::thread& t : blocks) t.join();
  EXPECT_EQ(mismatches.load(), 0u);
  EXPECT_EQ(word.arrived, 0u) << "each barrier adds 2^31 in all: an even number of them leaves 0";
}

// A block that arrives early polls spin_polls times and then backs off through `pause` (on a
// GPU, __nanosleep) for as long as the last block is away; with an unbounded spin it never
// pauses, as cooperative groups' grid.sync() never does.
TEST(GridBarrier, AnEarlyBlockBacksOffOnlyAfterItsSpinPolls) {
  for (const std::uint32_t spin : {0u, ~0u}) {
    GridBarrierWord word{};
    std::atomic<std::uint32_t> pauses{0};
    std::thread early([&] {
      grid_barrier_arrive_and_wait(word, 2, false, spin, [&] {
        // Relaxed: a count read after the join.
        pauses.fetch_add(1, std::memory_order_relaxed);
        std::this_thread::yield();
      });
    });
    std::this_thread::sleep_for(std::chrono::milliseconds(20));  // the late block (block 0 waiting)
    grid_barrier_arrive_and_wait(word, 2, true, spin, [] {});
    early.join();
    if (spin == 0) {
      EXPECT_GT(pauses.load(), 0u);
    } else {
      EXPECT_EQ(pauses.load(), 0u);
    }
    EXPECT_EQ(word.arrived, kGridBarrierPhaseBit) << "one barrier flips the phase bit";
  }
}

}  // namespace
}  // namespace pkrt::detail
