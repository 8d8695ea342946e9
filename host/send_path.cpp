// host/send_path.cpp: how commands reach the actors and how their answers come back.
//
// Send (any thread; nothing global is locked, nothing is allocated on the heap; a batch of
// sends allocates the vector of its record indices):
//   1. a request record from the lock-free pool (RequestTable::allocate);
//   2. the block's H2K lane mutex: check admission, wait (bounded) for room, take the next
//      sequence number (request id = block << 40 | seq), prepare + bind the record, log the
//      slot (replay), publish; batches do this once per ring-full of slots;
//   3. the doorbell (ring_doorbell): two host RMWs, a system call only if block 0 sleeps.
// Posts skip the record; sends and posts to one block share its sequence, so the kernel can
// acknowledge a run of either with one kOpAckRange.
// The answers come back through host/reply_path.cpp.
#include "host/runtime_impl.hpp"

#include <pkrt/detail/futex.hpp>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <string>

namespace pkrt {
namespace {

// Slots one lane publish or one drain handles at a time (stack buffers).
constexpr std::uint32_t kLaneBatch = 64;

Slot make_slot(std::uint16_t opcode, std::uint16_t flags, std::uint32_t actor, const Envelope& env) {
  Slot slot{};
  slot.header.opcode = opcode;
  slot.header.flags = flags;
  slot.header.actor = actor;
  slot.payload = env;
  return slot;
}

// A batch's command slot, built in place in the batch's buffer rather than in a temporary
// Slot that is then copied: the copy's 16-byte loads would stall on the temporary's narrow
// stores (store forwarding fails), which measured as most of publish_batch's own time.
void build_command_slot(Slot& slot, const Command& c, std::uint16_t flags, std::uint64_t request) {
  slot.header.seq = 0;
  slot.header.opcode = c.opcode;
  slot.header.flags = flags;
  slot.header.actor = c.actor;
  slot.payload.epoch = c.apply_epoch;
  slot.payload.request = request;
  std::memcpy(slot.payload.data, c.data.data(), kEnvelopeDataBytes);
}

}  // namespace

std::uint64_t Runtime::Impl::next_command_seq(H2KLane& lane) {
  // Sequence numbers live in the low 40 bits of a request id; one that would be 0 there is
  // skipped (0 would make block 0's id the "no request" id, and a window key of 0 "empty").
  if ((++lane.next_seq & kRequestSeqMask) == 0) ++lane.next_seq;
  return lane.next_seq;
}

std::uint32_t Runtime::Impl::block_of(std::uint32_t actor) const {
  // Out of range: block 0 rejects it with kOpError (a send's future gets kOutOfRange).
  return actor < options.num_actors ? detail::block_of_actor(actor, plan.blocks, options.num_actors) : 0;
}

Status Runtime::Impl::refusal_status() const {
  std::lock_guard<std::mutex> lock(mu);
  return refusal;
}

void Runtime::Impl::close_admission(const Status& why) {
  {
    std::lock_guard<std::mutex> lock(mu);
    if (refusal.ok()) refusal = why;  // the first reason stays
  }
  // Relaxed: senders read it under their lane's mutex; taking every mutex once below makes
  // every sender that still saw `true` finish its publish before we return (every caller
  // sweeps, so none returns while another caller's sweep is still under way).
  admitting.store(false, std::memory_order_relaxed);
  for (std::uint32_t b = 0; b < plan.blocks; ++b) std::lock_guard<std::mutex> lane(h2k[b].mutex);
}

// ---- H2K lanes ------------------------------------------------------------------------------

std::unique_lock<std::mutex> Runtime::Impl::lock_lane(H2KLane& lane) {
  if (!requests->on_pump_thread()) return std::unique_lock<std::mutex>(lane.mutex);
  // The pump thread (a callback that sends): the holder may be a sender waiting for room that
  // the blocks make only once K2H is drained, which is our job; drain while we wait.
  std::unique_lock<std::mutex> lock(lane.mutex, std::defer_lock);
  detail::Backoff backoff(64, detail::kDevicePollCapLowPowerNs);
  while (!lock.try_lock()) {
    if (!pump_drain_without_handling()) backoff.pause();
  }
  return lock;
}

void Runtime::Impl::log_h2k(std::uint32_t b, const Slot* slots, std::uint32_t n) {
  if (!log) return;
  ReplayRecord records[kLaneBatch];
  // Relaxed: a label for the records (see complete_epoch); it orders nothing.
  const std::uint64_t observed = complete_epoch.load(std::memory_order_relaxed);
  const std::uint64_t position = h2k[b].producer.position();
  for (std::uint32_t i = 0; i < n; ++i) {
    ReplayRecord& r = records[i];
    r.slot = slots[i];
    r.slot.header.seq = position + i + 1;
    fill_replay_header(r, ReplayDirection::kH2K, b, observed);
  }
  // Acquire: pairs with start()'s release after it logged the commands sent before it.
  if (!log_begun.load(std::memory_order_acquire)) {
    std::lock_guard<std::mutex> lock(log_mu);
    // Relaxed: log_mu orders it now.
    if (!log_begun.load(std::memory_order_relaxed)) {
      prestart_h2k.insert(prestart_h2k.end(), records, records + n);
      return;
    }
  }
  log->append_batch(std::span<ReplayRecord>(records, n));
}

void Runtime::Impl::publish_locked(std::uint32_t b, Slot* slots, std::uint32_t n) {
  // The records precede the slots: a command's record is in the log before the kernel can
  // see the command, hence before its acknowledgement.
  log_h2k(b, slots, n);
  // Counted before they become visible, never after: block 0's idle check compares this count
  // with what the blocks consumed, and a slot consumed before it was counted would hide
  // another one still waiting in a ring (seen: a grid idling with a full ring). Release RMW:
  // a block that consumes one of these slots (acquiring the ring's `published`, released
  // below) happens after it, so block 0 never sees more consumed than counted.
  std::atomic_ref<std::uint64_t>(control->host.published).fetch_add(n, std::memory_order_release);
  h2k[b].producer.publish_reserved(slots, n);
}

Status Runtime::Impl::wait_for_room(std::uint32_t b, std::uint32_t wanted, std::uint32_t actor,
                                    std::uint64_t& unannounced, std::uint32_t& room) {
  H2KLane& lane = h2k[b];
  room = lane.producer.room(wanted);
  if (room >= wanted) return Status();
  // Relaxed: see start_begun. Before start() nothing consumes the ring: waiting would only
  // delay the same failure by ring_full_timeout.
  if (!start_begun.load(std::memory_order_relaxed)) {
    return Status(StatusCode::kRingFull,
                  "H2K ring of block " + std::to_string(b) + " is full (capacity " +
                      std::to_string(options.ring_capacity) + " slots) and the runtime is not started, so nothing " +
                      "consumes it; the command to actor " + std::to_string(actor) +
                      " was not sent (the commands already queued stay queued). Fix: call start() before sending "
                      "more than ring_capacity commands to one block, or raise ring_capacity (--ring-capacity)");
  }
  // Slow path: ring the doorbell before waiting, whether or not we published anything yet.
  // An idle grid must run to drain this ring, and a sender blocked on this lane's mutex
  // behind us may hold slots it published elsewhere and has not rung for.
  ring_doorbell(unannounced);
  unannounced = 0;
  const auto deadline = std::chrono::steady_clock::now() + options.ring_full_timeout;
  const bool on_pump_thread = requests->on_pump_thread();
  // Sleeps of at most 16 us: the ring frees up as soon as the block's next epoch consumes it,
  // and a sender asleep for a millisecond would cut a full ring's throughput tenfold.
  detail::Backoff backoff(64, detail::kDevicePollCapLowPowerNs);
  for (;;) {
    room = lane.producer.room(wanted);
    if (room >= wanted) return Status();
    // Relaxed: see close_admission (we hold the lane mutex it takes).
    if (!admitting.load(std::memory_order_relaxed)) return refusal_status();
    // Acquire: pairs with block 0's release of the grid state; a stopped kernel never
    // drains the ring.
    if (detail::load_acquire(control->grid.state) == kGridStopped)
      return Status(StatusCode::kAborted, "the kernel stopped; the command to actor " + std::to_string(actor) +
                                              " was not sent");
    // A callback sending on the pump thread: room comes only once the blocks can publish
    // their answers, and nobody but us drains K2H. The deadline holds all the same: a ring
    // held up by commands due far ahead stays full however much K2H flows.
    const bool drained = on_pump_thread && pump_drain_without_handling();
    if (std::chrono::steady_clock::now() >= deadline) {
      return Status(StatusCode::kRingFull,
                    "H2K ring of block " + std::to_string(b) + " stayed full (capacity " +
                        std::to_string(options.ring_capacity) + " slots) for " +
                        std::to_string(options.ring_full_timeout.count()) + " ms; the command to actor " +
                        std::to_string(actor) + " was not sent. The kernel is not consuming commands "
                        "(parked, stalled, or commands far in the future block the ring). Fix: resume "
                        "the runtime, raise ring_capacity (--ring-capacity), or send fewer commands "
                        "ahead of time");
    }
    if (!drained) backoff.pause();
  }
}

namespace {

Status bad_message(std::uint32_t actor, std::size_t bytes) {
  return Status(StatusCode::kInvalidArgument,
                "a message to actor " + std::to_string(actor) + " with " + std::to_string(bytes) +
                    " bytes of data" + (bytes <= kEnvelopeDataBytes ? " and no data pointer" : "") +
                    "; nothing was sent. Fix: pass at most " + std::to_string(kEnvelopeDataBytes) +
                    " bytes (put larger data in the actor's state or a named region)");
}

// The runtime's own opcodes drive its protocols (snapshots, restores, staging releases): one
// sent by an application would overwrite actor state or answer a request nobody made, so only
// kOpPing (a no-op that measures the round trip) and application opcodes may be sent.
bool application_may_send(std::uint16_t opcode) { return opcode >= kUserOpcodeBase || opcode == kOpPing; }

Status runtime_opcode_refused(std::uint32_t actor, std::uint16_t opcode, const std::string& which) {
  char hex[8];
  std::snprintf(hex, sizeof hex, "0x%04x", opcode);
  return Status(StatusCode::kInvalidArgument,
                which + " to actor " + std::to_string(actor) + " has opcode " + hex +
                    ", one of pkrt's own (below kUserOpcodeBase, 0x1000); nothing was sent. Fix: number the "
                    "application's opcodes from pkrt::kUserOpcodeBase, and use the Runtime's own calls "
                    "(snapshot_actor, restore_actor, ...) for what the runtime does");
}

// The first command of a batch with an opcode an application may not send.
Status check_batch_opcodes(std::span<const Command> commands) {
  for (std::size_t i = 0; i < commands.size(); ++i)
    if (!application_may_send(commands[i].opcode))
      return runtime_opcode_refused(commands[i].actor, commands[i].opcode,
                                    "command " + std::to_string(i) + " of the batch");
  return Status();
}

}  // namespace

ReplyFuture Runtime::Impl::send_one(std::uint32_t actor, std::uint16_t opcode, const void* data,
                                    std::size_t bytes, std::uint64_t apply_epoch, ReplyCallback* callback,
                                    bool runtime_opcode) {
  const std::uint32_t index = requests->allocate();
  if (index == detail::RequestTable::kNoRecord) {
    Reply failed{Status(StatusCode::kRingFull,
                        "16777216 requests are outstanding; the command to actor " + std::to_string(actor) +
                            " was not sent. Fix: wait for replies (get() or drop the futures) before "
                            "sending more"),
                 Event{}};
    if (callback != nullptr && *callback) (*callback)(failed);
    return ReplyFuture();
  }
  if (bytes > kEnvelopeDataBytes || (bytes != 0 && data == nullptr))
    return requests->complete_unbound(index, actor, opcode, callback, bad_message(actor, bytes));
  if (!runtime_opcode && !application_may_send(opcode))
    return requests->complete_unbound(index, actor, opcode, callback, runtime_opcode_refused(actor, opcode, "a command"));
  const std::uint32_t b = block_of(actor);
  H2KLane& lane = h2k[b];
  Envelope env = detail::make_envelope(apply_epoch, 0, data, bytes);
  ReplyFuture future;
  Status failure;
  {
    const std::unique_lock<std::mutex> lock = lock_lane(lane);
    std::uint64_t unannounced = 0;
    std::uint32_t room = 0;
    // Relaxed: see close_admission.
    failure = admitting.load(std::memory_order_relaxed) ? wait_for_room(b, 1, actor, unannounced, room)
                                                        : refusal_status();
    if (failure.ok()) {
      env.request = make_command_request(b, next_command_seq(lane));
      future = requests->prepare(index, env.request, actor, opcode, callback);
      requests->bind(env.request, index);
      Slot slot = make_slot(opcode, kFlagNone, actor, env);
      publish_locked(b, &slot, 1);
    }
  }
  if (!failure.ok()) return requests->complete_unbound(index, actor, opcode, callback, std::move(failure));
  commands_sent.fetch_add(1, std::memory_order_relaxed);  // Relaxed: statistics only.
  ring_doorbell(1);
  return future;
}

Status Runtime::Impl::post_one(std::uint32_t actor, std::uint16_t opcode, const void* data, std::size_t bytes,
                               std::uint64_t apply_epoch) {
  if (bytes > kEnvelopeDataBytes || (bytes != 0 && data == nullptr)) return bad_message(actor, bytes);
  if (!application_may_send(opcode)) return runtime_opcode_refused(actor, opcode, "a post");
  if (actor >= options.num_actors)
    return Status(StatusCode::kOutOfRange, "a post to actor " + std::to_string(actor) + ", but app '" + program->name +
                                               "' has " + std::to_string(options.num_actors) +
                                               " actors; nothing was posted. Fix: address actors below " +
                                               std::to_string(options.num_actors));
  Command c;
  c.actor = actor;
  c.opcode = opcode;
  c.apply_epoch = apply_epoch;
  if (bytes != 0) std::memcpy(c.data.data(), data, std::min(bytes, kEnvelopeDataBytes));
  return publish_batch(std::span<const Command>(&c, 1), nullptr);
}

Status Runtime::Impl::publish_batch(std::span<const Command> commands, ReplyFuture* replies) {
  const bool post = replies == nullptr;
  const std::size_t n = commands.size();
  if (post) {
    for (std::size_t i = 0; i < n; ++i) {
      if (commands[i].actor >= options.num_actors)
        return Status(StatusCode::kOutOfRange,
                      "command " + std::to_string(i) + " of the batch is for actor " + std::to_string(commands[i].actor) +
                          ", but app '" + program->name + "' has " + std::to_string(options.num_actors) +
                          " actors; nothing was posted. Fix: address actors below " +
                          std::to_string(options.num_actors));
    }
  }
  // Sends: every record first, outside the lanes' mutexes (a batch of up to kLaneBatch on
  // the stack, larger ones on the heap).
  std::uint32_t small_indices[kLaneBatch];
  std::vector<std::uint32_t> large_indices;
  std::uint32_t* indices = small_indices;
  if (!post) {
    if (n > kLaneBatch) {
      large_indices.resize(n);
      indices = large_indices.data();
    }
    const std::size_t got = requests->allocate_many(indices, n);
    std::fill(indices + got, indices + n, detail::RequestTable::kNoRecord);
  }
  std::size_t done = 0;         // commands published, in order
  std::uint64_t unannounced = 0;  // published but not yet counted by a doorbell
  Status failure;
  Slot slots[kLaneBatch];
  while (done < n && failure.ok()) {
    // One run of consecutive commands for the same block: one lane, one reservation per
    // ring-full.
    const std::uint32_t b = block_of(commands[done].actor);
    std::size_t end = done + 1;
    while (end < n && block_of(commands[end].actor) == b) ++end;
    H2KLane& lane = h2k[b];
    const std::unique_lock<std::mutex> lock = lock_lane(lane);
    // Relaxed: see close_admission.
    if (!admitting.load(std::memory_order_relaxed)) {
      failure = refusal_status();
      break;
    }
    while (done < end) {
      std::uint32_t room = 0;
      const auto wanted = static_cast<std::uint32_t>(std::min<std::size_t>(
          {end - done, std::size_t{kLaneBatch}, std::size_t{options.ring_capacity}}));
      failure = wait_for_room(b, 1, commands[done].actor, unannounced, room);
      if (!failure.ok()) break;
      const std::uint32_t m = std::min(room, wanted);
      std::uint32_t built = 0;
      for (; built < m; ++built) {
        const Command& c = commands[done + built];
        if (!post && indices[done + built] == detail::RequestTable::kNoRecord) {
          failure = Status(StatusCode::kRingFull, "16777216 requests are outstanding; command " +
                                                      std::to_string(done + built) + " of the batch was not sent");
          break;
        }
        const std::uint64_t request = make_command_request(b, next_command_seq(lane));
        if (!post) {
          const std::uint32_t index = indices[done + built];
          replies[done + built] = requests->prepare(index, request, c.actor, c.opcode, nullptr);
          requests->bind(request, index);
        }
        build_command_slot(slots[built], c, post ? kFlagPost : kFlagNone, request);
      }
      if (built != 0) {
        publish_locked(b, slots, built);
        done += built;
        unannounced += built;
      }
      if (!failure.ok()) break;
    }
  }
  if (unannounced != 0) ring_doorbell(unannounced);
  if (done != 0) {
    commands_sent.fetch_add(done, std::memory_order_relaxed);  // Relaxed: statistics only.
    if (post) posts.fetch_add(done, std::memory_order_relaxed);  // Relaxed: statistics only.
  }
  if (failure.ok()) return Status();
  for (std::size_t i = done; i < n && !post; ++i) {
    if (indices[i] == detail::RequestTable::kNoRecord) continue;
    replies[i] = requests->complete_unbound(indices[i], commands[i].actor, commands[i].opcode, nullptr, failure);
  }
  return Status(failure.code(), failure.message() + " (" + std::to_string(done) + " of the batch's " +
                                    std::to_string(n) + " commands were " + (post ? "posted" : "sent") + ")");
}

Status Runtime::Impl::publish_internal(std::uint32_t block, std::uint16_t opcode, std::uint32_t actor,
                                       const Envelope& env, bool wait) {
  H2KLane& lane = h2k[block];
  std::uint64_t unannounced = 0;
  {
    // Without waiting (the pump): not even for the lane's mutex, which a sender may hold
    // while it waits for room the kernel can only make once the pump drained K2H.
    std::unique_lock<std::mutex> lock(lane.mutex, std::defer_lock);
    if (wait) {
      lock = lock_lane(lane);
    } else if (!lock.try_lock()) {
      return Status(StatusCode::kRingFull, "H2K lane of block " + std::to_string(block) + " is busy");
    }
    std::uint32_t room = 0;
    if (!wait && !lane.producer.has_room())
      return Status(StatusCode::kRingFull, "H2K ring of block " + std::to_string(block) + " is full");
    PKRT_RETURN_IF_ERROR(wait_for_room(block, 1, actor, unannounced, room));
    Slot slot = make_slot(opcode, kFlagNone, actor, env);
    publish_locked(block, &slot, 1);
  }
  commands_sent.fetch_add(1, std::memory_order_relaxed);  // Relaxed: statistics only.
  ring_doorbell(1);
  return Status();
}

// ---- Runtime's send API ---------------------------------------------------------------------

ReplyFuture Runtime::send(std::uint32_t actor, std::uint16_t opcode, const void* data, std::size_t bytes,
                          std::uint64_t apply_epoch) {
  return impl_->send_one(actor, opcode, data, bytes, apply_epoch, nullptr);
}

void Runtime::send(std::uint32_t actor, std::uint16_t opcode, const void* data, std::size_t bytes,
                   std::uint64_t apply_epoch, ReplyCallback callback) {
  (void)impl_->send_one(actor, opcode, data, bytes, apply_epoch, &callback);
}

Status Runtime::post(std::uint32_t actor, std::uint16_t opcode, const void* data, std::size_t bytes,
                     std::uint64_t apply_epoch) {
  return impl_->post_one(actor, opcode, data, bytes, apply_epoch);
}

Status Runtime::post_batch(std::span<const Command> commands) {
  PKRT_RETURN_IF_ERROR(check_batch_opcodes(commands));
  return impl_->publish_batch(commands, nullptr);
}

void Runtime::send_batch(std::span<const Command> commands, std::span<ReplyFuture> replies) {
  Status bad = check_batch_opcodes(commands);
  if (replies.size() != commands.size()) {
    bad = Status(StatusCode::kInvalidArgument,
                 "send_batch: " + std::to_string(commands.size()) + " commands but room for " +
                     std::to_string(replies.size()) + " replies; nothing was sent. Fix: pass a span of "
                     "futures as long as the commands");
  }
  if (!bad.ok()) {
    for (ReplyFuture& f : replies) {
      const std::uint32_t index = impl_->requests->allocate();
      if (index == detail::RequestTable::kNoRecord) continue;
      f = impl_->requests->complete_unbound(index, 0, 0, nullptr, bad);
    }
    return;
  }
  (void)impl_->publish_batch(commands, replies.data());
}

std::vector<ReplyFuture> Runtime::send_batch(std::span<const Command> commands) {
  std::vector<ReplyFuture> replies(commands.size());
  send_batch(commands, std::span<ReplyFuture>(replies));
  return replies;
}

}  // namespace pkrt
