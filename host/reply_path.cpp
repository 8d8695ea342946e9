// host/reply_path.cpp: how answers reach the threads and callbacks waiting for them.
//
// The holder of a block's K2H lane try-lock (the pump, or a thread waiting on a future of
// that block) consumes its slots: a reply or kOpError completes its request's record; a
// kOpAckRange completes each record in its range with a synthesised kOpAck. Slots a waiting
// thread may not complete itself (callbacks, which run on the pump thread; events,
// snapshots, park reports; errors of posts, which go to the error callback) stop its drain
// and are left to the pump, which it wakes. Every drain logs its slots (one batch) before it
// hands them back to the ring, so the pump's horizon never runs ahead of the log.
#include "host/runtime_impl.hpp"

#include <cstdio>

namespace pkrt {

void fill_event(Event& ev, const Slot& slot, std::uint32_t block) {
  ev.opcode = slot.header.opcode;
  ev.flags = slot.header.flags;
  ev.actor = slot.header.actor;
  ev.block = block;
  ev.epoch = slot.payload.epoch;
  ev.request = slot.payload.request;
  std::memcpy(ev.data.data(), slot.payload.data, kEnvelopeDataBytes);
}

Event to_event(const Slot& slot, std::uint32_t block) {
  Event ev;
  fill_event(ev, slot, block);
  return ev;
}

std::string hex_opcode(std::uint16_t op) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%04x", op);
  return buf;
}

// ---- answers ------------------------------------------------------------------------------

Status Runtime::Impl::error_status(const Event& ev) const {
  const auto err = ev.as<ErrorData>();
  const auto code = static_cast<StatusCode>(err.code);
  std::string what;
  switch (code) {
    case StatusCode::kOutOfRange:
      what = "actor " + std::to_string(err.actor) + " is out of range: app '" + program->name + "' has " +
             std::to_string(err.detail) + " actors (0.." + std::to_string(err.detail == 0 ? 0 : err.detail - 1) +
             "). Fix: address an actor below " + std::to_string(err.detail);
      break;
    case StatusCode::kUnknownOpcode:
      what = "opcode " + hex_opcode(err.opcode) + " is not handled by app '" + program->name + "' (actor " +
             std::to_string(err.actor) + ", epoch " + std::to_string(ev.epoch) +
             "). Fix: send an opcode the actor's on_message handles (application opcodes start at 0x1000)";
      break;
    default:
      what = "actor " + std::to_string(err.actor) + " of app '" + program->name + "' rejected opcode " +
             hex_opcode(err.opcode) + " at epoch " + std::to_string(ev.epoch) + " with " + status_code_name(code);
      break;
  }
  return Status(code, what);
}

bool Runtime::Impl::k2h_maybe_ready(std::uint32_t b) const {
  RingHeader* ring = detail::ring_at(static_cast<std::byte*>(k2h_buf.host()), ring_stride, b);
  // Acquire (both): head pairs with the consumer's release (commit), made after its records
  // were logged; published pairs with the block's release after the slots below it. Neither
  // touches a slot's cache line, so polling this never slows the block's publishes.
  const std::uint64_t head = detail::load_acquire(ring->head);
  return detail::load_acquire(ring->published) > head;
}

bool Runtime::Impl::waiter_may_consume(const Slot& slot) const {
  const std::uint64_t request = slot.payload.request;
  if (slot.header.opcode == kOpAckRange) {
    AckRangeData range;
    std::memcpy(&range, slot.payload.data, sizeof range);
    for (std::uint32_t i = 0; i < range.count; ++i)
      if (requests->waiter_of(range.first_request + i) == detail::RequestTable::Waiter::kCallback) return false;
    return true;
  }
  if ((slot.header.flags & kFlagReply) != 0 && is_command_request(request)) {
    switch (requests->waiter_of(request)) {
      case detail::RequestTable::Waiter::kFuture: return true;
      case detail::RequestTable::Waiter::kCallback: return false;
      case detail::RequestTable::Waiter::kNone: return slot.header.opcode != kOpError;  // the pump reports it
    }
  }
  return slot.header.opcode == kOpAck && request == 0;  // a runtime-internal command's ack
}

std::uint64_t Runtime::Impl::complete_commands(const Slot& slot, std::uint32_t block) {
  if (slot.header.opcode == kOpAckRange) {
    AckRangeData range;
    std::memcpy(&range, slot.payload.data, sizeof range);
    for (std::uint32_t i = 0; i < range.count; ++i) {
      const std::uint64_t request = range.first_request + i;
      requests->complete(request, [&](detail::RequestTable::Record& r) {
        Event& event = r.reply.event;
        event.opcode = kOpAck;
        event.flags = kFlagReply;
        event.actor = r.actor;
        event.block = block;
        event.epoch = slot.payload.epoch;
        event.request = request;
        AckData ack{};
        ack.opcode = r.opcode;
        event.data.fill(std::byte{0});
        std::memcpy(event.data.data(), &ack, sizeof ack);
      });
    }
    return range.count;
  }
  if (slot.header.opcode == kOpError) errors.fetch_add(1, std::memory_order_relaxed);  // Relaxed: statistics only.
  const bool completed = requests->complete(slot.payload.request, [&](detail::RequestTable::Record& r) {
    fill_event(r.reply.event, slot, block);
    if (slot.header.opcode == kOpError) r.reply.status = error_status(r.reply.event);
  });
  // Nobody waits: a post (its reply is dropped, its error reported) or a request already
  // failed by shutdown.
  if (!completed && slot.header.opcode == kOpError) {
    const Status st = error_status(to_event(slot, block));
    report_error(Status(st.code(), "a command nobody waits for (a posted command, or one whose wait shutdown "
                                   "already ended) failed: " + st.message()));
  }
  return 1;
}

bool Runtime::Impl::drain_for_waiter(std::uint32_t block) {
  if (block >= plan.blocks || !k2h_maybe_ready(block)) return false;
  K2HLane& lane = k2h[block];
  if (!lane.try_lock()) return false;
  constexpr std::uint32_t kBatch = 32;  // slots logged and completed per round (stack buffer)
  ReplayRecord batch[kBatch];
  bool pump_needed = false;
  // Until the ring is empty, or a slot only the pump may handle is at its head.
  for (;;) {
    std::uint32_t n = 0;
    // Relaxed: a label for the records (see complete_epoch).
    const std::uint64_t observed = complete_epoch.load(std::memory_order_relaxed);
    // Each slot is read straight into its record (see fill_replay_header); the header is
    // needed only by the log.
    while (n < kBatch && lane.consumer.peek(batch[n].slot)) {
      if (!waiter_may_consume(batch[n].slot)) {
        pump_needed = true;
        break;
      }
      if (log) fill_replay_header(batch[n], ReplayDirection::kK2H, block, observed);
      ++n;
      lane.consumer.advance();
    }
    if (n == 0) break;
    // Logged before handed back: see k2h_maybe_ready.
    if (log) log->append_batch(std::span<ReplayRecord>(batch, n));
    lane.consumer.commit();
    events_received.fetch_add(n, std::memory_order_relaxed);  // Relaxed: statistics only.
    std::uint64_t answered = 0;
    for (std::uint32_t i = 0; i < n; ++i) {
      const Slot& s = batch[i].slot;
      if (s.header.opcode == kOpAck && s.payload.request == 0) continue;
      answered += complete_commands(s, block);
    }
    // One RMW per drain, not per reply: a locked instruction also waits for this thread's
    // pending stores (the H2K slots it just published, still being fetched for ownership).
    replies.fetch_add(answered, std::memory_order_relaxed);  // Relaxed: statistics only.
    if (n < kBatch || pump_needed) break;
  }
  lane.unlock();
  if (pump_needed) wake_pump();
  return pump_needed;
}

void Runtime::Impl::drainer_arrives() {
  // Relaxed RMW: host threads only. A CPU block that misses the increment wakes the pump
  // once more than needed; the fence that matters is the one in drainer_leaves.
  std::atomic_ref<std::uint32_t>(control->pump.drainers).fetch_add(1, std::memory_order_relaxed);
}

void Runtime::Impl::drainer_leaves() {
  // Relaxed RMW, then a seq_cst fence: pairs with the fence a CPU block issues after its
  // K2H publish (wake_host_pump). Either it sees no drainer and wakes the pump, or we see its
  // slot below and wake the pump ourselves: no slot waits for the pump's timeout.
  std::atomic_ref<std::uint32_t>(control->pump.drainers).fetch_sub(1, std::memory_order_relaxed);
  std::atomic_thread_fence(std::memory_order_seq_cst);
  for (std::uint32_t b = 0; b < plan.blocks; ++b) {
    if (k2h_maybe_ready(b)) {
      wake_pump();
      return;
    }
  }
}

}  // namespace pkrt
