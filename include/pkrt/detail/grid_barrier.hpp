// pkrt/detail/grid_barrier.hpp: the grid-wide barrier of the persistent kernel on the device.
//
// Contract
// - What: every block's thread 0 calls grid_barrier_arrive_and_wait once per barrier (the
//   caller holds the block's other threads in a block barrier before and after it: the one
//   before makes their writes thread 0's, so its release carries them); it returns once all
//   `blocks` blocks have arrived. Everything any thread of any block wrote before the barrier
//   is visible to every thread of every block after it.
// - Why not cooperative_groups::this_grid().sync(): that polls without a pause, so while
//   block 0 waits for the host (an idle grid, a park, a scale-out exchange) every other
//   block's leader spins at full power for as long as nothing happens. This one polls
//   `spin_polls` times (the poll policy's idle_spin) and then calls `pause` (a __nanosleep
//   back-off) between polls. Its arrival is the same single atomic add as grid.sync()'s, so a
//   busy grid's barrier costs what grid.sync() costs.
// - Requires every block to be resident at once (cudaLaunchCooperativeKernel guarantees it)
//   and the word zeroed before the launch (GridScratch is).
// - Host/device: PKRT_HD. The CPU backend's kernel uses std::barrier (it blocks in the
//   kernel); the host pass of this function exists for the tests, which run it on threads.
//
// Protocol (one word; the arrival counter's top bit is the phase)
//   master block (one, e.g. block 0): old = word.fetch_add(0x80000000 - (blocks - 1))  (release)
//   every other block:                old = word.fetch_add(1)                          (release)
//   then every block, the last included: wait until bit 31 of word differs from old's (acquire)
// Each phase adds exactly 0x80000000 in all, so bit 31 flips when, and only when, the last
// block arrives, and the low bits are back where they started (no reset to order). The adds
// of one phase form one release sequence that ends in the flipping one: an acquire load that
// reads the flipped word (or a later one) synchronises with every block's release, so every
// block's writes before the barrier are visible after it. Up to 2^31 - 1 blocks.
#pragma once

#include <pkrt/config.hpp>
#include <pkrt/detail/system_atomic.hpp>

#include <cstdint>

namespace pkrt::detail {

struct GridBarrierWord {
  alignas(64) std::uint32_t arrived;  // arrivals; bit 31 flips once per completed barrier
};

inline constexpr std::uint32_t kGridBarrierPhaseBit = 0x80000000u;

template <class Pause>
PKRT_HD inline void grid_barrier_arrive_and_wait(GridBarrierWord& word, std::uint32_t blocks, bool master,
                                                 std::uint32_t spin_polls, Pause&& pause) {
  device_atomic_ref<std::uint32_t> arrived(word.arrived);
  const std::uint32_t add = master ? kGridBarrierPhaseBit - (blocks - 1) : 1u;
  // Release: publishes this block's writes (its other threads' too, through the caller's
  // block barrier) to every block whose acquire below reads the flipped word.
  const std::uint32_t old = arrived.fetch_add(add, mo::memory_order_release);
  for (std::uint32_t polls = 0;; ++polls) {
    // Acquire: pairs with every block's release add of this phase (their release sequences
    // end in the add that flips the bit); what they wrote before the barrier is visible after.
    if (((arrived.load(mo::memory_order_acquire) ^ old) & kGridBarrierPhaseBit) != 0) return;
    if (polls >= spin_polls) pause();
  }
}

}  // namespace pkrt::detail
