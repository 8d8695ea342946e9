// pkrt/actor.hpp: how an application defines an actor, and what an actor may do.
//
// An actor type is a struct with static members; pkrt instantiates its persistent loop for
// both backends from the same source:
//
//   struct Counter {
//     static constexpr const char* kName = "counter";  // unique; recorded in replay logs
//     struct Params { std::uint32_t step; };            // trivially copyable, read-only
//     struct State { std::uint64_t value; };            // trivially copyable
//     PKRT_HD static void init(State& s, pkrt::ActorContext& ctx) { s.value = 0; }
//     PKRT_HD static void step(State& s, pkrt::ActorContext& ctx) {
//       if (ctx.leader()) s.value += ctx.params<Params>().step;
//     }
//     PKRT_HD static pkrt::StatusCode on_message(State& s, const pkrt::Message& m,
//                                                pkrt::MessageContext& ctx) {
//       if (m.opcode != kGet) return pkrt::StatusCode::kUnknownOpcode;
//       ctx.reply(s.value);
//       return pkrt::StatusCode::kOk;
//     }
//   };
//
// Required: kName, Params, State, step. Optional: init (default: State zeroed), on_message
// (default: every message is answered with kUnknownOpcode), check_params (host-side
// validation: return nullptr, or a message saying what is wrong and the fix), variable-size named regions
// (kRegionNames + region_bytes), K2K mailboxes (kK2KChannels + k2k_payload_bytes), an
// app-wide region (global_bytes), kStepsWhenIdle = false for event-driven actors (the grid
// then waits for the host instead of spinning through empty epochs), kCudaBlockThreads.
// Params are recorded as bytes (replay logs, checkpoint fingerprints) and compared as bytes
// on restore and replay: give them no padding (an explicit zeroed `reserved` field instead),
// since a padding byte holds whatever the stack held and makes equal params differ.
//
// Contract
// - init and step are called by every thread of the owning block (1 thread on the CPU
//   backend, kCudaBlockThreads on CUDA); use thread_rank()/num_threads() to split work and
//   sync() between phases. on_message is called on the leader thread only.
// - Determinism: step must not depend on thread count or timing. Each epoch, an actor reads
//   K2K messages written in the previous epoch and writes ones read in the next.
// - emit, reply and k2k_commit are leader-only. Float arithmetic that must match across
//   backends uses pkrt::fadd/fmul/fsub (pkrt/config.hpp).
// - State digests and snapshots cover the arena byte for byte, padding included: assign
//   fields rather than whole State structs (a struct copy may carry unspecified padding
//   bytes), or make State padding-free with explicit reserved members. The same holds for
//   the values given to emit() and reply(): their bytes, padding included, are what a replay
//   compares, so give event and reply structs explicit reserved members instead of padding.
// - Host/device: everything here is PKRT_HD. Not thread-safe across blocks by design:
//   an actor touches only its own state, its outboxes and (racy by choice) the global region.
#pragma once

#include <pkrt/config.hpp>
#include <pkrt/detail/block_platform.hpp>
#include <pkrt/detail/kernel_args.hpp>
#include <pkrt/ring.hpp>
#include <pkrt/slot.hpp>
#include <pkrt/status.hpp>

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>

namespace pkrt {

// A host command as delivered to an actor's message handler.
struct Message {
  std::uint16_t opcode;
  std::uint32_t actor;    // global id (ActorContext::actor())
  std::uint64_t request;
  std::uint64_t epoch;  // epoch at which it is being applied
  const std::byte* data;  // kEnvelopeDataBytes bytes

  template <class T>
  PKRT_HD T as() const {
    static_assert(std::is_trivially_copyable_v<T> && sizeof(T) <= kEnvelopeDataBytes,
                  "pkrt: message data must be trivially copyable and at most 32 bytes");
    T value;
    std::memcpy(&value, data, sizeof(T));
    return value;
  }
};

// What one received K2K mailbox slot holds (empty when nothing was sent last epoch).
struct K2KMessage {
  const std::byte* data = nullptr;
  std::uint32_t bytes = 0;
  std::uint32_t src = 0;
  PKRT_HD bool empty() const { return data == nullptr; }
};

namespace detail {

inline constexpr std::uint32_t kMaxBoundaryOps = 32;  // snapshots/restores per block per epoch

// A snapshot or restore the leader accepted this epoch; served by all threads of the block.
struct BoundaryOp {
  std::uint32_t actor;
  std::uint32_t full;     // snapshot: mark every chunk changed
  std::uint64_t request;  // snapshot: request id; restore: the image's epoch
  std::uint32_t slot;     // the staging-pool slot the host assigned
};

// Per-block loop state the contexts reach into. Owned by the persistent loop; the leader's
// copy is the one that counts (other threads' copies hold only args, env and epoch).
struct BlockState {
  const KernelArgs* args;
  BlockEnv env;
  RingProducer k2h;   // leader thread only
  RingConsumer h2k;   // leader thread only
  std::uint64_t epoch;
  bool active;           // this epoch applied a command, sent K2K or emitted (leader)
  std::uint32_t deferred_count;  // commands in this block's deferred list (leader)
  std::uint64_t reported_consumed;  // H2K slots last added to GridScratch::consumed (leader)
  std::uint64_t reported_deferred;  // deferred_count last added to GridScratch::deferred (leader)
  std::uint64_t deferred_min;    // smallest apply epoch among them (leader)
  std::uint32_t snapshots;  // pending snapshot ops this epoch (leader)
  std::uint32_t restores;   // pending restore ops this epoch (leader)
  bool all_pending;         // a snapshot_all is due at the end of this epoch (leader)
  std::uint32_t all_flags;  // SnapshotAllFlags of the pending snapshot_all (leader)
  std::uint64_t all_request;
  std::uint32_t all_wave_first;  // its wave's actors [first, last), in pool slots a - first
  std::uint32_t all_wave_last;
  // Pending kOpAckRange (leader): commands ack_first .. ack_first + ack_count - 1 applied this
  // epoch without a reply. ack_wanted: one of them is a send (someone waits for it);
  // ack_posts_only: one is a post and posts are acknowledged (a replay log records their
  // applied epochs). Neither: the range is dropped instead of published.
  std::uint64_t ack_first;
  std::uint32_t ack_count;
  bool ack_wanted;
  bool ack_posts_only;
  // While the leader applies a run of commands (apply_due_commands), the pump wake-up of an
  // urgent K2H slot (a reply) is deferred and made once per kK2HWakeBatch slots and at the
  // end of the run: each wake-up is a full fence plus a load of a line the host's waiters
  // write, which cost more than applying an echo command. K2H slots are only staged in the
  // meantime (publish_k2h_slot) and published kK2HPublishBatch applications at a time.
  bool defer_wakes;
  std::uint32_t unannounced;  // urgent slots published since the last wake-up (leader)
  // kMaxBoundaryOps each, leader only. Per-block storage outside BlockState (shared memory on
  // a GPU): every GPU thread keeps a BlockState on its stack, and 1 KiB of queues in each
  // made the kernel's stack frame exceed the driver's default.
  BoundaryOp* snapshot_ops;
  BoundaryOp* restore_ops;
};

// Most urgent K2H slots published between two pump wake-ups while a run of commands is
// applied: bounds how long a sleeping pump (callbacks, events) waits for the first reply of a
// large batch to about this many command applications.
inline constexpr std::uint32_t kK2HWakeBatch = 32;

// While a run of commands is applied, the K2H slots it produced are published (one store of
// the ring's `published`) after every kK2HPublishBatch command applications and at the end
// of the run. It bounds how late a spinning waiter sees a reply: by this many further
// command applications, whatever they produce (a reply staged before a long run of posts
// is not held back until the run ends), while the `published` line moves 1/8 as often as
// once per reply.
inline constexpr std::uint32_t kK2HPublishBatch = 8;

// Publishes the K2H slots staged during a run of commands and wakes the host pump for the
// urgent ones, if any. Leader only.
PKRT_HD inline void announce_k2h(BlockState& bs) {
  bs.k2h.publish_staged();
  if (bs.unannounced == 0) return;
  bs.unannounced = 0;
  wake_host_pump(bs.args->control->pump);
}

// Publishes one K2H slot as it is, waiting while the ring is full. Only the host drains K2H,
// so a full ring means the host is slow: wait rather than drop, but give up on abort (and
// wake the pump while waiting). `urgent` = false (a slot nobody waits for: acknowledgements
// of posts only) wakes a sleeping pump only once the ring is half full; the pump's own timed
// passes collect it otherwise, so a stream of posts costs the block no system calls.
// While a run of commands is applied (defer_wakes) the slot is only staged: the ring's
// `published` word, which every host thread draining K2H polls, is stored by the run once
// per kK2HPublishBatch applications, at each wake-up and at its end (announce_k2h), rather
// than once per reply.
PKRT_HD inline bool publish_k2h_slot(BlockState& bs, std::uint16_t opcode, std::uint16_t flags,
                                     std::uint32_t actor, const Envelope& env, bool urgent = true) {
  Backoff backoff(64, bs.args->poll_sleep_cap_ns);
  while (!bs.k2h.try_stage(opcode, flags, actor, env)) {
    // The host frees room only by draining what it can see: publish what is staged first.
    bs.k2h.publish_staged();
    // Acquire: pairs with the host's store_release of abort (stop waiting for a dead pump).
    if (load_acquire(bs.args->control->host.abort) != 0) return false;
    wake_host_pump(bs.args->control->pump);
    backoff.pause();
  }
  bs.active = true;
  if (urgent) {
    ++bs.unannounced;
    if (!bs.defer_wakes || bs.unannounced >= kK2HWakeBatch) announce_k2h(bs);
    return true;
  }
  const bool half_full = bs.k2h.room(bs.k2h.capacity() / 2) <= bs.k2h.capacity() / 2;
  if (!bs.defer_wakes || half_full) bs.k2h.publish_staged();
  if (half_full) wake_host_pump(bs.args->control->pump);
  return true;
}

// Publishes the pending kOpAckRange, if anyone wants it, and clears it. Leader only, at the
// epoch the commands were applied in.
PKRT_HD inline void flush_acks(BlockState& bs) {
  if (bs.ack_count == 0) return;
  if (bs.ack_wanted || bs.ack_posts_only) {
    AckRangeData range{};
    range.first_request = bs.ack_first;
    range.count = bs.ack_count;
    Envelope env{};
    env.epoch = bs.epoch;
    std::memcpy(env.data, &range, sizeof range);
    publish_k2h_slot(bs, kOpAckRange, kFlagNone, kNoActor, env, /*urgent=*/bs.ack_wanted);
  }
  bs.ack_count = 0;
  bs.ack_wanted = false;
  bs.ack_posts_only = false;
}

// Publishes one K2H slot after the pending acknowledgements, so the host sees every command's
// completion in the order the block applied them. Leader only.
PKRT_HD inline bool publish_k2h(BlockState& bs, std::uint16_t opcode, std::uint16_t flags,
                                std::uint32_t actor, const Envelope& env) {
  flush_acks(bs);
  return publish_k2h_slot(bs, opcode, flags, actor, env);
}

// A command applied without a reply: joins the pending kOpAckRange when its request id
// follows the range's last one, else flushes the range and starts a new one. Leader only.
PKRT_HD inline void coalesce_ack(BlockState& bs, const Slot& cmd) {
  const std::uint64_t request = cmd.payload.request;
  const bool post = (cmd.header.flags & kFlagPost) != 0;
  bs.active = true;
  if (bs.ack_count == 0 || request != bs.ack_first + bs.ack_count) {
    flush_acks(bs);
    bs.ack_first = request;
  }
  ++bs.ack_count;
  bs.ack_wanted = bs.ack_wanted || !post;
  bs.ack_posts_only = bs.ack_posts_only || (post && bs.args->ack_posts != 0);
}

PKRT_HD inline Envelope make_envelope(std::uint64_t epoch, std::uint64_t request,
                                      const void* data, std::size_t bytes) {
  Envelope env{};
  env.epoch = epoch;
  env.request = request;
  if (bytes > kEnvelopeDataBytes) bytes = kEnvelopeDataBytes;
  if (bytes > 0) std::memcpy(env.data, data, bytes);
  return env;
}

}  // namespace detail

class ActorContext {
 public:
  // `actor`: the local index (this runtime's arena); the app sees its global id.
  PKRT_HD ActorContext(detail::BlockState& bs, std::uint32_t actor) : bs_(&bs), actor_(actor) {}

  // The actor's global id, 0 .. num_actors() - 1: the same whichever runtime (rank) runs it.
  PKRT_HD std::uint32_t actor() const { return detail::global_actor_id(*bs_->args, actor_); }
  // The program's actor count (all ranks together).
  PKRT_HD std::uint32_t num_actors() const { return bs_->args->global_actors; }
  PKRT_HD std::uint64_t epoch() const { return bs_->epoch; }
  PKRT_HD std::uint32_t block() const { return detail::block_index(bs_->env); }
  PKRT_HD std::uint32_t num_blocks() const { return bs_->args->num_blocks; }

  PKRT_HD std::uint32_t thread_rank() const { return detail::thread_rank(); }
  PKRT_HD std::uint32_t num_threads() const { return detail::threads_per_block(); }
  PKRT_HD bool leader() const { return detail::thread_rank() == 0; }
  // Barrier for the threads of this block. Call from all of them or none.
  PKRT_HD void sync() const { detail::sync_block(); }

  template <class P>
  PKRT_HD const P& params() const {
    return *static_cast<const P*>(bs_->args->params);
  }

  // Named region r of this actor's state (see region_bytes in the actor definition).
  template <class T>
  PKRT_HD T* region(std::uint32_t r) const {
    return reinterpret_cast<T*>(arena() + bs_->args->region_offset[r]);
  }
  PKRT_HD std::uint64_t region_bytes(std::uint32_t r) const { return bs_->args->region_bytes[r]; }

  // The app-wide region (global_bytes). Shared by every actor of every block: any access
  // that is not partitioned by actor makes the app schedule-dependent.
  template <class T>
  PKRT_HD T* global() const {
    return reinterpret_cast<T*>(bs_->args->global);
  }

  // K2K: the outbox to global actor `dst` on `channel` for this epoch, or nullptr when dst or
  // channel is out of range. Any thread may fill it; the leader then calls k2k_commit. dst
  // reads it in epoch() + k2k_delay() (wherever it runs), on that channel; two commits to one
  // (dst, channel) in one epoch leave the last one, so give each sender its own channel.
  PKRT_HD std::byte* k2k_outbox(std::uint32_t dst, std::uint32_t channel) const {
    if (dst >= num_actors() || channel >= bs_->args->k2k_channels) return nullptr;
    return k2k_slot(bs_->epoch, dst, channel) + detail::kK2KHeaderBytes;
  }
  PKRT_HD std::uint64_t k2k_capacity() const { return bs_->args->k2k_payload_bytes; }
  // D: epochs between a K2K commit and its read (RuntimeOptions::k2k_delay; 1 by default).
  PKRT_HD std::uint32_t k2k_delay() const { return bs_->args->k2k_delay; }

  // Leader only, after the block synced past the outbox writes: marks the outbox written.
  PKRT_HD bool k2k_commit(std::uint32_t dst, std::uint32_t channel, std::uint32_t bytes) const {
    if (dst >= num_actors() || channel >= bs_->args->k2k_channels ||
        bytes > bs_->args->k2k_payload_bytes)
      return false;
    auto* header = reinterpret_cast<detail::K2KSlotHeader*>(k2k_slot(bs_->epoch, dst, channel));
    // Plain stores: the receiver reads them only after the epoch barrier (or, in another
    // runtime, the host's exchange after this block's heartbeat release), which orders them.
    header->src = actor();
    header->bytes = bytes;
    header->epoch = bs_->epoch;
    bs_->active = true;
    return true;
  }

  // K2K: what was committed to this actor on `channel` in epoch epoch() - k2k_delay().
  PKRT_HD K2KMessage k2k_inbox(std::uint32_t channel) const {
    K2KMessage msg;
    const std::uint64_t delay = bs_->args->k2k_delay;
    if (channel >= bs_->args->k2k_channels || bs_->epoch < delay) return msg;
    const std::uint64_t sent = bs_->epoch - delay;
    const std::byte* slot = k2k_slot(sent, actor(), channel);
    const auto* header = reinterpret_cast<const detail::K2KSlotHeader*>(slot);
    if (header->epoch != sent) return msg;  // stale: nothing was sent then
    msg.data = slot + detail::kK2KHeaderBytes;
    msg.bytes = header->bytes;
    msg.src = header->src;
    return msg;
  }

  // Leader only: an unsolicited K2H event (statistics, digests). Up to 32 bytes of data.
  // Returns false only when the runtime is aborting.
  PKRT_HD bool emit(std::uint16_t opcode, const void* data, std::size_t bytes) const {
    return detail::publish_k2h(*bs_, opcode, kFlagNone, actor_,
                               detail::make_envelope(bs_->epoch, 0, data, bytes));
  }
  template <class T>
  PKRT_HD bool emit(std::uint16_t opcode, const T& value) const {
    static_assert(std::is_trivially_copyable_v<T> && sizeof(T) <= kEnvelopeDataBytes,
                  "pkrt: event data must be trivially copyable and at most 32 bytes");
    return emit(opcode, &value, sizeof(T));
  }

  // Any thread: whether the host is aborting (watchdog, fatal error). A step that can run
  // for long should check it and return early.
  PKRT_HD bool abort_requested() const {
    // Acquire: pairs with the host's store_release of abort.
    return detail::load_acquire(bs_->args->control->host.abort) != 0;
  }

 protected:
  PKRT_HD std::byte* arena() const {
    return bs_->args->state + bs_->args->state_stride * actor_;
  }
  // The slot of global actor `row` on `channel` in the buffer that epoch `epoch` writes.
  PKRT_HD std::byte* k2k_slot(std::uint64_t epoch, std::uint32_t row, std::uint32_t channel) const {
    const detail::KernelArgs& a = *bs_->args;
    return detail::k2k_mailbox(a, detail::k2k_buffer_of(a, epoch), row) + channel * a.k2k_slot_stride;
  }
  detail::BlockState* bs_;
  std::uint32_t actor_;
};

// The context of a message handler: an ActorContext that can also reply.
class MessageContext : public ActorContext {
 public:
  // `actor`: the local index of msg.actor (msg carries the global id the app sees).
  PKRT_HD MessageContext(detail::BlockState& bs, const Message& msg, std::uint32_t actor, bool posted = false)
      : ActorContext(bs, actor), opcode_(msg.opcode), request_(msg.request), posted_(posted) {}

  // Completes the host's future for this command with up to 32 bytes. At most once; a
  // handler that does not reply gets an automatic acknowledgement. A posted command
  // (Runtime::post) has nobody to reply to: its reply is dropped, and it is acknowledged like
  // a command without one (in a kOpAckRange, when the runtime wants posts acknowledged).
  PKRT_HD bool reply(const void* data, std::size_t bytes) {
    if (posted_) return true;
    replied_ = true;
    return detail::publish_k2h(*bs_, opcode_, kFlagReply, actor_,
                               detail::make_envelope(bs_->epoch, request_, data, bytes));
  }
  template <class T>
  PKRT_HD bool reply(const T& value) {
    static_assert(std::is_trivially_copyable_v<T> && sizeof(T) <= kEnvelopeDataBytes,
                  "pkrt: reply data must be trivially copyable and at most 32 bytes");
    return reply(&value, sizeof(T));
  }
  PKRT_HD bool replied() const { return replied_; }

 private:
  std::uint16_t opcode_;
  std::uint64_t request_;
  bool posted_;
  bool replied_ = false;
};

// ---- Compile-time checks of an actor definition ------------------------------------------

template <class App>
concept ActorHasInit = requires(typename App::State& s, ActorContext& c) { App::init(s, c); };

template <class App>
concept ActorHasMessageHandler =
    requires(typename App::State& s, const Message& m, MessageContext& c) {
      { App::on_message(s, m, c) } -> std::same_as<StatusCode>;
    };

template <class App>
concept ActorHasRegions = requires(const typename App::Params& p) {
  { App::kRegionNames[0] } -> std::convertible_to<const char*>;
  { App::region_bytes(p, std::uint32_t{}, std::uint32_t{}, std::uint32_t{}) } ->
      std::convertible_to<std::uint64_t>;
};

template <class App>
concept ActorHasK2K = requires(const typename App::Params& p) {
  { App::kK2KChannels } -> std::convertible_to<std::uint32_t>;
  { App::k2k_payload_bytes(p) } -> std::convertible_to<std::uint64_t>;
};

template <class App>
concept ActorHasGlobal = requires(const typename App::Params& p) {
  { App::global_bytes(p) } -> std::convertible_to<std::uint64_t>;
};

template <class App>
concept ActorHasParamCheck = requires(const typename App::Params& p) {
  { App::check_params(p, std::uint32_t{}) } -> std::convertible_to<const char*>;
};

template <class App>
consteval bool check_actor_definition() {
  static_assert(requires { { App::kName } -> std::convertible_to<const char*>; },
                "pkrt: an actor needs `static constexpr const char* kName = \"...\";` "
                "(a unique name; replay logs record it)");
  static_assert(requires { typename App::State; },
                "pkrt: an actor needs a nested `struct State` holding its fixed-size state");
  static_assert(requires { typename App::Params; },
                "pkrt: an actor needs a nested `struct Params` (use `struct Params {};` for none)");
  static_assert(std::is_trivially_copyable_v<typename App::State>,
                "pkrt: actor State must be trivially copyable (it is copied to snapshots and "
                "between backends): replace std::vector/pointers with named regions "
                "(kRegionNames + region_bytes)");
  static_assert(std::is_trivially_copyable_v<typename App::Params>,
                "pkrt: actor Params must be trivially copyable (they are copied to the device "
                "and into replay logs)");
  static_assert(requires(typename App::State& s, ActorContext& c) { App::step(s, c); },
                "pkrt: an actor needs `PKRT_HD static void step(State&, pkrt::ActorContext&)`");
  static_assert(!requires { App::on_message; } || ActorHasMessageHandler<App>,
                "pkrt: on_message must have the signature `PKRT_HD static pkrt::StatusCode "
                "on_message(State&, const pkrt::Message&, pkrt::MessageContext&)`");
  static_assert(!requires { App::kRegionNames; } || ActorHasRegions<App>,
                "pkrt: an actor with kRegionNames also needs `static std::uint64_t "
                "region_bytes(const Params&, std::uint32_t region, std::uint32_t actor, "
                "std::uint32_t num_actors)`");
  static_assert(!requires { App::kK2KChannels; } || ActorHasK2K<App>,
                "pkrt: an actor with kK2KChannels also needs `static std::uint64_t "
                "k2k_payload_bytes(const Params&)`");
  return true;
}

template <class App>
PKRT_HD constexpr std::uint32_t actor_region_count() {
  if constexpr (ActorHasRegions<App>) {
    constexpr std::uint32_t n = sizeof(App::kRegionNames) / sizeof(App::kRegionNames[0]);
    static_assert(n <= detail::kMaxRegions, "pkrt: at most 8 named regions per actor");
    return n;
  } else {
    return 0;
  }
}

template <class App>
PKRT_HD constexpr bool actor_steps_when_idle() {
  if constexpr (requires { { App::kStepsWhenIdle } -> std::convertible_to<bool>; }) {
    return App::kStepsWhenIdle;
  } else {
    return true;
  }
}

}  // namespace pkrt
