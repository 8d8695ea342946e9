// kernels/h2k_stage.hpp: a block copies a run of its H2K ring's slots with all its threads,
// for its leader to apply (kernels/persistent_loop.hpp, apply_due_commands).
//
// Contract
// - Call stage_h2k_run from every thread of the block, the H2KStage in block-shared storage
//   (shared memory on a GPU). Before each call the leader (thread 0) writes the run's bounds:
//   the ring's slots (RingConsumer::slots()), the first position and the count, at most
//   kH2KStageSlots and below its last acquire of the ring's `published`. After the call every
//   copy is visible to the leader; the leader alone reads them, advances and commits.
// - Host/device: PKRT_HD. On the CPU backend a block is one thread, which copies the run alone.
//
// Why: on a GPU the ring lives in mapped host memory. The leader reading slot after slot pays
// a dependent PCIe round trip for each slot's seq and another for its contents (~1-2 us per
// command). Copied by 32 threads at once, a run of 32 costs about the same two round trips.
//
// Ordering: each copy is acquire-ordered after its slot's seq (RingSlotsView::copy); the block
// barrier at the end hands the copies to the leader and orders them before its later release
// of the ring's head (RingConsumer::commit), so the host cannot overwrite a slot that some
// thread is still reading (see pkrt/ring.hpp, RingSlotsView).
#pragma once

#include <pkrt/config.hpp>
#include <pkrt/detail/block_platform.hpp>
#include <pkrt/ring.hpp>
#include <pkrt/slot.hpp>

#include <cstdint>

namespace pkrt::detail {

// Slots per run: one warp, one slot per lane, 2 KiB of shared memory per block.
inline constexpr std::uint32_t kH2KStageSlots = 32;

struct H2KStage {
  RingSlotsView ring;   // the block's H2K slots (the leader writes, all read)
  std::uint64_t first;  // position of slots[0]
  std::uint32_t count;  // slots in this run; 0 ends the caller's loop
  Slot slots[kH2KStageSlots];
};

// Copies the run [stage.first, stage.first + stage.count) the leader set, each thread every
// threads_per_block()-th slot, and returns the count (the same on every thread). A slot that
// does not hold its position (impossible below an acquired `published`; checked anyway) gets
// seq 0, which tells the leader to stop there.
PKRT_HD inline std::uint32_t stage_h2k_run(H2KStage& stage) {
  sync_block();  // the leader's bounds are visible to every thread
  const std::uint32_t count = stage.count;
  const std::uint64_t first = stage.first;
  for (std::uint32_t i = thread_rank(); i < count; i += threads_per_block())
    if (!stage.ring.copy(first + i, stage.slots[i])) stage.slots[i].header.seq = 0;
  sync_block();  // every copy is the leader's; only the leader reads the bounds until the next call
  return count;
}

}  // namespace pkrt::detail
