// kernels/persistent_loop.hpp: the persistent actor loop, one source for both backends.
//
// One call runs one block for the life of the kernel: on CUDA from the cooperative kernel
// (cuda/persistent_kernel.cuh), on the CPU backend from a worker thread (host/cpu_backend).
//
// Epoch protocol (every block, in lock step)
//   0. Once: init the block's actors (K2K sent here is read in epoch start+1).
//   loop:
//   1. [event-driven apps only] grid barrier: every block finished epoch e, so block 0
//      sees their activity.
//   2. Block 0's leader decides what epoch e + 1 is: run, park (pause requested or target
//      epoch reached: it waits on the host doorbell, the others wait at the barrier), or
//      stop (shutdown/abort). It writes the directive for e + 1 (parity slot) and, for
//      parks, reports kOpPaused/kOpResumed on its K2H ring.
//   3. Grid barrier. Also orders epoch e's K2K writes before epoch e + 1's reads.
//   4. Every block reads the same directive; stop ends the loop at the same epoch everywhere.
//   5. Leader applies the H2K commands due at e + 1 (apply_epoch <= e + 1) in ring order,
//      calls on_message, and acknowledges each on K2H (reply, kOpAck or kOpError) with the
//      applied epoch. Unknown opcodes and bad actor indices produce kOpError; the loop goes on.
//   6. All threads step every actor of the block.
//   7. Leader writes the heartbeat (epoch e + 1).
//   K2H events (step 6) are published as they are emitted.
//
// Assumptions
//   All blocks are co-resident (cooperative launch / one worker thread per block), so the
//   grid barrier cannot deadlock. Host control words change only through HostControl and
//   are always followed by a doorbell store.
#pragma once

#include <pkrt/actor.hpp>
#include <pkrt/control.hpp>
#include <pkrt/detail/block_platform.hpp>
#include <pkrt/detail/kernel_args.hpp>
#include <pkrt/detail/system_atomic.hpp>
#include <pkrt/ring.hpp>
#include <pkrt/slot.hpp>
#include <pkrt/status.hpp>

#include <cstdint>

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

PKRT_HD inline void publish_ack(BlockState& bs, const Slot& cmd) {
  AckData ack{};
  ack.opcode = cmd.header.opcode;
  publish_k2h(bs, kOpAck, kFlagReply, cmd.header.actor,
              make_envelope(bs.epoch, cmd.payload.request, &ack, sizeof(ack)));
}

// Leader only. Applies every command due at bs.epoch, in ring order.
template <class App>
PKRT_HD void apply_due_commands(BlockState& bs, std::uint32_t first, std::uint32_t last) {
  const KernelArgs& args = *bs.args;
  Slot cmd;
  while (bs.h2k.peek(cmd)) {
    if (cmd.payload.epoch > bs.epoch) break;  // not due yet; later commands wait behind it
    bs.h2k.pop();
    bs.active = true;
    const std::uint32_t actor = cmd.header.actor;
    if (cmd.header.opcode == kOpPing) {
      publish_ack(bs, cmd);
    } else if (cmd.header.opcode < kUserOpcodeBase) {
      publish_error(bs, cmd, StatusCode::kUnknownOpcode, 0);
    } else if (actor >= args.num_actors || actor < first || actor >= last) {
      publish_error(bs, cmd, StatusCode::kOutOfRange, args.num_actors);
    } else {
      Message msg{cmd.header.opcode, actor, cmd.payload.request, bs.epoch, cmd.payload.data};
      MessageContext ctx(bs, msg);
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

// Whether any block has a command waiting or did work in `epoch` (event-driven apps).
// Block 0's leader calls it between the two barriers, when every block is quiescent.
PKRT_HD inline bool grid_has_work(const KernelArgs& args, std::uint64_t epoch) {
  for (std::uint32_t b = 0; b < args.num_blocks; ++b) {
    // Relaxed: written by block b's leader before the barrier we just passed, which orders it.
    if (load_relaxed(args.block_lines[b].active_epoch) == epoch && epoch != 0) return true;
    RingHeader* ring = ring_at(args.h2k, args.ring_stride, b);
    // Relaxed: block b's own consumer index, stored before the barrier; read-only here.
    const std::uint64_t head = load_relaxed(ring->head);
    // Acquire: pairs with the host's store_release of the slot's seq (publish).
    if (load_acquire(ring_slots(ring)[head & ring->mask].header.seq) == head + 1) return true;
  }
  return false;
}

PKRT_HD inline void report_grid(const KernelArgs& args, std::uint64_t epoch, GridState state) {
  // Relaxed epoch then release state: a host that acquires the state sees the epoch with it.
  store_relaxed(args.control->grid.epoch, epoch);
  store_release(args.control->grid.state, static_cast<std::uint32_t>(state));
}

// Block 0's leader: what the grid does in epoch `epoch + 1`. Waits here while parked or
// idle. Returns the directive and writes it to the parity slot for epoch + 1.
template <bool kEventDriven>
PKRT_HD std::uint32_t decide_next_epoch(BlockState& bs, std::uint64_t epoch, bool& parked) {
  const KernelArgs& args = *bs.args;
  HostControl& hc = args.control->host;
  std::uint32_t directive = kDirectiveRun;
  for (;;) {
    // Acquire (all loads below): pair with the host's store_release of each control word;
    // the doorbell is read first so that any change after it is seen by wait_for_change.
    const std::uint32_t bell = load_acquire(hc.doorbell);
    if (load_acquire(hc.abort) != 0) {
      args.grid->stop_reason = kStopAbort;
      directive = kDirectiveStop;
      break;
    }
    if (load_acquire(hc.shutdown) != 0) {
      args.grid->stop_reason = kStopShutdown;
      directive = kDirectiveStop;
      break;
    }
    const bool park = load_acquire(hc.pause) != 0 || epoch >= load_acquire(hc.target_epoch);
    if (park) {
      if (!parked) {
        parked = true;
        report_grid(args, epoch, kGridParked);
        publish_k2h(bs, kOpPaused, kFlagNone, kNoActor, make_envelope(epoch, 0, nullptr, 0));
      }
      wait_for_change(hc.doorbell, bell, args.idle_spin);
      continue;
    }
    if constexpr (kEventDriven) {
      if (!grid_has_work(args, epoch)) {
        report_grid(args, epoch, kGridIdle);
        wait_for_change(hc.doorbell, bell, args.idle_spin);
        continue;
      }
    }
    break;
  }
  if (directive == kDirectiveRun) {
    if (parked) {
      parked = false;
      publish_k2h(bs, kOpResumed, kFlagNone, kNoActor, make_envelope(epoch, 0, nullptr, 0));
    }
    report_grid(args, epoch, kGridRunning);
  }
  // Relaxed: read by the other blocks only after the grid barrier that follows.
  store_relaxed(args.grid->directive[(epoch + 1) & 1u], directive);
  return directive;
}

// Runs block `env.block` until the grid stops. Call from every thread of the block.
template <class App>
PKRT_HD void run_persistent_block(const KernelArgs& args, const BlockEnv& env) {
  static_assert(check_actor_definition<App>());
  constexpr bool kEventDriven = !actor_steps_when_idle<App>();
  const std::uint32_t b = block_index(env);
  const bool leader = thread_rank() == 0;
  const std::uint32_t first = block_first_actor(b, args.num_blocks, args.num_actors);
  const std::uint32_t last = block_first_actor(b + 1, args.num_blocks, args.num_actors);

  BlockState bs{&args, env, RingProducer{}, RingConsumer{}, args.start_epoch, 0, false};
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

  std::uint64_t epoch = args.start_epoch;
  bool parked = false;
  for (;;) {
    if constexpr (kEventDriven) sync_grid(env);
    if (b == 0 && leader) decide_next_epoch<kEventDriven>(bs, epoch, parked);
    sync_grid(env);
    // Relaxed: written by block 0 before the barrier just passed.
    const std::uint32_t directive = block_broadcast(
        leader ? load_relaxed(args.grid->directive[(epoch + 1) & 1u]) : 0u);
    if (directive == kDirectiveStop) break;

    bs.epoch = ++epoch;
    bs.active = false;
    if (leader) apply_due_commands<App>(bs, first, last);
    sync_block();  // handler writes are visible to every thread before the step
    for (std::uint32_t a = first; a < last; ++a) {
      ActorContext ctx(bs, a);
      App::step(actor_state<App>(args, a), ctx);
      sync_block();
    }
    if (leader) {
      // Relaxed: read by block 0 only after the next grid barrier.
      if (bs.active) store_relaxed(args.block_lines[b].active_epoch, epoch);
      // Relaxed: progress counter for the host watchdog; it orders nothing.
      store_relaxed(args.heartbeats[b].epoch, epoch);
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
