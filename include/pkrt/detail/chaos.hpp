// pkrt/detail/chaos.hpp: the CPU backend's chaos mode (RuntimeOptions::chaos).
//
// What it perturbs, all drawn from the seed so that a run is reproducible per seed:
//   - block order: in every epoch the blocks apply their commands and step their actors one
//     at a time, in the order chaos_block_order(seed, epoch, blocks). Whatever depends on
//     which block gets somewhere first (racy_sum's float atomics) then differs between
//     seeds and is fixed for one seed;
//   - worker timing: before every grid barrier and step turn a worker may yield or sleep
//     (chaos_delay), so the pump, the rings and the barrier see other interleavings.
// Deterministic actors must give the same observable stream under every seed; that is
// what a replay with another --chaos seed checks.
//
// Host only. The functions are pure; ChaosTurn is shared by the workers of one launch.
#pragma once

#include <atomic>
#include <cstdint>
#include <vector>

namespace pkrt::detail {

inline constexpr std::uint64_t chaos_mix(std::uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

inline constexpr std::uint64_t chaos_hash(std::uint64_t seed, std::uint64_t a, std::uint64_t b = 0,
                                          std::uint64_t c = 0) {
  return chaos_mix(chaos_mix(chaos_mix(seed ^ 0x9E3779B97F4A7C15ull) ^ a) ^ (b * 0xD6E8FEB86659FD93ull) ^ c);
}

// The order in which the blocks take their step turn in `epoch`: a seeded permutation.
inline std::vector<std::uint32_t> chaos_block_order(std::uint64_t seed, std::uint64_t epoch,
                                                    std::uint32_t blocks) {
  std::vector<std::uint32_t> order(blocks);
  for (std::uint32_t i = 0; i < blocks; ++i) order[i] = i;
  for (std::uint32_t i = blocks; i > 1; --i) {  // Fisher-Yates from the top
    const auto j = static_cast<std::uint32_t>(chaos_hash(seed, epoch, i) % i);
    const std::uint32_t t = order[i - 1];
    order[i - 1] = order[j];
    order[j] = t;
  }
  return order;
}

// Shared by the workers of one CPU launch with chaos on.
struct ChaosTurn {
  std::uint64_t seed = 0;
  std::uint32_t blocks = 0;
  std::uint64_t start_epoch = 0;  // epochs after it are run in turns
  std::atomic<std::uint64_t> turns{0};  // step turns finished in this launch (all epochs)
};

}  // namespace pkrt::detail
