// examples/racy_sum/racy_sum.hpp: a deliberately schedule-dependent actor, kept to prove
// that differential replay catches nondeterminism.
//
// Every epoch each actor atomically adds a float of widely varying magnitude to one shared
// accumulator (the app-wide region). Float addition is not associative, so the total depends
// on the order in which blocks reach the atomic: with one block it is reproducible, with
// several it changes from run to run. Actor 0 publishes each epoch's total as an event.
// The accumulator is double-buffered by epoch parity: epoch e adds into slot e & 1, and
// actor 0 reads and clears slot (e - 1) & 1, which nobody adds to until after the barrier.
#pragma once

#include <pkrt/actor.hpp>
#include <pkrt/detail/system_atomic.hpp>
#include <pkrt/runtime.hpp>

#include <cstdint>

namespace pkrt::examples {

enum RacySumOpcode : std::uint16_t {
  kRacySumTotal = kUserOpcodeBase + 0,  // K2H event: RacySumTotalData
};

// Event data is compared byte for byte by replays: no padding (an explicit reserved word
// instead), so no indeterminate byte is ever emitted (an ASan build once showed stack garbage
// in the 4 padding bytes this struct had, and a replay of the same seed diverged on it).
struct RacySumTotalData {
  std::uint64_t epoch;  // epoch whose additions this is
  float total;
  std::uint32_t reserved;  // zero
};
static_assert(sizeof(RacySumTotalData) == 16, "RacySumTotalData has no padding");

struct RacySum {
  static constexpr const char* kName = "racy_sum";
  // No padding: Params are compared as bytes on restore and replay (pkrt/actor.hpp).
  struct Params {
    std::uint64_t seed = 1;
    std::uint32_t report_every = 1;
    std::uint32_t reserved = 0;
  };
  static_assert(sizeof(Params) == 16, "RacySum::Params has no padding");
  struct State {
    float last_total;
    std::uint64_t contributions;
  };

  static std::uint64_t global_bytes(const Params&) { return 2 * sizeof(float); }

  // Magnitudes from 1e-4 to 1e4 so that the rounding depends on the order of addition.
  PKRT_HD static float contribution(std::uint64_t seed, std::uint32_t actor, std::uint64_t epoch) {
    std::uint64_t z = seed ^ (std::uint64_t{actor} << 32) ^ (epoch * 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 31)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 29)) * 0x94D049BB133111EBull;
    z ^= z >> 32;
    const float mantissa = 1.0f + static_cast<float>(z & 0xFFFFFF) * (1.0f / 16777216.0f);
    const float scale[9] = {1e-4f, 1e-3f, 1e-2f, 1e-1f, 1.0f, 1e1f, 1e2f, 1e3f, 1e4f};
    return mantissa * scale[(z >> 24) % 9];
  }

  PKRT_HD static void step(State& s, ActorContext& ctx) {
    if (!ctx.leader()) return;
    const Params& p = ctx.params<Params>();
    float* acc = ctx.global<float>();
    const std::uint64_t e = ctx.epoch();
    // Device-scope RMW on device memory (never across PCIe): the order of these adds
    // across blocks is exactly the nondeterminism this example exists to show.
    detail::device_atomic_ref<float>(acc[e & 1u])
        .fetch_add(contribution(p.seed, ctx.actor(), e), detail::mo::memory_order_relaxed);
    ++s.contributions;
    if (ctx.actor() == 0 && e > 1) {
      float& prev = acc[(e - 1) & 1u];
      // Relaxed: every add into this slot happened in epoch e-1, before the grid barrier.
      s.last_total = detail::device_atomic_ref<float>(prev).load(detail::mo::memory_order_relaxed);
      detail::device_atomic_ref<float>(prev).store(0.0f, detail::mo::memory_order_relaxed);
      if (p.report_every != 0 && (e - 1) % p.report_every == 0)
        ctx.emit(kRacySumTotal, RacySumTotalData{e - 1, s.last_total, 0});
    }
  }
};

const Program& racy_sum_program();

}  // namespace pkrt::examples
