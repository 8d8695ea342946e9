// host/runtime_impl.hpp: Runtime::Impl, the runtime's state, shared by the files that each
// own one responsibility:
//   host/runtime_setup.cpp            create: options, backend, memory layout, KernelArgs
//   host/runtime.cpp                  start, shutdown, region reads, accessors
//   host/runtime_control.cpp          host control (target epoch, pause/resume, parks), doorbell
//   host/send_path.cpp                send/post/batches: H2K lanes, request records, completions,
//                                     draining for waiting threads
//   host/pump.cpp                     the pump thread: K2H passes, horizon, reports, watchdog,
//                                     poll policy
//   host/snapshot_orchestration.cpp   snapshots (copy, verify, release), restores
//   host/k2k_exchange.cpp             scale-out: K2K to and from other shards, the epoch gate
//
// Shared words and who writes them (see pkrt/control.hpp and pkrt/ring.hpp):
//   HostControl words     control changes under control_mu (runtime_control.cpp); published and
//                         doorbell by any sender (host RMW, device loads only)
//   H2K producer b        h2k[b].producer, under h2k[b].mutex (any host thread)
//   K2H consumer b        k2h[b].consumer, under k2h[b]'s try-lock (the pump, or a waiting
//                         thread draining its own block)
//   GridReport, BlockHeartbeat, device-side ring indices: read only.
#pragma once

#include <pkrt/runtime.hpp>

#include "host/backend.hpp"
#include "host/request_table.hpp"

#include <pkrt/detail/block_platform.hpp>
#include <pkrt/detail/system_atomic.hpp>
#include <pkrt/replay_log.hpp>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>

namespace pkrt {

enum class RuntimePhase { kCreated, kRunning, kStopped };

// What one poll policy means for each poller (pkrt::PollPolicy; docs/performance.md).
struct PollSettings {
  PollPolicy policy = PollPolicy::kBalanced;
  std::uint32_t pump_spins = 256;          // empty passes spent spinning before yielding
  std::uint32_t pump_yields = 64;          // then yielding before sleeping
  bool pump_spins_while_outstanding = false;
  std::chrono::microseconds pump_sleep_cap{50};   // CUDA: longest sleep, nothing outstanding
  std::chrono::microseconds pump_sleep_cap_outstanding{16};  // CUDA: ... something outstanding
  std::chrono::nanoseconds waiter_spin{20000};    // a waiting thread spins (draining) this long
  std::uint32_t block_idle_spin = 256;     // CPU block 0: polls (the first 64 pause, then yield) before a futex
  std::uint32_t device_sleep_cap_ns = detail::kDevicePollCapBalancedNs;
};

PollSettings poll_settings(PollPolicy policy, BackendKind backend);

struct Runtime::Impl final : detail::ReplyDrainer {
  ~Impl() override;

  // ---- configuration (create) ------------------------------------------------------------
  const Program* program = nullptr;
  BackendKind backend_kind = BackendKind::kCpu;
  std::vector<std::byte> params;
  RuntimeOptions options;
  PollSettings poll;
  ProgramLayout layout;
  std::unique_ptr<host::Backend> backend;
  host::LaunchPlan plan;
  std::string description;
  host::Buffer control_buf, heartbeat_buf, h2k_buf, k2h_buf, state_buf, k2k_buf, global_buf,
      grid_buf, params_buf, staging_buf, prev_crc_buf, actor_flag_buf, deferred_buf, global_staging_buf, queued_buf,
      queued_flag_buf;
  ImageLayout image;
  ControlBlock* control = nullptr;       // host pointer
  BlockHeartbeat* heartbeats = nullptr;  // host pointer
  std::uint64_t ring_stride = 0;
  std::uint64_t state_stride = 0;
  detail::KernelArgs args{};
  // Scale-out: the global id of each local actor (empty: ids equal), on the host.
  std::vector<std::uint32_t> global_ids;
  host::Buffer global_id_buf;
  std::uint32_t global_id(std::uint32_t actor) const { return global_ids.empty() ? actor : global_ids[actor]; }
  // A shard with K2K delay > 1 cannot snapshot or restore one actor while the grid runs: its
  // cut would miss (or its restore race) messages other shards are still delivering.
  Status shard_single_actor_refusal(const char* call) const {
    return Status(StatusCode::kUnsupported,
                  std::string(call) + " on a shard of a multi-rank run with K2K delay " + std::to_string(args.k2k_delay) +
                      ": messages from other ranks are still being delivered into the epochs it would cut. Fix: "
                      "snapshot_all (it waits for the exchange), or K2K delay 1");
  }
  // K2K exchange with other shards (k2k_exchange.cpp), on the caller's thread.
  std::mutex exchange_mu;
  std::uint64_t next_delivery = 0;        // guarded by exchange_mu: the epoch deliver_inbound_k2k takes next
  std::vector<std::byte> exchange_scratch;  // guarded by exchange_mu
  // Device address of global actor `row`'s K2K mailbox in `buffer`.
  std::byte* k2k_mailbox_device(std::uint32_t buffer, std::uint32_t row) const {
    return static_cast<std::byte*>(k2k_buf.device()) +
           (std::uint64_t{buffer} * args.global_actors + row) * args.k2k_channels * args.k2k_slot_stride;
  }

  // ---- lifecycle and shared state (runtime.cpp) ------------------------------------------
  RuntimePhase phase = RuntimePhase::kCreated;  // written under mu; start/shutdown do not race
  std::thread pump;
  std::atomic<bool> pump_stop{false};
  mutable std::mutex mu;  // guards the fields below that say so
  std::condition_variable cv;
  Status sticky;                        // guarded by mu
  EventCallback on_event;               // guarded by mu
  ErrorCallback on_error;               // guarded by mu
  bool parked = false;                  // guarded by mu: last park report not yet followed by kOpResumed
  std::uint64_t parked_epoch = 0;       // guarded by mu
  std::uint32_t parked_generation = 0;  // guarded by mu: control generation the last kOpPaused answered
  bool pause_requested = false;         // guarded by mu: host copy of HostControl::pause
  bool stopped_event = false;           // guarded by mu
  bool kernel_done = false;             // guarded by mu
  bool leaked = false;                  // guarded by mu

  // A fatal error: sticky, stops admission, fails every pending request, error callback.
  void record_error(const Status& st);
  void report_error(const Status& st);  // error callback only (not sticky)
  bool parked_now() const { return parked && parked_generation == generation; }  // mu held

  // ---- host control (runtime_control.cpp) ------------------------------------------------
  std::mutex control_mu;         // serialises control changes so the generation only grows
  std::uint32_t generation = 0;  // guarded by control_mu and mu (written with both held)
  // After publishing `published` H2K slots (any thread, no lock; 0 for a control change):
  // bumps the doorbell, and wakes block 0 (CPU) or the pump (CUDA) only if asleep.
  void ring_doorbell(std::uint64_t published);
  template <class T>
  void set_control(T HostControl::*field, T value);
  template <class Fn>
  void update_control(Fn&& store);
  void abort_kernel();
  // Wakes the pump if it sleeps (host threads only; see PumpDoorbell).
  void wake_pump();

  // ---- send path (send_path.cpp) ---------------------------------------------------------
  struct alignas(64) H2KLane {
    std::mutex mutex;              // the ring's one producer at a time
    RingProducer producer;         // guarded by mutex
    std::uint64_t next_seq = 0;    // guarded by mutex: last command sequence number issued
  };
  std::unique_ptr<H2KLane[]> h2k;
  detail::RequestTable* requests = nullptr;  // one reference held by this runtime
  // Admission: read under a lane's mutex by senders; cleared (then every lane mutex taken
  // once) by close_admission, so that no sender is between its check and its publish when
  // the pending requests are failed.
  std::atomic<bool> admitting{true};
  // Set when start() begins: until then nothing drains the H2K rings, so a sender finding its
  // ring full fails at once instead of waiting out ring_full_timeout.
  std::atomic<bool> start_begun{false};
  Status refusal;  // guarded by mu: why admission closed
  void close_admission(const Status& why);

  // The next command sequence number of a lane (its mutex held); never 0 in the id's bits.
  static std::uint64_t next_command_seq(H2KLane& lane);
  // Opcodes below kUserOpcodeBase other than kOpPing are refused unless `runtime_opcode`
  // (the runtime's own commands that want a reply: restore_actor).
  ReplyFuture send_one(std::uint32_t actor, std::uint16_t opcode, const void* data, std::size_t bytes,
                       std::uint64_t apply_epoch, ReplyCallback* callback, bool runtime_opcode = false);
  Status post_one(std::uint32_t actor, std::uint16_t opcode, const void* data, std::size_t bytes,
                  std::uint64_t apply_epoch);
  // Sends (replies != nullptr, one future each) or posts a batch.
  Status publish_batch(std::span<const Command> commands, ReplyFuture* replies);
  // Runtime-internal commands (snapshot requests, staging releases): no request record.
  // wait = false: kRingFull at once when the ring has no room (the pump must not block).
  Status publish_internal(std::uint32_t block, std::uint16_t opcode, std::uint32_t actor,
                          const Envelope& env, bool wait);
  // Takes a lane's mutex. On the pump thread (a callback that sends) it drains K2H while it
  // waits (pump_drain_without_handling): the holder may be waiting for room only that makes.
  std::unique_lock<std::mutex> lock_lane(H2KLane& lane);
  // Publishes slots[0..n) into lane b (mutex held, room checked), logging and counting them
  // (HostControl::published) first; the caller rings the doorbell after.
  void publish_locked(std::uint32_t b, Slot* slots, std::uint32_t n);
  // Waits (lane mutex held) until lane b has room for `wanted` slots, or fails: ring full
  // after ring_full_timeout, admission closed, kernel stopped. `unannounced` slots already
  // published are announced (doorbell) before the first wait. On the pump thread it drains
  // K2H while it waits (pump_drain_without_handling).
  Status wait_for_room(std::uint32_t b, std::uint32_t wanted, std::uint32_t actor,
                       std::uint64_t& unannounced, std::uint32_t& room);
  Status refusal_status() const;
  // kFailedPrecondition naming `call` on the pump thread (a callback), where a call that waits
  // for the pump would wait for itself; ok elsewhere.
  Status refused_on_pump_thread(const char* call) const;
  std::uint32_t block_of(std::uint32_t actor) const;

  // ---- K2H lanes: the pump and draining waiters (send_path.cpp, pump.cpp) -----------------
  struct alignas(64) K2HLane {
    std::atomic<bool> busy{false};  // try-lock: whoever holds it is the ring's consumer
    RingConsumer consumer;          // guarded by busy
    bool try_lock() {
      // Relaxed then acquire: skip the RMW while someone else holds it; the acquire pairs
      // with unlock's release (the previous holder's use of the consumer).
      return !busy.load(std::memory_order_relaxed) && !busy.exchange(true, std::memory_order_acquire);
    }
    void unlock() { busy.store(false, std::memory_order_release); }  // Release: see try_lock.
  };
  std::unique_ptr<K2HLane[]> k2h;
  // Without the lock: whether ring b may hold an unconsumed slot (the slot after the last
  // committed head is published). False means every slot published before the caller's
  // acquire of a heartbeat has been consumed, logged and handed back.
  bool k2h_maybe_ready(std::uint32_t b) const;
  // Whether a waiting thread may consume this slot itself (future replies, acks).
  bool waiter_may_consume(const Slot& slot) const;
  // Completes the command(s) a reply, error or kOpAckRange answers. Runs callbacks: only the
  // pump calls it with slots a waiter may not consume. Returns the replies the slot carried
  // (the caller adds them to the `replies` statistic).
  std::uint64_t complete_commands(const Slot& slot, std::uint32_t block);
  Status error_status(const Event& ev) const;
  // ReplyDrainer
  bool drain_for_waiter(std::uint32_t block) override;
  void drainer_arrives() override;
  void drainer_leaves() override;
  bool pump_step() override;

  // ---- pump (pump.cpp) ---------------------------------------------------------------------
  std::vector<ReplayRecord> pass_records;  // pump thread: one pass's K2H slots
  std::size_t pass_next = 0;               // pump thread: first of them not yet handled
  std::vector<std::uint32_t> pass_locked;  // pump thread: lanes locked in this pass
  // Pump thread: the watchdog's state (see watchdog_tick), also driven from pump_step.
  std::chrono::steady_clock::time_point last_check{}, last_progress{};
  std::uint64_t last_sum = ~0ull;
  bool fault_reported = false;
  bool exit_reported = false;  // report_unrequested_exit ran (pump thread only)
  bool stop_failed_waits = false;  // pump_step failed the requests at shutdown (pump thread only)
  bool grid_started = false;   // every block reported past kGridStarting (or that was reported)
  std::chrono::steady_clock::time_point launched_at{};
  // Park/resume/stop reports of the current pass, applied once every ring is drained.
  std::vector<Event> deferred_reports;     // pump thread
  struct PassResult {
    bool any = false;         // consumed something
    bool all_drained = true;  // every ring is empty or was drained (none held by a waiter)
  };
  PassResult pump_pass();
  // Consumes what the K2H rings hold (up to kPumpDrainPerRing each, rings a waiting thread
  // holds skipped) into pass_records after what is there, their lanes locked and listed in
  // pass_locked. Returns whether every ring was empty or drained.
  bool consume_into_pass(std::uint64_t observed);
  // Logs pass_records[first..] as one batch, then hands the locked lanes' slots back and
  // unlocks them: a slot is in the log before its ring can reuse it.
  void log_and_hand_back(std::size_t first);
  // Pump thread, while a callback waits to send (for a lane's mutex or for room in an H2K
  // ring): consumes K2H into pass_records without handling it, so blocks waiting for K2H
  // room go on consuming H2K. The records are handled, in order, once the callback returns
  // to the pass that called it. No callback runs in here (a send waiting inside a callback
  // may hold a lane's mutex). Returns whether it consumed anything.
  bool pump_drain_without_handling();
  void pump_loop();
  void handle(const Slot& slot, std::uint32_t block);
  void apply_reports();
  void sleep_until_k2h(std::chrono::microseconds timeout);
  std::uint64_t acquire_min_heartbeat() const;
  std::pair<std::uint64_t, std::uint64_t> heartbeat_range() const;
  std::string stalled_blocks(std::uint64_t lo) const;
  void advance_horizon(std::uint64_t horizon);
  // Every 5 ms (at most): device faults, and heartbeats against the watchdog timeout.
  void watchdog_tick(bool finished);
  // Until every block has started: after watchdog_timeout from the launch, reports the
  // blocks that never did (a grid that is not resident) and aborts.
  void check_grid_start(std::chrono::steady_clock::time_point now);
  // Once, when the kernel ended and was drained: unless shutdown or an abort asked for it,
  // records the device fault (or says the kernel exited unasked) so nothing waits for ever.
  void report_unrequested_exit();
  // Handles pass_records from pass_next on (a callback waiting on the pump thread may handle
  // some of them itself, through pump_step); the next one alone (false: none left).
  void handle_pass();
  bool handle_next_pass_record();

  // ---- snapshots (snapshot_orchestration.cpp) --------------------------------------------
  // Per actor (and, last, the global region when it has a staging slot): the last snapshot
  // image on the host (pump thread). Handed to the sink without a copy; while a handed-out
  // image is alive (`lent`), the next snapshot copies it first.
  struct MirrorImage {
    std::vector<std::byte> bytes;
    std::atomic<bool> lent{false};
  };
  std::vector<std::shared_ptr<MirrorImage>> mirror;
  std::mutex sink_mu;  // held while the snapshot sink runs: replacing it waits for the call
  SnapshotSink on_snapshot;                     // guarded by sink_mu
  struct PendingRelease {
    std::uint32_t block;  // whose ring takes the release
    std::uint32_t actor;  // an actor, kGlobalRegionActor or kQueuedCommandsActor (that block's area)
  };
  std::vector<PendingRelease> pending_releases;  // pump thread: areas to release (global, queued)
  std::size_t pending_release_count = 0;        // guarded by mu: pending_releases.size()
  std::uint32_t restores_in_flight = 0;         // guarded by mu: live restores not yet applied
  std::uint64_t next_snapshot = 1;              // guarded by mu: snapshot request counter
  struct SnapshotRequest {
    std::chrono::steady_clock::time_point requested;
    std::uint32_t outstanding = 0;  // images (or errors) that have not arrived
    std::uint32_t actor = kNoActor;  // snapshot_actor: its actor; snapshot_all: kNoActor
    std::uint32_t slot = 0;          // snapshot_actor: the staging-pool slot it holds
    std::vector<bool> arrived;  // snapshot_all: per image index (image_index), its image (or error) arrived
    bool with_global = false;  // snapshot_all asked for the global region's image
    bool with_queued = false;  // and for the queued commands (kWholeRun)
    // kWholeRun: the blocks' queued commands gathered so far, and the blocks still to report.
    std::vector<Command> queued;
    std::uint32_t queued_blocks_left = 0;
    Status queued_status;
  };
  // Index of an image in SnapshotRequest::arrived: actors, then the global region, then the
  // queued commands.
  std::size_t image_index(std::uint32_t actor) const {
    if (actor == kGlobalRegionActor) return options.num_actors;
    if (actor == kQueuedCommandsActor) return std::size_t{options.num_actors} + 1;
    return actor;
  }
  // Where an actor's (or kGlobalRegionActor's) snapshot lives: its staging slot on the
  // device and its image's size, and its index in `mirror` and SnapshotRequest::arrived.
  struct SnapshotSlot {
    const std::byte* slot;
    std::uint64_t image_bytes;
    std::uint32_t chunks;
    std::uint64_t crc_offset;
    std::uint64_t changed_offset;
    std::size_t index;
  };
  // `pool_slot`: the staging-pool slot holding an actor's image (ignored for the region).
  SnapshotSlot snapshot_slot(std::uint32_t actor, std::uint32_t pool_slot) const;

  // The staging pool (args.staging_slots slots; kernels/snapshot.hpp). The host is its only
  // allocator: a slot goes back to `free` once its image is copied (or its restore applied),
  // and a snapshot_all takes the whole pool, all of it free, for its waves.
  struct StagingPool {
    std::vector<std::uint32_t> free;  // slots no request holds
    std::uint64_t all_request = 0;    // the snapshot_all holding the pool (0: none)
    bool hold = false;                // it is served in waves (kSnapshotAllHold)
    std::uint32_t wave_first = 0;     // its current wave: actors [wave_first, wave_last)
    std::uint32_t wave_last = 0;
    std::uint32_t wave_left = 0;      // actor images of the wave not yet copied
    std::uint32_t wave = 0;           // HostControl::snapshot_wave of the current wave
    // A snapshot_all withdrawn (cancel_snapshot) whose first wave the grid may still serve:
    // the pool stays its until block 0 has acted on `withdrawn_generation` without having
    // latched it, or until the wave's images arrived.
    std::uint64_t withdrawn = 0;
    std::uint32_t withdrawn_generation = 0;
    std::uint32_t withdrawn_left = 0;
    std::uint64_t resets = 0;  // reset_pool_locked calls: a slot taken before one is not given back
  };
  StagingPool pool;  // guarded by mu
  // Why the pool cannot take a request now (mu held), or ok: `whole`: a snapshot_all, which
  // needs every slot; else one slot for `what`.
  Status pool_refusal(bool whole, const char* what) const;
  // mu held: one free slot for `what` (a single-actor snapshot or a live restore), or why not.
  Result<std::uint32_t> take_pool_slot_locked(const char* what);
  // Pump thread: one actor image of the snapshot_all holding the pool was copied; posts the
  // next wave, or withdraws the finished request from the control block (the hold with it)
  // and frees the pool after the last. Also the withdrawn one's. Counts as watchdog progress:
  // a held grid does not advance its heartbeats.
  void pool_image_copied(std::uint64_t request);
  // Live restores whose reply came: their slot is free once the grid completed the epoch
  // they applied at (the block copies the slot in that epoch's step, after the reply).
  struct RestoringSlot {
    std::uint32_t slot;
    std::uint64_t epoch;
  };
  std::vector<RestoringSlot> restoring;  // guarded by mu
  // Pump thread, every loop while pool_housekeeping_due: frees the pool of a withdrawn
  // request the grid will never serve, and the slots of restores the grid has applied.
  std::atomic<bool> pool_housekeeping_due{false};
  void pool_housekeeping();
  // mu held: frees the pool of a withdrawn request if block 0 has acted on the withdrawal
  // without latching it (or cannot serve it any more). True when no withdrawn request holds it.
  bool reclaim_withdrawn_locked();
  // mu held (released while waiting): waits, bounded by ring_full_timeout, until no withdrawn
  // request holds the pool.
  void wait_for_withdrawn_pool(std::unique_lock<std::mutex>& lock);
  // mu held: every slot free, no snapshot_all holding the pool.
  void reset_pool_locked();
  bool has_global_snapshots() const { return args.global_staging != nullptr; }
  std::unordered_map<std::uint64_t, SnapshotRequest> snapshot_requests;  // guarded by mu
  // Requests fail_open_snapshots already answered: a late image of one (the device served it
  // after the failure) is dropped, so the sink never sees two results for one actor.
  std::unordered_set<std::uint64_t> failed_snapshot_requests;  // guarded by mu
  // Images for the sink produced while this thread was already inside it (a sink that waits
  // on a reply runs the pump's work, which may fail snapshots): the outer call delivers them.
  std::vector<SnapshotImage> sink_backlog;  // guarded by mu
  void call_sink(std::vector<SnapshotImage> images);
  void handle_snapshot(const Event& ev);
  void handle_snapshot_refusal(const Event& ev);
  // A block's kOpQueuedCommands (or its refusal, `refused`): gathers the block's commands
  // into the request; the last block's delivers the kQueuedCommandsActor image.
  void handle_queued_commands(const Event& ev, const Status& refused);
  // Delivers a failed image (status `why`) for every actor of every open snapshot request,
  // then forgets them: after a fatal error or at shutdown none of them will be served, and a
  // sink counting images (CheckpointManager::wait_served) must not wait for them.
  void fail_open_snapshots(const Status& why);
  void retry_releases();
  Status copy_snapshot(std::uint32_t actor, const SnapshotReadyData& ready, SnapshotImage& img);
  // `crcs`: the device's chunk CRCs of this snapshot.
  bool mirror_matches_device(const SnapshotSlot& s, const std::vector<std::byte>& m,
                             const std::vector<std::uint32_t>& crcs, const std::vector<std::uint32_t>& copied,
                             bool whole, std::uint32_t image_crc);
  void deliver_snapshot(SnapshotImage img);

  // ---- replay log ------------------------------------------------------------------------
  // `complete_epoch` is the pump's horizon: every K2H slot of epochs up to it has been
  // consumed and logged. Written by the pump, read by senders and drainers for their
  // records' epoch_observed; relaxed both ways, it is a label and orders nothing.
  std::shared_ptr<ReplayLogWriter> log;
  std::atomic<std::uint64_t> complete_epoch{0};
  // Commands sent before start() are held here until start() has written the run's
  // metadata (restore_before_start may still change its start epoch), then logged in the
  // order they were sent.
  std::mutex log_mu;
  std::atomic<bool> log_begun{false};        // set under log_mu
  std::vector<ReplayRecord> prestart_h2k;    // guarded by log_mu
  // Logs H2K slots about to be published to lane b (its mutex held); `slots[i].header.seq`
  // is set to the ring position + 1 they will take.
  void log_h2k(std::uint32_t b, const Slot* slots, std::uint32_t n);

  // ---- statistics: every access is relaxed; they order nothing and are only reported ------
  std::atomic<std::uint64_t> commands_sent{0}, events_received{0}, replies{0}, errors{0}, posts{0};
};

template <class T>
void Runtime::Impl::set_control(T HostControl::*field, T value) {
  update_control([&] {
    // Release: pairs with block 0's acquire loads in ControlView::refresh.
    detail::store_release(control->host.*field, value);
  });
}

template <class Fn>
void Runtime::Impl::update_control(Fn&& store) {
  std::lock_guard<std::mutex> lock(control_mu);
  store();
  std::uint32_t g;
  {
    std::lock_guard<std::mutex> state_lock(mu);
    g = ++generation;
  }
  // Release: block 0 that acquires this generation sees the words stored above.
  detail::store_release(control->host.generation, g);
  ring_doorbell(0);
}

Event to_event(const Slot& slot, std::uint32_t block);
void fill_event(Event& ev, const Slot& slot, std::uint32_t block);  // every field, in place
std::string hex_opcode(std::uint16_t op);

// Fills the header of a replay record whose slot half is already in place (seq, time_ns and crc
// are the writer's). Only the 64-byte header is cleared and written: the records are built in
// place, where they will be logged, because a slot built in a temporary and then copied
// stalls the copy's wide loads on the temporary's narrow stores (store forwarding fails),
// which measured as the largest single cost of a waiter's drain.
inline void fill_replay_header(ReplayRecord& r, ReplayDirection direction, std::uint32_t block,
                               std::uint64_t epoch_observed) {
  std::memset(static_cast<void*>(&r), 0, offsetof(ReplayRecord, slot));
  r.direction = static_cast<std::uint8_t>(direction);
  r.block = block;
  r.epoch_observed = epoch_observed;
  r.epoch_applied = r.slot.payload.epoch;
}

}  // namespace pkrt
