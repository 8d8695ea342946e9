// pkrt/detail/kernel_args.hpp: the argument block of the persistent kernel, shared by both
// backends. Plain pointers and sizes, passed by value to the CUDA kernel and by reference to
// CPU worker threads. Built by the runtime (host/runtime.cpp), read by
// kernels/persistent_loop.hpp.
#pragma once

#include <pkrt/config.hpp>
#include <pkrt/control.hpp>
#include <pkrt/detail/grid_barrier.hpp>
#include <pkrt/ring.hpp>

#include <cstddef>
#include <cstdint>

namespace pkrt::detail {

inline constexpr std::uint32_t kMaxRegions = 8;
inline constexpr std::uint64_t kRegionAlign = 256;

// Header of one K2K mailbox slot; written by the sending actor's leader thread after the
// payload, read by the receiver D epochs later (the epoch barriers in between order the two;
// for a receiver in another runtime, the host's exchange does: pkrt/mpi.hpp).
struct K2KSlotHeader {
  std::uint64_t epoch;  // epoch in which it was written; stale slots are ignored
  std::uint32_t src;    // sending actor
  std::uint32_t bytes;  // payload bytes
};
inline constexpr std::uint64_t kK2KHeaderBytes = 64;  // header padded to keep payloads aligned

// Written by block 0's leader before the epoch barrier, read by every block after it: the
// single decision that keeps all blocks parking and stopping at the same epoch.
enum GridDirective : std::uint32_t {
  kDirectiveRun = 0,
  kDirectivePark = 1,
  kDirectiveStop = 2,
};

// Double-buffered by loop round (see kernels/persistent_loop.hpp): block 0 writes the entry
// for round r + 1 while a slow block may still read the entry for round r, the other one.
struct GridScratch {
  alignas(64) std::uint32_t directive[2];  // GridDirective of round r is directive[r & 1]
  std::uint32_t stop_reason;               // StopReason once a stop directive is written
  std::uint32_t snapshot_flags[2];         // with kDirectiveSnapshotBit: SnapshotAllFlags
  std::uint64_t snapshot_request[2];       // with kDirectiveSnapshotBit: request id
  std::uint32_t snapshot_wave_first[2];    // with kDirectiveSnapshotBit: the wave's actors
  std::uint32_t snapshot_wave_last[2];
  // Grid-wide work counters for block 0's idle check (event-driven apps): every block's
  // leader updates them at the end of its epoch (device scope, before the barrier), so the
  // check reads three words instead of a line per block, serially, on one thread.
  alignas(64) std::uint64_t active_epoch;  // 1 + last epoch in which any block did work
  std::uint64_t consumed;                  // H2K slots all blocks have consumed so far
  std::uint64_t deferred;                  // commands taken from the rings, not yet due
  GridBarrierWord barrier;                // the device's grid barrier (sync_grid)
};

// Set on a run directive: every block snapshots all its actors at the end of that epoch.
inline constexpr std::uint32_t kDirectiveSnapshotBit = 0x100;

struct KernelArgs {
  ControlBlock* control;       // host-visible
  BlockHeartbeat* heartbeats;  // host-visible, one line per block
  std::byte* h2k;              // host-visible: num_blocks rings, ring_stride bytes apart
  std::byte* k2h;              // host-visible: num_blocks rings, ring_stride bytes apart
  std::uint64_t ring_stride;

  std::byte* state;            // device: num_actors arenas, state_stride bytes apart
  std::uint64_t state_stride;
  std::uint32_t region_count;  // named regions after the State struct
  std::uint64_t region_offset[kMaxRegions];  // offset of region r inside an arena
  std::uint64_t region_bytes[kMaxRegions];

  std::byte* k2k;              // device: [buffer][global actor][channel] slots
  std::uint32_t k2k_channels;
  std::uint64_t k2k_slot_stride;  // header + payload capacity, rounded
  std::uint64_t k2k_payload_bytes;
  // K2K delay D (RuntimeOptions::k2k_delay): what an actor commits in epoch e is read in
  // e + D. Epoch e writes buffer e % (D + 1), so the D buffers written in e - D + 1 .. e are
  // the messages in flight after e, and the one written in e - D is free to reuse in e + 1.
  std::uint32_t k2k_delay;
  std::uint32_t k2k_buffers;   // D + 1
  // Scale-out: this runtime runs num_actors of a program's global_actors actors; local actor
  // i (the index of arenas, rings and host calls) is global actor global_ids[i], the id the
  // app sees and K2K mailbox rows use. Null: a runtime of the whole program (ids equal).
  std::uint32_t global_actors;
  const std::uint32_t* global_ids;  // device
  // Nonzero: actors of other runtimes exchange K2K with ours through the host (Runtime::
  // collect_outbound_k2k / deliver_inbound_k2k); block 0 starts epoch e only once
  // HostControl::k2k_open_epoch >= e (every message due in e has been delivered).
  std::uint32_t k2k_gated;

  // Snapshots (kernels/snapshot.hpp): the staging pool, staging_slots slots that the host
  // assigns to actors (1 <= staging_slots <= num_actors); each holds one image (arena + K2K
  // inbox), its chunk CRCs and its changed-chunk flags.
  std::byte* staging;          // device
  std::uint64_t staging_stride;
  std::uint32_t staging_slots;
  std::uint64_t image_bytes;   // state_stride + k2k_channels * k2k_slot_stride
  std::uint64_t crc_offset;    // inside a staging slot: chunk CRC table
  std::uint64_t changed_offset;  // inside a staging slot: one byte per chunk, 1 = changed
  std::uint32_t chunk_bytes;
  std::uint32_t chunks;
  std::uint32_t* prev_crcs;    // device: [actor][chunk] CRCs of the previous snapshot
  std::uint32_t* actor_flags;  // device: per actor, SnapshotFlags (kSnapshotHasPrevious only)

  std::byte* global;           // device: app-wide region (global_bytes)
  std::uint64_t global_bytes;
  // The global region's snapshot slot, laid out like an actor's ([image][chunk CRCs]
  // [changed flags], image = the region), with its own previous CRCs and SnapshotFlags.
  // Null when snapshots are off or the app has no global region.
  std::byte* global_staging;   // device
  std::uint64_t global_crc_offset;
  std::uint64_t global_changed_offset;
  std::uint32_t global_chunks;
  std::uint32_t* global_prev_crcs;  // device: global_chunks CRCs
  std::uint32_t* global_flags;      // device: SnapshotFlags of the global slot
  // Commands queued at a snapshot_all cut: per block an area of 2 x deferred_capacity slots
  // (its deferred list, then its ring's unconsumed slots) and its SnapshotFlags word. Null
  // when snapshots are off.
  Slot* queued;                     // device
  std::uint32_t* queued_flags;      // device: one per block
  GridScratch* grid;           // device
  Slot* deferred;              // device: deferred_capacity slots per block (not-yet-due commands)
  std::uint32_t deferred_capacity;

  const void* params;          // device copy of App::Params
  std::uint32_t num_actors;
  std::uint32_t num_blocks;
  std::uint64_t start_epoch;   // epoch already completed when the kernel starts (0: fresh)
  std::uint32_t run_init;      // nonzero: call App::init for every actor before epoch 1
  std::uint32_t idle_spin;     // polls before an idle block starts backing off
  std::uint32_t digest_period; // kOpDigest of every actor every this many epochs (0: none)
  std::uint32_t poll_sleep_cap_ns;  // device: longest __nanosleep between polls (poll policy)
  std::uint32_t ack_posts;     // nonzero: posts are acknowledged too (kOpAckRange; replay log)
};

enum SnapshotFlags : std::uint32_t {
  kSnapshotHasPrevious = 1u << 0,  // prev_crcs holds the last snapshot's chunk CRCs
  // The global region's slot or a block's queued-commands area holds an image the host has
  // not released (kOpReleaseStaging). Pool slots need no such flag: the host assigns a slot
  // only once it has copied the slot's last image.
  kSnapshotStagingBusy = 1u << 1,
};

// The global id of local actor `actor`.
PKRT_HD inline std::uint32_t global_actor_id(const KernelArgs& args, std::uint32_t actor) {
  return args.global_ids != nullptr ? args.global_ids[actor] : actor;
}

// The K2K buffer epoch `epoch` writes (and epoch + D reads).
PKRT_HD inline std::uint32_t k2k_buffer_of(const KernelArgs& args, std::uint64_t epoch) {
  return static_cast<std::uint32_t>(epoch % args.k2k_buffers);
}

// Global actor `row`'s mailbox (its k2k_channels slots, contiguous) in buffer `buffer`.
PKRT_HD inline std::byte* k2k_mailbox(const KernelArgs& args, std::uint32_t buffer, std::uint32_t row) {
  return args.k2k + (std::uint64_t{buffer} * args.global_actors + row) * args.k2k_channels * args.k2k_slot_stride;
}

PKRT_HD inline RingHeader* ring_at(std::byte* base, std::uint64_t stride, std::uint32_t block) {
  return reinterpret_cast<RingHeader*>(base + stride * block);
}

// Actors of block b: the contiguous range [first, last).
PKRT_HD inline std::uint32_t block_first_actor(std::uint32_t block, std::uint32_t num_blocks,
                                               std::uint32_t num_actors) {
  return static_cast<std::uint32_t>(std::uint64_t{block} * num_actors / num_blocks);
}

PKRT_HD inline std::uint32_t block_of_actor(std::uint32_t actor, std::uint32_t num_blocks,
                                            std::uint32_t num_actors) {
  // Largest b with block_first_actor(b) <= actor.
  std::uint32_t b = static_cast<std::uint32_t>(
      (std::uint64_t{actor} * num_blocks + num_blocks - 1) / num_actors);
  while (b > 0 && block_first_actor(b, num_blocks, num_actors) > actor) --b;
  while (b + 1 < num_blocks && block_first_actor(b + 1, num_blocks, num_actors) <= actor) ++b;
  return b;
}

}  // namespace pkrt::detail
