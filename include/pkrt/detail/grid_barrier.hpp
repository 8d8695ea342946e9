// pkrt/detail/grid_barrier.hpp: the grid-wide barrier of the persistent kernel on the device.
//
// Contract
// - What: every block's thread 0 calls grid_barrier_arrive_and_wait once per barrier (the
//   caller holds the block's other threads in a block barrier before and after it); it
//   returns once all `blocks` blocks have arrived. Everything any thread of any block wrote
//   before the barrier is visible to every thread of every block after it.
// - Why not cooperative_groups::this_grid().sync(): that polls an L2 word without a pause, so
//   while block 0 waits for the host (an idle grid, a park, a scale-out exchange) every other
//   block's leader spins at full power for as long as nothing happens. This one polls
//   `spin_polls` times (the poll policy's idle_spin) and then calls `pause` (a __nanosleep
//   back-off) between polls.
// - Requires every block to be resident at once (cudaLaunchCooperativeKernel guarantees it)
//   and `words` zeroed before the launch (GridScratch is).
// - Host/device: PKRT_HD. The CPU backend's kernel uses std::barrier (it blocks in the
//   kernel); the host pass of this function exists for the tests, which run it on threads.
//
// Protocol (a counter and a generation, each on its own line: arrivals do not disturb polls)
//   phase = generation                       (relaxed: see below)
//   if arrived.fetch_add(1) + 1 == blocks:   (acq_rel)
//     arrived = 0                            (relaxed)
//     generation = phase + 1                 (release)  -- ends the phase
//   else: wait until generation != phase     (acquire)
// The fetch_adds of one phase form a release sequence, so the last arriver's acquire sees
// every block's writes and its release of the generation hands them to every waiter. A block
// reads the current phase's generation before it arrives: it saw the previous phase end (its
// acquire, or its own store), and the current one cannot end before it arrives. The counter's
// reset is ordered before the release, so no block arrives at the next phase before it.
#pragma once

#include <pkrt/config.hpp>
#include <pkrt/detail/system_atomic.hpp>

#include <cstdint>

namespace pkrt::detail {

struct GridBarrierWords {
  alignas(64) std::uint32_t arrived;     // blocks arrived in the current phase
  alignas(64) std::uint32_t generation;  // phases completed; waiters poll it
};

template <class Pause>
PKRT_HD inline void grid_barrier_arrive_and_wait(GridBarrierWords& words, std::uint32_t blocks,
                                                 std::uint32_t spin_polls, Pause&& pause) {
  device_atomic_ref<std::uint32_t> generation(words.generation);
  device_atomic_ref<std::uint32_t> arrived(words.arrived);
  // Relaxed: this block saw the previous phase end, so this is the current phase's number
  // (see the protocol above); nothing is read through it.
  const std::uint32_t phase = generation.load(mo::memory_order_relaxed);
  // Acq_rel: the release publishes this block's writes (its threads' too, through the
  // caller's block barrier) to the last arriver; the acquire, for the last arriver, takes
  // every earlier arrival's writes through the release sequence of these adds.
  if (arrived.fetch_add(1, mo::memory_order_acq_rel) + 1 == blocks) {
    // Relaxed: ordered before the release below; the next phase's arrivals come after it.
    arrived.store(0, mo::memory_order_relaxed);
    // Release: pairs with the waiters' acquire below; ends the phase.
    generation.store(phase + 1, mo::memory_order_release);
    return;
  }
  for (std::uint32_t polls = 0;; ++polls) {
    // Acquire: pairs with the last arriver's release; every block's writes before the
    // barrier are visible after this load.
    if (generation.load(mo::memory_order_acquire) != phase) return;
    if (polls >= spin_polls) pause();
  }
}

}  // namespace pkrt::detail
