// kernels/persistent_loop.hpp: the persistent actor loop, one source for both backends.
//
// One call runs one block for the life of the kernel: on CUDA from the cooperative kernel
// (cuda/persistent_kernel.cuh), on the CPU backend from a worker thread (host/cpu_backend).
//
// Epoch protocol (every block, in lock step). A "round" is one pass of the loop; every
// block passes the same barriers in the same order, so all agree on the round number.
//   0. Once: init the block's actors (K2K sent here is read in epoch start+1).
//   loop (round r, last completed epoch e):
//   1. [event-driven apps only] grid barrier: every block finished epoch e, so block 0
//      sees their activity and can decide to idle (wait on the host doorbell).
//   2. Block 0's leader decides: run epoch e + 1, park, or stop (shutdown/abort), and
//      writes the directive to slot r & 1.
//   3. Grid barrier. Also orders epoch e's K2K writes before epoch e + 1's reads.
//   4. Every block reads directive slot r & 1 (the same decision everywhere).
//      stop: leave the loop.  park: every block has finished epoch e (they all passed the
//      barrier), so block 0's leader now reports kOpPaused and waits for the host to change
//      a control word; the others go round to the next barrier and wait there.
//      A snapshot_all due at e is served here first, by every block (kernels/snapshot.hpp).
//      A snapshot_all larger than the staging pool also parks the grid here, at its cut,
//      without kOpPaused, serving one wave per round the host posts (holds_for_snapshot).
//   5. run: leader applies the H2K commands due at e + 1 (apply_epoch <= e + 1) in
//      (apply_epoch, send) order; commands not yet due move from the ring to a block-local
//      deferred list, so none holds back another. It calls on_message and answers each on K2H
//      with the applied epoch: its reply, kOpError, or (no reply) a kOpAckRange covering a run
//      of consecutive commands, published before the block's next K2H slot. Unknown opcodes
//      and bad actor indices produce kOpError. Snapshot and restore commands are queued for
//      step 6/7.
//   6. All threads restore queued actors from staging, then step every actor of the block.
//   7. Snapshots due at the end of e + 1 (commands, and the snapshot_all the directive
//      carries) are queued and served right after the next round's barrier, when every block
//      has finished e + 1 and all its K2K messages are in place: the image goes to staging
//      with its chunk CRCs (kOpSnapshotReady). Releases of staging slots at the ring head are
//      applied every round, parked or not.
//   6b. Digests (kernels/digest.hpp) of every actor when e + 1 is a multiple of the period.
//   8. Leader writes the heartbeat (epoch e + 1), after every K2H slot of the epoch.
// Chaos mode (CPU backend only, pkrt/detail/chaos.hpp): steps 5 and 6 are taken in turns,
// one block at a time, in a seeded order per epoch.
//   K2H events (step 6) are published as they are emitted.
//
// Why the directive has two slots: block 0 writes slot (r + 1) & 1 in round r + 1, possibly
// while a slow block still reads slot r & 1 after barrier r; slot r & 1 is rewritten only in
// round r + 2, after barrier r + 1, which every block reaches only after its read.
//
// Assumptions
//   All blocks are co-resident (cooperative launch / one worker thread per block), so the
//   grid barrier cannot deadlock. Host control words change only through HostControl and
//   are always followed by a doorbell store.
#pragma once

#include <pkrt/actor.hpp>
#include <pkrt/control.hpp>
#include <pkrt/detail/block_platform.hpp>
#include <pkrt/detail/block_threads.hpp>
#include <pkrt/detail/kernel_args.hpp>
#include <pkrt/detail/system_atomic.hpp>
#include <pkrt/kernels/digest.hpp>
#include <pkrt/kernels/h2k_stage.hpp>
#include <pkrt/kernels/snapshot.hpp>
#include <pkrt/ring.hpp>
#include <pkrt/slot.hpp>
#include <pkrt/status.hpp>

#include <cstdint>
#include <cstring>

namespace pkrt::detail {

template <class App>
PKRT_HD typename App::State& actor_state(const KernelArgs& args, std::uint32_t actor) {
  return *reinterpret_cast<typename App::State*>(args.state + args.state_stride * actor);
}

PKRT_HD inline void publish_error(BlockState& bs, const Slot& cmd, StatusCode code,
                                  std::uint64_t detail_value) {
  ErrorData err{};
  err.code = static_cast<std::uint16_t>(code);
  err.opcode = cmd.header.opcode;
  err.actor = cmd.header.actor;
  err.detail = detail_value;
  publish_k2h(bs, kOpError, kFlagReply, cmd.header.actor,
              make_envelope(bs.epoch, cmd.payload.request, &err, sizeof(err)));
}

// A command applied without a reply. Commands sent or posted by the host coalesce into
// kOpAckRange (coalesce_ack); runtime-internal ones (no request id) get their own kOpAck.
PKRT_HD inline void publish_ack(BlockState& bs, const Slot& cmd) {
  if (is_command_request(cmd.payload.request)) {
    coalesce_ack(bs, cmd);
    return;
  }
  AckData ack{};
  ack.opcode = cmd.header.opcode;
  publish_k2h(bs, kOpAck, kFlagReply, cmd.header.actor,
              make_envelope(bs.epoch, cmd.payload.request, &ack, sizeof(ack)));
}

// H2K slots a block consumes before it hands them back to the host with one store of the
// ring's head: one store per batch instead of per slot, and the host's producer never waits
// on more than this many slots it could already reuse.
inline constexpr std::uint64_t kH2KCommitBatch = 64;

// Leader only. Applies one command at bs.epoch.
template <class App>
PKRT_HD void apply_command(BlockState& bs, const Slot& cmd, std::uint32_t first, std::uint32_t last) {
  const KernelArgs& args = *bs.args;
  {
    bs.active = true;
    const std::uint32_t actor = cmd.header.actor;
    const bool mine = actor < args.num_actors && actor >= first && actor < last;
    if (cmd.header.opcode == kOpPing) {
      publish_ack(bs, cmd);
    } else if (cmd.header.opcode == kOpReleaseStaging && actor == kGlobalRegionActor &&
               args.global_staging != nullptr && block_index(bs.env) == 0) {
      // Block 0's leader alone writes the global slot's flags (it serves its snapshots too).
      *args.global_flags &= ~kSnapshotStagingBusy;
      publish_ack(bs, cmd);
    } else if (cmd.header.opcode == kOpReleaseStaging && actor == kQueuedCommandsActor && args.queued != nullptr) {
      // This block's area: the host releases it through this block's ring.
      args.queued_flags[block_index(bs.env)] &= ~kSnapshotStagingBusy;
      publish_ack(bs, cmd);
    } else if (cmd.header.opcode == kOpReleaseStaging) {
      // Pool slots are never released (the host reassigns them); only the areas above are.
      publish_error(bs, cmd, StatusCode::kInvalidArgument, 0);
    } else if (!mine && (cmd.header.opcode == kOpSnapshotActor || cmd.header.opcode == kOpRestoreActor)) {
      publish_error(bs, cmd, StatusCode::kOutOfRange, args.num_actors);
    } else if (cmd.header.opcode == kOpSnapshotActor || cmd.header.opcode == kOpRestoreActor) {
      const bool snapshot = cmd.header.opcode == kOpSnapshotActor;
      std::uint32_t slot = 0;
      std::uint32_t full = 0;
      std::uint64_t request = cmd.payload.request;
      if (snapshot) {
        SnapshotRequestData req;
        std::memcpy(&req, cmd.payload.data, sizeof req);
        slot = req.slot;
        full = req.full;
      } else {
        RestoreRequestData req;
        std::memcpy(&req, cmd.payload.data, sizeof req);
        slot = req.slot;
        request = req.source_epoch;
      }
      if (args.chunks == 0) {
        publish_error(bs, cmd, StatusCode::kUnsupported, 0);  // runtime built without staging
      } else if (slot >= args.staging_slots) {
        publish_error(bs, cmd, StatusCode::kOutOfRange, args.staging_slots);
      } else if ((snapshot ? bs.snapshots : bs.restores) == kMaxBoundaryOps) {
        publish_error(bs, cmd, StatusCode::kRingFull, kMaxBoundaryOps);
      } else if (snapshot) {
        bs.snapshot_ops[bs.snapshots++] = {actor, full, request, slot};
      } else {
        bs.restore_ops[bs.restores++] = {actor, 0, request, slot};
        publish_ack(bs, cmd);
      }
    } else if (cmd.header.opcode < kUserOpcodeBase) {
      publish_error(bs, cmd, StatusCode::kUnknownOpcode, 0);
    } else if (!mine) {
      publish_error(bs, cmd, StatusCode::kOutOfRange, args.num_actors);
    } else {
      Message msg{cmd.header.opcode, global_actor_id(args, actor), cmd.payload.request, bs.epoch, cmd.payload.data};
      MessageContext ctx(bs, msg, actor, (cmd.header.flags & kFlagPost) != 0);
      StatusCode rc = StatusCode::kUnknownOpcode;
      if constexpr (ActorHasMessageHandler<App>) {
        rc = App::on_message(actor_state<App>(args, actor), msg, ctx);
      }
      if (rc != StatusCode::kOk) {
        publish_error(bs, cmd, rc, 0);
      } else if (!ctx.replied()) {
        publish_ack(bs, cmd);
      }
    }
  }
}

// All threads. Applies every command due at bs.epoch: first the deferred ones that came due,
// in (apply_epoch, publication) order, then the ring's, deferring those not yet due (the
// leader applies; the other threads help copy the ring's slots, stage_h2k_run). A command
// due later therefore never holds back one due sooner (a snapshot release, say), and commands
// due at the same epoch apply in the order they were sent. Ring slots are handed back in
// batches (one head store per kH2KCommitBatch slots and at the end), the acknowledgements of
// the epoch's commands go out as kOpAckRange runs at the end, the K2H slots the commands
// produce are published once per kK2HPublishBatch applications, and the host pump is woken
// once per kK2HWakeBatch replies and at the end (BlockState::defer_wakes).
template <class App>
PKRT_HD void apply_due_commands(BlockState& bs, H2KStage& stage, std::uint32_t first, std::uint32_t last) {
  const bool leader = thread_rank() == 0;
  const KernelArgs& args = *bs.args;
  Slot* deferred = args.deferred + std::uint64_t{args.deferred_capacity} * block_index(bs.env);
  std::uint32_t applied = 0;
  auto apply = [&](const Slot& cmd) {
    apply_command<App>(bs, cmd, first, last);
    if (++applied % kK2HPublishBatch == 0) bs.k2h.publish_staged();
  };
  // Only what was published when this epoch's apply began: a host that refills the ring as
  // fast as the block applies it must not keep one epoch (and its heartbeat) open for ever.
  std::uint64_t stop_at = 0;
  if (leader) {
    bs.defer_wakes = true;
    while (bs.deferred_count > 0 && bs.epoch >= bs.deferred_min) {
      std::uint32_t pick = bs.deferred_count;
      for (std::uint32_t i = 0; i < bs.deferred_count; ++i) {
        const Slot& d = deferred[i];
        if (d.payload.epoch > bs.epoch) continue;
        if (pick == bs.deferred_count || d.payload.epoch < deferred[pick].payload.epoch ||
            (d.payload.epoch == deferred[pick].payload.epoch && d.header.seq < deferred[pick].header.seq))
          pick = i;
      }
      if (pick == bs.deferred_count) break;
      const Slot cmd = deferred[pick];
      deferred[pick] = deferred[--bs.deferred_count];
      apply(cmd);
      bs.deferred_min = ~std::uint64_t{0};
      for (std::uint32_t i = 0; i < bs.deferred_count; ++i)
        bs.deferred_min = deferred[i].payload.epoch < bs.deferred_min ? deferred[i].payload.epoch : bs.deferred_min;
    }
    stop_at = bs.h2k.published();
    stage.ring = bs.h2k.slots();
  }
  bool backed_up = false;  // deferred list full or a slot unreadable: the rest stays in the ring (leader)
  for (;;) {
    if (leader) {
      const std::uint64_t left = backed_up ? 0 : stop_at - bs.h2k.position();
      stage.first = bs.h2k.position();
      stage.count = static_cast<std::uint32_t>(left < kH2KStageSlots ? left : kH2KStageSlots);
    }
    const std::uint32_t count = stage_h2k_run(stage);
    if (count == 0) break;
    if (!leader) continue;
    for (std::uint32_t i = 0; i < count; ++i) {
      const Slot& cmd = stage.slots[i];
      if (cmd.header.seq != stage.first + i + 1) {  // not readable: stop as peek() would
        backed_up = true;
        break;
      }
      if (cmd.payload.epoch > bs.epoch) {
        if (bs.deferred_count == args.deferred_capacity) {  // full: the ring backs up
          backed_up = true;
          break;
        }
        deferred[bs.deferred_count++] = cmd;
        bs.deferred_min = cmd.payload.epoch < bs.deferred_min ? cmd.payload.epoch : bs.deferred_min;
      } else {
        apply(cmd);
      }
      bs.h2k.advance();
      if (bs.h2k.uncommitted() >= kH2KCommitBatch) bs.h2k.commit();
    }
  }
  if (leader) {
    bs.h2k.commit();
    flush_acks(bs);
    bs.defer_wakes = false;
    announce_k2h(bs);
  }
}

// Whether any block did work in `epoch` or a command is waiting anywhere (event-driven
// apps). Block 0's leader calls it between the two barriers, when every block is quiescent.
// Three device-memory words (GridScratch's work counters) and one PCIe read: the host's
// count of published H2K slots against the blocks' consumed count.
PKRT_HD inline bool grid_has_work(const KernelArgs& args, std::uint64_t epoch) {
  // Relaxed (all three): every leader updated them before the barrier we just passed, which
  // orders them at device scope.
  if (device_load_relaxed(args.grid->active_epoch) == epoch + 1) return true;
  if (device_load_relaxed(args.grid->deferred) != 0) return true;  // commands due later
  const std::uint64_t consumed = device_load_relaxed(args.grid->consumed);
  // Acquire: pairs with the host's store_release of `published`, made before the doorbell
  // store the caller already acquired.
  return load_acquire(args.control->host.published) > consumed;
}

// Leader, at the end of its epoch: adds what this block consumed and deferred since its last
// report to the grid's work counters, and marks the epoch active if it did work.
PKRT_HD inline void report_block_work(BlockState& bs, std::uint64_t epoch) {
  GridScratch& grid = *bs.args->grid;
  // Relaxed (all three): read by block 0 only after the next grid barrier. Several blocks
  // may store the same epoch + 1; any of them is the answer.
  if (bs.active) device_store_relaxed(grid.active_epoch, epoch + 1);
  const std::uint64_t consumed = bs.h2k.position();
  if (consumed != bs.reported_consumed) {
    device_add_relaxed(grid.consumed, consumed - bs.reported_consumed);
    bs.reported_consumed = consumed;
  }
  const std::uint64_t deferred = bs.deferred_count;
  if (deferred != bs.reported_deferred) {
    // Unsigned wrap-around adds a negative delta when the deferred list shrank.
    device_add_relaxed(grid.deferred, deferred - bs.reported_deferred);
    bs.reported_deferred = deferred;
  }
}

PKRT_HD inline void report_grid(const KernelArgs& args, std::uint64_t epoch, GridState state) {
  // Relaxed epoch then release state: a host that acquires the state sees the epoch with it.
  store_relaxed(args.control->grid.epoch, epoch);
  store_release(args.control->grid.state, static_cast<std::uint32_t>(state));
}

// Block 0's leader's copy of HostControl, refreshed when the generation changes.
struct ControlView {
  std::uint32_t generation = ~0u;
  std::uint64_t target_epoch = 0;
  bool pause = false, shutdown = false, abort = false;
  std::uint64_t snapshot_epoch = 0, snapshot_request = 0;
  std::uint32_t snapshot_flags = 0;  // SnapshotAllFlags
  std::uint32_t snapshot_wave = 0, wave_first = 0, wave_last = 0;
  std::uint64_t k2k_open_epoch = 0;
  std::uint64_t pending_cut = ~std::uint64_t{0};  // a snapshot_all latched to serve after this epoch
  std::uint64_t served_snapshot = 0;  // block 0's record of the last snapshot_all latched
  std::uint32_t served_wave = 0;      // and of its last wave scheduled
  std::uint32_t reported_generation = 0;  // last generation stored in GridReport

  PKRT_HD void refresh(HostControl& hc) {
    // Acquire: pairs with the host's store_release of the generation, which follows its
    // stores of the words below; they are then read with acquire loads of their own too,
    // so a newer value than this generation's is possible (a later generation bump follows
    // it and is acted on next round). It is harmless because each group is stored with its
    // key word last and loaded key first: a snapshot request's fields before the request,
    // a wave's range before the wave; and the host zeroes a finished request's word before
    // the next request may store anything, so old and new fields never pair up.
    const std::uint32_t g = load_acquire(hc.generation);
    if (g == generation) return;
    generation = g;
    target_epoch = load_acquire(hc.target_epoch);
    pause = load_acquire(hc.pause) != 0;
    shutdown = load_acquire(hc.shutdown) != 0;
    abort = load_acquire(hc.abort) != 0;
    // The request first: the host stores epoch and full before it (release), so a new
    // request is never paired with the previous request's epoch.
    snapshot_request = load_acquire(hc.snapshot_request);
    // The wave before its range: the host stores first and last, then the wave (release).
    snapshot_wave = load_acquire(hc.snapshot_wave);
    snapshot_epoch = load_acquire(hc.snapshot_epoch);
    snapshot_flags = load_acquire(hc.snapshot_flags);
    wave_first = load_acquire(hc.snapshot_wave_first);
    wave_last = load_acquire(hc.snapshot_wave_last);
    // Acquire: pairs with the host's store_release of it, made after its delivery of the
    // K2K messages it opens (Runtime::deliver_inbound_k2k).
    k2k_open_epoch = load_acquire(hc.k2k_open_epoch);
  }
  // Scale-out: epoch `next` reads K2K messages from other runtimes the host has not delivered.
  PKRT_HD bool waits_for_exchange(const KernelArgs& args, std::uint64_t next) const {
    return args.k2k_gated != 0 && next > k2k_open_epoch;
  }
  // Scale-out: a cut at `epoch` (a park, whose round serves snapshots of it, or a snapshot_all
  // served after it) must hold every message in flight after it, i.e. wait until the host
  // delivered `epoch` itself (k2k_open_epoch = epoch + D), not only what epoch + 1 reads.
  PKRT_HD bool cut_waits_for_exchange(const KernelArgs& args, std::uint64_t epoch) const {
    return args.k2k_gated != 0 && k2k_open_epoch < epoch + args.k2k_delay;
  }
  // The user's park: pause or target epoch (reported with kOpPaused).
  PKRT_HD bool wants_park(std::uint64_t epoch) const { return pause || epoch >= target_epoch; }
  // A snapshot_all in waves holds the grid at its cut once latched (kSnapshotAllHold).
  PKRT_HD bool holds_for_snapshot() const {
    return snapshot_request != 0 && snapshot_request == served_snapshot && (snapshot_flags & kSnapshotAllHold) != 0;
  }
};

// Block 0's leader: what the grid does after epoch `epoch`. Event-driven apps wait here
// (between the two barriers, when every block is quiescent) while there is nothing to do.
// Writes the directive to slot `round & 1`.
template <bool kEventDriven>
PKRT_HD void decide_next_round(BlockState& bs, ControlView& control, std::uint64_t epoch,
                               std::uint64_t round, bool& parked) {
  const KernelArgs& args = *bs.args;
  HostControl& hc = args.control->host;
  std::uint32_t directive = kDirectiveRun;
  for (;;) {
    // Acquire: pairs with the host's store_release of the doorbell, which follows every
    // publish and control change; read before the checks so none is missed by the wait.
    const std::uint32_t bell = kEventDriven || args.k2k_gated != 0 ? load_acquire(hc.doorbell) : 0u;
    control.refresh(hc);
    if (control.reported_generation != control.generation) {
      control.reported_generation = control.generation;
      // Release: a host that acquires this generation sees every latch made before it in
      // latched_snapshot; a request withdrawn in it or earlier and not latched never will be.
      store_release(args.control->grid.control_generation, control.generation);
    }
    if (control.abort) {
      args.grid->stop_reason = kStopAbort;
      directive = kDirectiveStop;
    } else if (control.shutdown) {
      args.grid->stop_reason = kStopShutdown;
      directive = kDirectiveStop;
    } else if ((control.wants_park(epoch) || control.holds_for_snapshot() || control.pending_cut == epoch) &&
               control.cut_waits_for_exchange(args, epoch)) {
      // A park round serves the snapshots of `epoch`; so does the round after a snapshot_all
      // latched for it. Either waits for the exchange of `epoch` (scale-out) first.
      wait_for_change(hc.doorbell, bell, args.idle_spin, args.poll_sleep_cap_ns, args.control->doorbell_sleeper);
      continue;
    } else if (control.wants_park(epoch) || control.holds_for_snapshot()) {
      directive = kDirectivePark;
    } else if (control.waits_for_exchange(args, epoch + 1)) {
      // Every block has finished `epoch` (and released its heartbeat, so the host can collect
      // its outbound K2K); the host opens the next epoch once the exchange is in (a control
      // change: generation, then doorbell).
      wait_for_change(hc.doorbell, bell, args.idle_spin, args.poll_sleep_cap_ns, args.control->doorbell_sleeper);
      continue;
    } else if constexpr (kEventDriven) {
      // A target epoch ahead is work too: run_until() must reach it even with no commands.
      // So is a snapshot_all not yet served.
      const bool snapshot_pending = control.snapshot_request != 0 &&
                                    control.snapshot_request != control.served_snapshot &&
                                    control.snapshot_epoch <= epoch + 1;
      if (control.target_epoch == kNoTargetEpoch && !snapshot_pending && !grid_has_work(args, epoch)) {
        report_grid(args, epoch, kGridIdle);
        wait_for_change(hc.doorbell, bell, args.idle_spin, args.poll_sleep_cap_ns,
                        args.control->doorbell_sleeper);
        continue;
      }
    }
    break;
  }
  // A snapshot_all due by the end of the coming epoch is latched with its first wave, served
  // in that epoch by every block; one due now is served in a park round, on the parked epoch.
  // Later waves of a held request are served in park rounds.
  const bool latch = control.snapshot_request != 0 && control.snapshot_request != control.served_snapshot &&
                     (directive == kDirectiveRun ? epoch + 1 : epoch) >= control.snapshot_epoch;
  const bool next_wave = directive == kDirectivePark && control.holds_for_snapshot() &&
                         control.snapshot_wave != control.served_wave;
  if (directive != kDirectiveStop && (latch || next_wave)) {
    if (latch) {
      control.served_snapshot = control.snapshot_request;
      if (directive == kDirectiveRun) control.pending_cut = epoch + 1;
      // Relaxed: published by the release store of control_generation at the next generation.
      store_relaxed(args.control->grid.latched_snapshot, control.snapshot_request);
    }
    control.served_wave = control.snapshot_wave;
    directive |= kDirectiveSnapshotBit;
    // Relaxed (all four): read by the other blocks only after the grid barrier that follows.
    store_relaxed(args.grid->snapshot_request[round & 1u], control.snapshot_request);
    store_relaxed(args.grid->snapshot_flags[round & 1u], control.snapshot_flags);
    store_relaxed(args.grid->snapshot_wave_first[round & 1u], control.wave_first);
    store_relaxed(args.grid->snapshot_wave_last[round & 1u], control.wave_last);
  }
  if (directive == kDirectiveRun) {
    if (parked) {
      parked = false;
      publish_k2h(bs, kOpResumed, kFlagNone, kNoActor, make_envelope(epoch, 0, nullptr, 0));
    }
    report_grid(args, epoch, kGridRunning);
  }
  // Relaxed: read by the other blocks only after the grid barrier that follows.
  store_relaxed(args.grid->directive[round & 1u], directive);
}

// Block 0's leader, after the barrier of a park round: every block has finished `epoch`.
// Reports a park the user asked for (again whenever the host's generation moved, so the host
// knows the park answers its latest request), then waits until the host changes something.
// A park that only holds the grid for a snapshot_all's waves is not reported: the host
// drives it, and wait_parked()/run_until() must not mistake it for theirs.
PKRT_HD inline void park(BlockState& bs, ControlView& control, std::uint64_t epoch,
                         bool& parked, std::uint32_t& reported_generation) {
  const KernelArgs& args = *bs.args;
  HostControl& hc = args.control->host;
  if (control.wants_park(epoch) && (!parked || reported_generation != control.generation)) {
    parked = true;
    reported_generation = control.generation;
    report_grid(args, epoch, kGridParked);
    const std::uint32_t g = control.generation;
    publish_k2h(bs, kOpPaused, kFlagNone, kNoActor, make_envelope(epoch, 0, &g, sizeof g));
  }
  const std::uint32_t seen = control.generation;
  // Acquire: pairs with the host's store_release of the doorbell (see decide_next_round).
  const std::uint32_t bell = load_acquire(hc.doorbell);
  control.refresh(hc);
  if (control.generation == seen)
    wait_for_change(hc.doorbell, bell, args.idle_spin, args.poll_sleep_cap_ns,
                    args.control->doorbell_sleeper);
}

// Whether a snapshot_all with these SnapshotAllFlags snapshots the global region (block 0).
PKRT_HD inline bool snapshots_global(const KernelArgs& args, std::uint32_t flags) {
  return (flags & kSnapshotAllGlobal) != 0 && args.global_staging != nullptr;
}

// One target of a snapshot_all. A slot the host has not released is skipped with an error
// event, never overwritten. Call from all threads.
template <std::uint32_t kBlockThreads>
PKRT_HD void serve_snapshot_of_all(BlockState& bs, const SnapshotTarget& t, std::uint64_t request, bool full) {
  const bool leader = thread_rank() == 0;
  const std::uint32_t busy = block_broadcast(leader ? (*t.flags & kSnapshotStagingBusy) : 0u);
  if (busy != 0) {
    if (leader) {
      Slot cmd{};
      cmd.header.opcode = kOpSnapshotActor;
      cmd.header.actor = t.actor;
      cmd.payload.request = request;
      publish_error(bs, cmd, StatusCode::kFailedPrecondition, 0);
    }
    return;
  }
  serve_snapshot<kBlockThreads>(bs, t, request, full);
  sync_block();
}

// Leader, at a snapshot_all cut (every command due by bs.epoch applied, none of bs.epoch + 1
// yet): copies the block's commands not yet applied to its queued-commands area, the
// deferred list first, then the ring's unconsumed slots (those published when this reads
// `published`: a command sent after the checkpoint request may land on either side, one
// sent before it is always in), and publishes kOpQueuedCommands. An area the host has not
// released is never overwritten: the set then fails (kFailedPrecondition).
PKRT_HD inline void capture_queued_commands(BlockState& bs, std::uint64_t request) {
  const KernelArgs& args = *bs.args;
  const std::uint32_t b = block_index(bs.env);
  std::uint32_t& flags = args.queued_flags[b];  // this leader alone writes it
  if ((flags & kSnapshotStagingBusy) != 0) {
    Slot cmd{};
    cmd.header.opcode = kOpSnapshotActor;
    cmd.header.actor = kQueuedCommandsActor;
    cmd.payload.request = request;
    publish_error(bs, cmd, StatusCode::kFailedPrecondition, 0);
    return;
  }
  const std::uint64_t capacity = 2ull * args.deferred_capacity;
  Slot* out = args.queued + capacity * b;
  const Slot* deferred = args.deferred + std::uint64_t{args.deferred_capacity} * b;
  std::uint32_t n = 0;
  for (std::uint32_t i = 0; i < bs.deferred_count; ++i) out[n++] = deferred[i];
  // The ring holds at most deferred_capacity (= its capacity) unconsumed slots.
  const std::uint64_t published = bs.h2k.published();
  for (std::uint64_t pos = bs.h2k.position(); pos < published && n < capacity; ++pos)
    if (bs.h2k.peek_at(pos, out[n])) ++n;
  flags |= kSnapshotStagingBusy;
  QueuedCommandsData data{};
  data.count = n;
  data.deferred = bs.deferred_count;
  publish_k2h(bs, kOpQueuedCommands, kFlagNone, kQueuedCommandsActor,
              make_envelope(bs.epoch, request, &data, sizeof data));
}

// One wave of a snapshot_all: the block's actors in [wave_first, wave_last) at the end of
// bs.epoch, actor a into pool slot a - wave_first; in block 0 the global region, and each
// block's queued commands, when `flags` ask for them (the host asks with the first wave).
// Call from all threads.
template <std::uint32_t kBlockThreads>
PKRT_HD void serve_snapshot_all(BlockState& bs, std::uint64_t request, std::uint32_t flags, std::uint32_t wave_first,
                                std::uint32_t wave_last, std::uint32_t first, std::uint32_t last) {
  const KernelArgs& args = *bs.args;
  if (args.chunks == 0) return;
  const bool full = (flags & kSnapshotAllFull) != 0;
  // The host never maps more actors than the pool has slots; a wave that would is cut short
  // rather than written past the pool.
  if (wave_last > args.num_actors) wave_last = args.num_actors;
  if (wave_last > wave_first && wave_last - wave_first > args.staging_slots) wave_last = wave_first + args.staging_slots;
  const std::uint32_t from = first > wave_first ? first : wave_first;
  const std::uint32_t to = last < wave_last ? last : wave_last;
  for (std::uint32_t a = from; a < to; ++a)
    serve_snapshot_of_all<kBlockThreads>(bs, actor_snapshot_target(args, a, a - wave_first, bs.epoch), request, full);
  if (block_index(bs.env) == 0 && snapshots_global(args, flags))
    serve_snapshot_of_all<kBlockThreads>(bs, global_snapshot_target(args), request, full);
  if ((flags & kSnapshotAllCommands) != 0 && args.queued != nullptr && thread_rank() == 0)
    capture_queued_commands(bs, request);
}

PKRT_HD inline std::uint64_t block_broadcast64(std::uint64_t value) {
  const std::uint32_t lo = block_broadcast(static_cast<std::uint32_t>(value));
  const std::uint32_t hi = block_broadcast(static_cast<std::uint32_t>(value >> 32));
  return (std::uint64_t{hi} << 32) | lo;
}

// Snapshots due at the end of bs.epoch, queued in its run round; served after the next
// grid barrier, when every block has finished the epoch and every K2K message sent in it is
// in place. Call from all threads.
template <std::uint32_t kBlockThreads>
PKRT_HD void serve_queued_snapshots(BlockState& bs, std::uint32_t first, std::uint32_t last) {
  const bool leader = thread_rank() == 0;
  const std::uint32_t n = block_broadcast(bs.snapshots);
  for (std::uint32_t i = 0; i < n; ++i) {
    const std::uint32_t actor = block_broadcast(leader ? bs.snapshot_ops[i].actor : 0u);
    const std::uint32_t full = block_broadcast(leader ? bs.snapshot_ops[i].full : 0u);
    const std::uint64_t request = block_broadcast64(leader ? bs.snapshot_ops[i].request : 0u);
    const std::uint32_t slot = block_broadcast(leader ? bs.snapshot_ops[i].slot : 0u);
    serve_snapshot<kBlockThreads>(bs, actor_snapshot_target(*bs.args, actor, slot, bs.epoch), request, full != 0);
    sync_block();
  }
  if (block_broadcast(bs.all_pending ? 1u : 0u) != 0) {
    const std::uint64_t request = block_broadcast64(leader ? bs.all_request : 0u);
    const std::uint32_t flags = block_broadcast(leader ? bs.all_flags : 0u);
    const std::uint32_t wave_first = block_broadcast(leader ? bs.all_wave_first : 0u);
    const std::uint32_t wave_last = block_broadcast(leader ? bs.all_wave_last : 0u);
    serve_snapshot_all<kBlockThreads>(bs, request, flags, wave_first, wave_last, first, last);
    // Block 0 has copied the global region; no block may step the next epoch (and write the
    // region) before that. Every block saw the same directive, so all pass this barrier.
    if (snapshots_global(*bs.args, flags)) sync_grid(bs.env);
  }
  bs.snapshots = 0;
  bs.all_pending = false;
}

// Leader, every round: applies kOpReleaseStaging commands at the head of the ring even in a
// park round, so a parked grid can serve one snapshot after another.
template <class App>
PKRT_HD void apply_leading_releases(BlockState& bs, std::uint32_t first, std::uint32_t last) {
  Slot cmd;
  while (bs.h2k.peek(cmd) && cmd.header.opcode == kOpReleaseStaging && cmd.payload.epoch <= bs.epoch) {
    bs.h2k.pop();
    apply_command<App>(bs, cmd, first, last);
  }
}

// Runs block `env.block` until the grid stops. Call from every thread of the block.
template <class App>
PKRT_HD void run_persistent_block(const KernelArgs& args, const BlockEnv& env) {
  static_assert(check_actor_definition<App>());
  constexpr bool kEventDriven = !actor_steps_when_idle<App>();
  constexpr std::uint32_t kBlockThreads = cuda_block_threads<App>();  // CUB's block size
  const std::uint32_t b = block_index(env);
  const bool leader = thread_rank() == 0;
  const std::uint32_t first = block_first_actor(b, args.num_blocks, args.num_actors);
  const std::uint32_t last = block_first_actor(b + 1, args.num_blocks, args.num_actors);

  PKRT_BLOCK_SHARED BoundaryOp boundary_ops[2][kMaxBoundaryOps];
  PKRT_BLOCK_SHARED H2KStage h2k_stage;
  BlockState bs{};
  bs.snapshot_ops = boundary_ops[0];
  bs.restore_ops = boundary_ops[1];
  bs.args = &args;
  bs.env = env;
  bs.epoch = args.start_epoch;
  bs.deferred_min = ~std::uint64_t{0};
  if (leader) {
    bs.k2h = RingProducer(ring_at(args.k2h, args.ring_stride, b));
    bs.h2k = RingConsumer(ring_at(args.h2k, args.ring_stride, b));
    // Relaxed epoch then release state: the watchdog reads state first with acquire.
    store_relaxed(args.heartbeats[b].epoch, args.start_epoch);
    store_release(args.heartbeats[b].state, static_cast<std::uint32_t>(kGridRunning));
  }

  if (args.run_init != 0) {
    for (std::uint32_t a = first; a < last; ++a) {
      ActorContext ctx(bs, a);
      if constexpr (ActorHasInit<App>) App::init(actor_state<App>(args, a), ctx);
      sync_block();
    }
  }

  if (leader) {
    // Release: pairs with the host's acquire in Runtime::epoch_completed; the init's K2K
    // commits (every thread's: the sync_block after each actor's init) are visible with it.
    store_release(args.heartbeats[b].initialized, 1u);
  }
  // A restored grid may hold K2K messages for its next epoch: an event-driven app must run it.
  if (args.run_init == 0) bs.active = true;
  if (leader && bs.active) {
    // Relaxed: read by block 0 only after the next grid barrier (K2K sent during init).
    device_store_relaxed(args.grid->active_epoch, args.start_epoch + 1);
  }

  std::uint64_t epoch = args.start_epoch;
  std::uint64_t round = 0;
  bool parked = false;
  std::uint32_t reported_generation = 0;
  ControlView control;
  for (;; ++round) {
    if constexpr (kEventDriven) sync_grid(env);
    if (b == 0 && leader) decide_next_round<kEventDriven>(bs, control, epoch, round, parked);
    sync_grid(env);
    // Relaxed: written by block 0 before the barrier just passed.
    const std::uint32_t directive =
        block_broadcast(leader ? load_relaxed(args.grid->directive[round & 1u]) : 0u);
    const bool snapshot_all = (directive & kDirectiveSnapshotBit) != 0;
    const std::uint32_t action = directive & 0xFFu;
    if (leader) apply_leading_releases<App>(bs, first, last);
    serve_queued_snapshots<kBlockThreads>(bs, first, last);
    if (action == kDirectiveStop) break;
    if (action == kDirectivePark) {
      // A snapshot_all of the parked epoch: every block has finished it (barrier).
      if (snapshot_all) {
        // Relaxed (all four): written by block 0 before the barrier of this round.
        const std::uint64_t request = load_relaxed(args.grid->snapshot_request[round & 1u]);
        const std::uint32_t flags = load_relaxed(args.grid->snapshot_flags[round & 1u]);
        const std::uint32_t wave_first = load_relaxed(args.grid->snapshot_wave_first[round & 1u]);
        const std::uint32_t wave_last = load_relaxed(args.grid->snapshot_wave_last[round & 1u]);
        // The global region needs no extra barrier here: nobody steps before block 0, after
        // this copy, reaches the next round's barrier.
        serve_snapshot_all<kBlockThreads>(bs, request, flags, wave_first, wave_last, first, last);
      }
      if (b == 0 && leader) park(bs, control, epoch, parked, reported_generation);
      continue;
    }

    bs.epoch = ++epoch;
    bs.active = false;
    bs.restores = 0;
    begin_step_turn(env, epoch);  // chaos mode (CPU) only: blocks take turns in a seeded order
    apply_due_commands<App>(bs, h2k_stage, first, last);
    sync_block();  // handler writes are visible to every thread before the step
    const std::uint32_t restores = block_broadcast(bs.restores);
    for (std::uint32_t i = 0; i < restores; ++i) {
      const std::uint32_t actor = block_broadcast(leader ? bs.restore_ops[i].actor : 0u);
      const std::uint32_t slot = block_broadcast(leader ? bs.restore_ops[i].slot : 0u);
      serve_restore(bs, actor, slot, block_broadcast64(leader ? bs.restore_ops[i].request : 0u));
    }
    for (std::uint32_t a = first; a < last; ++a) {
      ActorContext ctx(bs, a);
      App::step(actor_state<App>(args, a), ctx);
      sync_block();
    }
    end_step_turn(env);
    serve_digests<kBlockThreads>(bs, first, last);
    // A snapshot_all due at the end of this epoch joins the queued single-actor snapshots;
    // all are served after the next barrier (serve_queued_snapshots).
    if (snapshot_all && leader) {
      bs.all_pending = true;
      // Relaxed (all four): written by block 0 before this round's barrier; copied now, since
      // block 0 may rewrite this parity slot two rounds on.
      bs.all_request = load_relaxed(args.grid->snapshot_request[round & 1u]);
      bs.all_flags = load_relaxed(args.grid->snapshot_flags[round & 1u]);
      bs.all_wave_first = load_relaxed(args.grid->snapshot_wave_first[round & 1u]);
      bs.all_wave_last = load_relaxed(args.grid->snapshot_wave_last[round & 1u]);
    }
    if (leader) {
      if constexpr (kEventDriven) report_block_work(bs, epoch);  // for block 0's idle check
      // Release: pairs with the pump's acquire of the smallest heartbeat; every K2H slot
      // this block published for epochs up to `epoch` is visible to a pump that sees it.
      store_release(args.heartbeats[b].epoch, epoch);
    }
  }

  if (leader) {
    // Release: the host's acquire of the stopped state sees every earlier write of ours.
    store_release(args.heartbeats[b].state, static_cast<std::uint32_t>(kGridStopped));
    if (b == 0) {
      StopData stop{};
      stop.final_epoch = epoch;
      stop.reason = static_cast<std::uint16_t>(args.grid->stop_reason);
      publish_k2h(bs, kOpStopped, kFlagNone, kNoActor, make_envelope(epoch, 0, &stop, sizeof(stop)));
      report_grid(args, epoch, kGridStopped);
    }
  }
}

}  // namespace pkrt::detail
