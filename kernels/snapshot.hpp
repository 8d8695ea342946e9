// kernels/snapshot.hpp: the device half of the two-phase snapshot protocol, and restore.
//
// Staging pool. Images are copied into slots of a pool (KernelArgs::staging, staging_slots
// of them, as few as one, at most one per actor) that the host assigns: a snapshot_actor or
// restore command names its slot, a snapshot_all wave maps its actors [first, last) to slots
// a - first. The host hands out a slot only after it has copied the slot's last image, so a
// pool slot needs no busy flag and no release command.
//
// Snapshot of actor a at the end of epoch e, served after the grid barrier that follows
// epoch e (every block has finished it, so a's inbox is complete); the actor is held only for
// this device-local work:
//   1. all threads copy the image = [arena (State + named regions)][a's K2K inbox: the D
//      mailboxes written in epochs e - D + 1 .. e, oldest first, i.e. what it will read in
//      e + 1 .. e + D (D = k2k_delay)] into the slot;
//   2. all threads compute the CRC32 of every chunk, each chunk split over the block's threads
//      (kernels/block_crc32.hpp; slice tables in shared memory). A CPU worker does 1 and 2
//      chunk by chunk, CRC-ing each chunk while it is in cache (kSnapshotCopiesChunkByChunk),
//      with ISA-L (crc32_update_native);
//   3. every thread takes a contiguous run of chunks: marks those whose CRC differs from a's
//      previous snapshot (all if full or if there is none), records the new CRCs, and folds its
//      CRCs in chunk order; BlockReduce concatenates the runs into the image CRC
//      (crc32_combine: independent of launch shape) and sums the changed counts. The leader
//      publishes kOpSnapshotReady naming the slot. The host copies the changed chunks out.
// snapshot_all in waves: when the pool holds fewer images than the request, the host sets
// kSnapshotAllHold. Block 0 latches the request with the first wave (actors [0, slots)) at
// the cut epoch as usual, then parks the grid at that epoch without reporting a park; each
// wave the host posts after copying the previous one (HostControl::snapshot_wave) is served
// in a park round, by every block, for its actors in the wave. Nobody steps while the grid
// holds, so every wave is the same cut. The host clears the flag after the last wave.
// The global region (snapshot_all with kSnapshotAllGlobal) is snapshotted the same way by
// block 0, as the pseudo-actor kGlobalRegionActor with its own slot outside the pool (image =
// the region), marked busy until the host releases it (kOpReleaseStaging). It is shared by
// every block, so the copy must finish before any block steps the next epoch:
// in a run round every block passes one extra grid barrier after the round's snapshots
// (serve_queued_snapshots); in a park round nobody steps until block 0 reaches the next
// round's barrier, after its copy.
// Restore of actor a at the start of epoch e (kOpRestoreActor, the host uploaded the image
// into the slot it names first): all threads copy the image back into the arena and the D
// mailboxes read in e .. e + D - 1; the next snapshot of a is full.
// kBlockThreads: the launch's block size (kernels/block_collectives.hpp).
#pragma once

#include <pkrt/actor.hpp>
#include <pkrt/detail/block_platform.hpp>
#include <pkrt/detail/kernel_args.hpp>
#include <pkrt/kernels/block_collectives.hpp>
#include <pkrt/kernels/block_crc32.hpp>
#include <pkrt/kernels/crc32.hpp>
#include <pkrt/slot.hpp>

#include <cstdint>

namespace pkrt::detail {

PKRT_HD inline std::byte* staging_slot(const KernelArgs& args, std::uint32_t slot) {
  return args.staging + args.staging_stride * slot;
}

PKRT_HD inline std::byte* actor_arena(const KernelArgs& args, std::uint32_t actor) {
  return args.state + args.state_stride * actor;
}

// Local actor `actor`'s K2K mailbox in `buffer`: contiguous, k2k_channels slots.
PKRT_HD inline std::byte* actor_inbox(const KernelArgs& args, std::uint32_t buffer, std::uint32_t actor) {
  return k2k_mailbox(args, buffer, global_actor_id(args, actor));
}

// One mailbox of an image's inbox; the image holds k2k_delay of them.
PKRT_HD inline std::uint64_t inbox_bytes(const KernelArgs& args) {
  return std::uint64_t{args.k2k_channels} * args.k2k_slot_stride;
}

// The buffer holding piece k (0 = oldest) of the inbox of an image taken at the end of
// `epoch`: written in epoch - D + 1 + k, which is epoch + 2 + k modulo D + 1.
PKRT_HD inline std::uint32_t inbox_piece_buffer(const KernelArgs& args, std::uint64_t epoch, std::uint32_t k) {
  return k2k_buffer_of(args, epoch + 2 + k);
}

// What one snapshot copies and where: an actor's (arena + inbox) or the global region's.
struct SnapshotTarget {
  std::uint32_t actor;      // or kGlobalRegionActor
  std::byte* slot;          // staging: image, chunk CRCs at crc_offset, changed flags at changed_offset
  const std::byte* head;    // image bytes [0, head_bytes)
  // Image bytes [head_bytes, image_bytes): pieces of piece_bytes, piece k at
  // tail + buffer_of(k) * tail_buffer_stride (the inbox's mailboxes, oldest first).
  const std::byte* tail;
  std::uint64_t piece_bytes;
  std::uint64_t tail_buffer_stride;
  std::uint64_t tail_epoch;  // the cut: piece k is in inbox_piece_buffer(args, tail_epoch, k)
  std::uint64_t head_bytes;
  std::uint64_t image_bytes;
  std::uint64_t crc_offset;
  std::uint64_t changed_offset;
  std::uint32_t chunks;
  std::uint32_t* prev_crcs;  // the previous snapshot's chunk CRCs
  std::uint32_t* flags;      // SnapshotFlags
  std::uint32_t pool_slot;   // the pool slot `slot` is (0 for the global region's own slot)
  std::uint32_t busy_flag;   // set in *flags once served: kSnapshotStagingBusy outside the pool
};

// Actor `actor`'s image at the end of `epoch`, into pool slot `slot`: its arena, then its
// inbox (the D mailboxes in flight after `epoch`).
PKRT_HD inline SnapshotTarget actor_snapshot_target(const KernelArgs& args, std::uint32_t actor, std::uint32_t slot,
                                                    std::uint64_t epoch) {
  return {actor,
          staging_slot(args, slot),
          actor_arena(args, actor),
          actor_inbox(args, 0, actor),
          inbox_bytes(args),
          std::uint64_t{args.global_actors} * inbox_bytes(args),
          epoch,
          args.state_stride,
          args.image_bytes,
          args.crc_offset,
          args.changed_offset,
          args.chunks,
          args.prev_crcs + std::uint64_t{actor} * args.chunks,
          &args.actor_flags[actor],
          slot,
          0u};
}

PKRT_HD inline SnapshotTarget global_snapshot_target(const KernelArgs& args) {
  return {kGlobalRegionActor,
          args.global_staging,
          args.global,
          nullptr,
          0,
          0,
          0,
          args.global_bytes,
          args.global_bytes,
          args.global_crc_offset,
          args.global_changed_offset,
          args.global_chunks,
          args.global_prev_crcs,
          args.global_flags,
          0u,
          kSnapshotStagingBusy};
}

// The SnapshotFlags word of an actor's staging slot, or of the global region's.
PKRT_HD inline std::uint32_t& snapshot_flags_of(const KernelArgs& args, std::uint32_t actor) {
  return actor == kGlobalRegionActor ? *args.global_flags : args.actor_flags[actor];
}

// Copies image bytes [off, off + n) (head first, then the tail's pieces) into the staging slot.
PKRT_HD inline void copy_image_range(const KernelArgs& args, const SnapshotTarget& t, std::uint64_t off,
                                     std::uint64_t n) {
  if (off < t.head_bytes) {
    const std::uint64_t m = t.head_bytes - off < n ? t.head_bytes - off : n;
    block_copy(t.slot + off, t.head + off, m);
    off += m;
    n -= m;
  }
  while (n > 0) {
    const std::uint64_t k = (off - t.head_bytes) / t.piece_bytes;
    const std::uint64_t within = (off - t.head_bytes) % t.piece_bytes;
    const std::uint64_t m = t.piece_bytes - within < n ? t.piece_bytes - within : n;
    const std::byte* piece =
        t.tail + inbox_piece_buffer(args, t.tail_epoch, static_cast<std::uint32_t>(k)) * t.tail_buffer_stride;
    block_copy(t.slot + off, piece + within, m);
    off += m;
    n -= m;
  }
}

// The image CRC and the count of changed chunks of one snapshot (thread 0's values).
struct SnapshotSummary {
  std::uint32_t image_crc;
  std::uint32_t changed;
};

// Thread `rank`'s chunks [first, last) in summarize_chunks: contiguous runs in thread order,
// so concatenating the runs in thread order visits the chunks in order.
struct ChunkRun {
  std::uint32_t first;
  std::uint32_t last;
};

PKRT_HD inline ChunkRun chunk_run(std::uint32_t chunks, std::uint32_t threads, std::uint32_t rank) {
  const std::uint64_t per_thread = (std::uint64_t{chunks} + threads - 1) / threads;
  const std::uint64_t first = rank * per_thread < chunks ? rank * per_thread : chunks;
  const std::uint64_t last = first + per_thread < chunks ? first + per_thread : chunks;
  return {static_cast<std::uint32_t>(first), static_cast<std::uint32_t>(last)};
}

// Step 3 of the protocol, from the chunk CRCs `crcs` (visible to every thread): changed[c] =
// whether chunk c differs from prev[c] (every chunk when `all`), then prev = crcs. Each thread
// folds its run's CRCs in chunk order; BlockReduce concatenates the runs in thread order.
// Call from every thread.
template <std::uint32_t kBlockThreads>
PKRT_HD SnapshotSummary summarize_chunks(const std::uint32_t* crcs, std::uint32_t* prev, std::uint8_t* changed,
                                         std::uint32_t chunks, std::uint64_t image_bytes,
                                         std::uint64_t chunk_bytes, bool all) {
  const ChunkRun mine = chunk_run(chunks, threads_per_block(), thread_rank());
  crc::Crc32Span run{0, 0};
  std::uint32_t count = 0;
  for (std::uint32_t c = mine.first; c < mine.last; ++c) {
    const bool diff = all || prev[c] != crcs[c];
    changed[c] = diff ? 1u : 0u;
    count += diff ? 1u : 0u;
    prev[c] = crcs[c];
    const std::uint64_t off = std::uint64_t{c} * chunk_bytes;
    run = crc::Crc32Concat{}(run, {crcs[c], image_bytes - off < chunk_bytes ? image_bytes - off : chunk_bytes});
  }
  SnapshotSummary summary;
  summary.image_crc = block_reduce<kBlockThreads>(run, crc::Crc32Concat{}).crc;
  summary.changed = block_sum<kBlockThreads>(count);
  return summary;
}

// Call from every thread of the block. Publishes kOpSnapshotReady (leader).
template <std::uint32_t kBlockThreads>
PKRT_HD void serve_snapshot(BlockState& bs, const SnapshotTarget& t, std::uint64_t request, bool full) {
  const KernelArgs& args = *bs.args;
  const std::uint64_t t0 = now_ns();
  auto* crcs = reinterpret_cast<std::uint32_t*>(t.slot + t.crc_offset);
  if constexpr (kSnapshotCopiesChunkByChunk) {
    for (std::uint64_t off = 0, c = 0; off < t.image_bytes; off += args.chunk_bytes, ++c) {
      const std::uint64_t n = t.image_bytes - off < args.chunk_bytes ? t.image_bytes - off : args.chunk_bytes;
      copy_image_range(args, t, off, n);
      crcs[c] = crc::crc32_update_native(crc::crc32_tables().slice, 0, t.slot + off, n);
    }
  } else {
    const crc::Crc32Slices& tables = block_crc32_tables();
    copy_image_range(args, t, 0, t.image_bytes);
    sync_block();  // the whole image is in staging before any thread CRCs a part of it
    block_crc32_chunks<kBlockThreads>(tables, t.slot, t.image_bytes, args.chunk_bytes, crcs);
  }
  sync_block();  // every chunk CRC is visible to every thread
  std::uint32_t& flags = *t.flags;
  const bool all = full || (flags & kSnapshotHasPrevious) == 0;
  const SnapshotSummary summary =
      summarize_chunks<kBlockThreads>(crcs, t.prev_crcs, reinterpret_cast<std::uint8_t*>(t.slot + t.changed_offset),
                                      t.chunks, t.image_bytes, args.chunk_bytes, all);
  // The leader's flag update follows the barriers in summarize_chunks, after every thread's
  // read of `flags` above.
  if (thread_rank() == 0) {
    flags |= kSnapshotHasPrevious | t.busy_flag;
    SnapshotReadyData ready{};
    ready.chunks = t.chunks;
    ready.changed = summary.changed;
    ready.crc = summary.image_crc;
    ready.flags = snapshot_ready_flags(all, t.pool_slot);
    ready.stall_ns = now_ns() - t0;
    ready.image_bytes = t.image_bytes;
    publish_k2h(bs, kOpSnapshotReady, kFlagNone, t.actor, make_envelope(bs.epoch, request, &ready, sizeof ready));
  }
}

// Call from every thread of the block, before the step of bs.epoch. `source_epoch` S is the
// epoch the image was taken at: its inbox piece k, written in S - D + 1 + k, becomes the
// mailbox written in bs.epoch - D + k (read in bs.epoch + k), as if the actor's last D epochs
// had been S - D + 1 .. S; any other header epoch in a piece marks a slot stale.
PKRT_HD inline void serve_restore(BlockState& bs, std::uint32_t actor, std::uint32_t pool_slot,
                                  std::uint64_t source_epoch) {
  const KernelArgs& args = *bs.args;
  const std::byte* slot = staging_slot(args, pool_slot);
  const std::uint64_t delay = args.k2k_delay;
  const std::uint64_t cut = bs.epoch - 1;  // the restored actor resumes as if S were this epoch
  block_copy(actor_arena(args, actor), slot, args.state_stride);
  for (std::uint32_t k = 0; k < delay && inbox_bytes(args) > 0; ++k)
    block_copy(actor_inbox(args, inbox_piece_buffer(args, cut, k), actor),
               slot + args.state_stride + k * inbox_bytes(args), inbox_bytes(args));
  // The inbox headers carry the epoch they were written in; the restored messages must be
  // the ones this epoch and the next D - 1 read.
  sync_block();
  if (thread_rank() == 0) {
    for (std::uint32_t k = 0; k < delay; ++k) {
      std::byte* inbox = actor_inbox(args, inbox_piece_buffer(args, cut, k), actor);
      // A piece older than the run (S + 1 + k < D) holds no message whatever its header says.
      const bool exists = source_epoch + 1 + k >= delay && cut + 1 + k >= delay;
      for (std::uint32_t c = 0; c < args.k2k_channels; ++c) {
        auto* h = reinterpret_cast<K2KSlotHeader*>(inbox + c * args.k2k_slot_stride);
        h->epoch = exists && h->epoch == source_epoch + 1 + k - delay ? cut + 1 + k - delay : ~std::uint64_t{0};
      }
    }
    args.actor_flags[actor] &= ~kSnapshotHasPrevious;
  }
  sync_block();
}

}  // namespace pkrt::detail
