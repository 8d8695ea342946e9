// pkrt/runtime.hpp: Runtime, the host side of a persistent-actor program.
//
// A Runtime owns one launch of one Program: the control block, one H2K and one K2H ring per
// block, the actors' state, K2K mailboxes, the backend (CPU worker threads or a cooperative
// CUDA kernel) and the host pump thread.
//
// Lifecycle: create() -> start() -> { send(), run_until(), pause()/resume() }* -> shutdown().
// To make commands apply at exact epochs from the first one on, set the target epoch and
// send before start(): commands queue in the H2K rings and the grid never overshoots.
// The destructor shuts down if needed and never leaves a thread behind (a block stuck in
// user code past the abort timeout is reported, and its memory is kept alive rather than
// freed under it).
//
// Thread safety
// - send(), post(), send_batch(), post_batch(), pause(), resume(), set_target_epoch(),
//   wait_parked(), read_region(), stats(), epoch(), health() may be called from any thread
//   concurrently (read_region blocks control changes while it copies). start(), run_until()
//   and shutdown() must not race with each other.
// - Reply callbacks and the event/error callbacks run on the pump thread: keep them short.
//   shutdown(), run_until() and wait_parked() wait for what only the pump does, so called
//   from a callback they are refused (kFailedPrecondition) and change nothing; destroying
//   the Runtime there aborts the process with a message (nothing could stop it safely).
//   Callbacks may send and post (a send that waits for ring room drains the answers
//   meanwhile, so the blocks keep consuming; it still fails after ring_full_timeout), and
//   wait on a future: a get() there
//   does the pump's own work until its reply is in (so it cannot deadlock), but meanwhile
//   no other callback, event or watchdog check runs beyond what that work does: do not wait
//   there for replies due far in the future. They must not throw: an exception escaping
//   one (or the snapshot sink) ends the process through std::terminate, as one escaping a
//   std::thread does; catch inside the callback what it may throw.
// - Opcodes: an application sends its own (>= kUserOpcodeBase) and kOpPing; the runtime's
//   other opcodes drive its protocols and every send and post path refuses them
//   (kInvalidArgument, nothing sent).
//
// Messaging fast path (docs/architecture.md, "Messaging"): a send takes one record from a
// lock-free pool, the H2K ring's own lock (one per block, not global), and bumps the
// doorbell with two host atomics; a system call only when block 0 sleeps. Batches share one
// ring reservation, one publish and one doorbell; posts need no record and, unless a replay
// log records them, no acknowledgement. Commands applied without a reply are acknowledged
// in runs (kOpAckRange). A thread waiting on a reply completes it itself (ReplyFuture).
//
// Host pump: one thread polls every K2H ring, completes replies, forwards events, reports
// device errors and runs the watchdog (a block with no heartbeat for watchdog_timeout while
// the grid should be running is a stall: the runtime reports kWatchdogTimeout and stops).
// How it and the device's pollers wait when idle is the poll policy (PollPolicy).
#pragma once

#include <pkrt/command.hpp>
#include <pkrt/k2k_transfer.hpp>
#include <pkrt/program.hpp>
#include <pkrt/replay_log.hpp>
#include <pkrt/reply_future.hpp>
#include <pkrt/slot.hpp>
#include <pkrt/status.hpp>

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <future>
#include <memory>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

namespace pkrt {

// pkrt's version, e.g. "0.1.0" (recorded in replay logs).
const char* version();

enum class BackendKind : std::uint8_t { kAuto, kCpu, kCuda };

const char* backend_name(BackendKind kind);
// GPUs the CUDA backend can use: 0 when it is not built or no driver answers.
int cuda_device_count();
// Parses "auto", "cpu" or "cuda".
Result<BackendKind> parse_backend(const std::string& text);

// How the host pump, waiting senders and the device's pollers wait when there is nothing to
// do (CPU cost and worst-case pickup delay of each: docs/performance.md, "Poll policies").
// Whatever the policy, while a request is outstanding on the CUDA backend no poller on either
// side sleeps 20 us or more, and a send wakes (resets the back-off of) a sleeping pump.
enum class PollPolicy : std::uint8_t {
  kAuto,      // kLatency on the CUDA backend, kBalanced on the CPU backend
  kLatency,   // the pump spins while any request is outstanding; waiters spin ~100 us;
              // device pollers sleep at most 256 ns between polls; CPU blocks spin longer
  kBalanced,  // spin, yield, then sleeps bounded at 50 us (the pump on CUDA) or a futex
              // woken by the blocks (CPU); waiters spin ~20 us; device sleeps <= 2 us
  kLowPower,  // short spins; the pump sleeps up to 1 ms when nothing is outstanding (16 us
              // when something is, on CUDA); waiters spin ~2 us; device sleeps <= 16 us
};

const char* poll_policy_name(PollPolicy policy);
// Parses "auto", "latency", "balanced" or "low_power".
Result<PollPolicy> parse_poll_policy(const std::string& text);

struct RuntimeOptions {
  BackendKind backend = BackendKind::kAuto;
  std::uint32_t num_actors = 1;
  std::uint32_t threads = 0;  // CPU backend workers (= blocks); 0: hardware concurrency
  std::uint32_t ring_capacity = 1024;  // slots per ring, power of two
  int cuda_device = 0;
  // CUDA: at most this many resident blocks per SM (1..32). Each block polls its H2K ring and
  // steps its actors; more blocks than SMs add grid-barrier and polling cost, and a grid that
  // takes every slot leaves nothing for other work. 1 suits most apps; 2 helps when actors'
  // steps stall on memory.
  std::uint32_t cuda_blocks_per_sm = 1;
  std::chrono::milliseconds watchdog_timeout{10000};
  std::chrono::milliseconds ring_full_timeout{5000};  // H2K backpressure bound
  std::chrono::milliseconds stop_timeout{10000};      // shutdown waits this long for blocks
  // Polls before an idle block (block 0, waiting for the host) starts backing off; on CUDA
  // also before a block waiting in the grid barrier starts to sleep. 0: from the poll policy.
  std::uint32_t idle_spin = 0;
  PollPolicy poll = PollPolicy::kAuto;
  // Snapshots: a device staging pool (staging_bytes) and a host mirror of each actor's image.
  // Off: no staging memory, snapshots refused.
  bool snapshots = true;
  std::uint32_t chunk_bytes = 64 * 1024;  // CRC / delta granularity, power of two >= 256
  // Device memory for snapshot staging, in whole actor images (ImageLayout::staging_slots;
  // staging_pool_slots() below). 0: a quarter of the actors' images or 256 MiB, whichever is
  // smaller, but never less than 64 MiB (a run whose images fit in 64 MiB stages them all).
  // Always at least one actor's image and at most one per actor. A snapshot_all of more actors than the pool holds
  // is served in waves at one epoch: the grid holds at that epoch while the host copies each
  // wave (the stall grows with the number of waves; BENCHMARKS.md). Single-actor snapshots
  // and live restores each take one slot while in flight.
  std::uint64_t staging_bytes = 0;
  // Replay (pkrt/replay_log.hpp, pkrt/replay.hpp). With a log, the runtime writes the run
  // metadata into it at start() and mirrors every H2K slot when it publishes it and every
  // K2H slot when the pump consumes it. One log records one run.
  std::shared_ptr<ReplayLogWriter> replay_log;
  // Every digest_period epochs each actor reports the CRC32 of its state (State + named
  // regions) as a kOpDigest event, so a replay sees state divergence even when no message
  // differs. 0: off.
  std::uint32_t digest_period = 0;
  // CPU backend only: seeded chaos. Each epoch the blocks apply commands and step their
  // actors one at a time, in an order drawn from (seed, epoch), and workers are delayed at
  // seeded points, so schedule-dependent results change with the seed and are reproducible
  // for a given seed. kInvalidArgument with the CUDA backend.
  bool chaos = false;
  std::uint64_t chaos_seed = 0;
  // K2K delay D (1..kMaxK2KDelay): a message an actor commits in epoch e is read in epoch
  // e + D (ActorContext::k2k_inbox). 1 is the classic next-epoch mailbox. It is part of the
  // program's meaning (a different D is a different run) and the same for every K2K message,
  // local or between runtimes, so results never depend on where actors run; D > 1 lets
  // runtimes on other ranks exchange epoch e's messages while epochs e + 1 .. e + D - 1 run
  // (docs/scale-out.md). Each actor's snapshot image holds D mailboxes.
  std::uint32_t k2k_delay = 1;
  // Scale-out (pkrt/mpi.hpp): this runtime is one shard of a program of `global_actors`
  // actors and runs those in `global_ids` (ascending, num_actors of them). Local actor i, the
  // index every Runtime method takes (send, snapshots, events), is global actor
  // global_ids[i], the id the actor sees (ActorContext::actor(), Message::actor), and K2K
  // addresses global ids. K2K to actors of other shards leaves through
  // collect_outbound_k2k and arrives through deliver_inbound_k2k; the grid starts an epoch
  // only once every message it reads has arrived. Empty / 0: the runtime runs them all.
  std::uint32_t global_actors = 0;
  std::vector<std::uint32_t> global_ids;
};


// The default staging pool's cap and floor (RuntimeOptions::staging_bytes = 0).
inline constexpr std::uint64_t kDefaultStagingCapBytes = std::uint64_t{256} << 20;
inline constexpr std::uint64_t kDefaultStagingFloorBytes = std::uint64_t{64} << 20;

// The staging slots a runtime of `actors` actors gets for RuntimeOptions::staging_bytes =
// `staging_bytes` (0: the default), when one slot (an image and its chunk tables,
// ImageLayout::staging_slot_bytes) is `slot_bytes`.
std::uint32_t staging_pool_slots(std::uint64_t staging_bytes, std::uint64_t slot_bytes, std::uint32_t actors);

// How an actor's snapshot image is laid out: [arena: State, named regions][K2K inbox].
struct ImageLayout {
  std::uint64_t image_bytes = 0;
  std::uint64_t arena_bytes = 0;   // state_stride
  std::uint64_t inbox_bytes = 0;   // K2K channels x mailbox slot
  std::uint32_t chunk_bytes = 0;
  std::uint32_t chunks = 0;
  // Actor images the device staging pool holds at once (RuntimeOptions::staging_bytes), and
  // the device bytes of one slot (image, chunk CRCs, changed flags).
  std::uint32_t staging_slots = 0;
  std::uint64_t staging_slot_bytes = 0;
  struct Region {
    std::string name;
    std::uint64_t offset = 0;
    std::uint64_t bytes = 0;
  };
  std::vector<Region> regions;  // "state", each named region, "k2k_inbox"
  // The app-wide region's image (snapshot_all with SnapshotScope::kActorsAndGlobal): the
  // region's bytes, in chunks of chunk_bytes. 0 when the app has none.
  std::uint64_t global_bytes = 0;
  std::uint32_t global_chunks = 0;
};

// What a snapshot_all takes, all at one consistent cut: the actors only; the actors and the
// app-wide region (its image arrives as actor kGlobalRegionActor); or the whole run: those
// and the commands sent but not yet applied (one more image, actor kQueuedCommandsActor,
// holding encode_queued_commands() of them, pkrt/checkpoint_set.hpp), what a checkpoint needs
// to continue exactly.
enum class SnapshotScope : std::uint8_t { kActors, kActorsAndGlobal, kWholeRun };

// One actor's snapshot, copied to the host (delivered to the snapshot sink on the pump thread).
struct SnapshotImage {
  Status status;                 // not ok: the snapshot failed (staging busy, copy error...)
  std::uint32_t actor = 0;        // kGlobalRegionActor: the app-wide region's image
  std::uint64_t epoch = 0;       // state at the end of this epoch
  std::uint64_t request = 0;     // snapshot_all / snapshot_actor id
  std::uint32_t crc = 0;         // CRC32 of the whole image, verified on the host copy
  std::vector<std::uint32_t> changed;  // chunks that differ from the actor's previous snapshot
  std::shared_ptr<const std::vector<std::byte>> image;  // the whole image (host mirror copy)
  std::uint64_t stall_ns = 0;    // device: actor held for the copy + CRC
  std::uint64_t bytes_copied = 0;  // device -> host bytes for this snapshot
  std::chrono::steady_clock::time_point requested;  // host asked (snapshot_all/actor call)
  std::chrono::steady_clock::time_point copied;     // changed chunks on the host, staging released
};

struct RuntimeStats {
  std::uint64_t epoch = 0;            // last epoch the whole grid completed
  std::uint64_t commands_sent = 0;    // H2K slots published
  std::uint64_t events_received = 0;  // K2H slots consumed
  std::uint64_t replies = 0;          // commands completed by the kernel (replies, errors and
                                      // the commands a kOpAckRange covers)
  std::uint64_t errors = 0;           // kOpError slots
  std::uint64_t posts = 0;            // commands posted (post, post_batch)
  std::uint32_t blocks = 0;
  std::uint32_t threads_per_block = 0;
};

class Runtime {
 public:
  using EventCallback = std::function<void(const Event&)>;
  using ErrorCallback = std::function<void(const Status&)>;
  using ReplyCallback = std::function<void(const Reply&)>;

  // Validates options, picks and initialises the backend, allocates everything the kernel
  // needs. Nothing runs until start().
  static Result<std::unique_ptr<Runtime>> create(const Program& program, const void* params,
                                                 std::size_t params_bytes,
                                                 const RuntimeOptions& options);
  template <class Params>
  static Result<std::unique_ptr<Runtime>> create(const Program& program, const Params& params,
                                                 const RuntimeOptions& options) {
    static_assert(std::is_trivially_copyable_v<Params>, "pkrt: Params must be trivially copyable");
    return create(program, &params, sizeof(Params), options);
  }

  ~Runtime();
  Runtime(const Runtime&) = delete;
  Runtime& operator=(const Runtime&) = delete;

  // Called on the pump thread for every K2H slot that is not a reply (statistics, digests).
  void set_event_callback(EventCallback callback);
  // Called on the pump thread for errors not tied to a request (watchdog, device faults).
  void set_error_callback(ErrorCallback callback);

  // Launches the kernel: actors are initialised, then epochs advance until the target epoch
  // (set_target_epoch; default: none), a pause, or shutdown. A start that fails (the replay
  // log refuses the run, the launch fails) leaves its error sticky in health(): commands sent
  // before it complete with that error, later ones are refused, and the error callback runs
  // on the calling thread. Once only: a second start(), or one after shutdown(), is refused.
  Status start();

  // Epochs advance until `epoch` is complete, then the grid parks. Non-blocking; may be
  // called before start() (the grid then parks there, however fast it runs). After
  // shutdown(): refused (kFailedPrecondition, or the run's sticky error if it failed).
  Status set_target_epoch(std::uint64_t epoch);
  // set_target_epoch(epoch) and wait until the grid parks there (or fails). If the grid had
  // already passed `epoch` it parks where it is and this returns kFailedPrecondition.
  Status run_until(std::uint64_t epoch, std::chrono::milliseconds timeout = std::chrono::hours(24));

  Status pause();   // park at the next epoch boundary (returns once requested)
  Status resume();  // leave a pause (the target epoch still applies)
  // Waits until the grid is parked (pause or target); the parked epoch is in stats().epoch.
  Status wait_parked(std::chrono::milliseconds timeout);

  // Sends a command to an actor, applied at `apply_epoch` (0: the next epoch; a parked grid
  // applies it when it next runs). Allowed before start(). Commands due at the same epoch
  // apply in the order sent; one due later never holds back one due sooner while its block
  // holds fewer than ring_capacity commands not yet due (they wait in a per-block list of
  // that size; past it, the ring backs up until the earliest come due). The future
  // completes with the actor's reply, an ack, or an error (unknown opcode, bad actor, ring
  // full after ring_full_timeout, or at once before start() since nothing consumes the ring
  // then, runtime failed or shut down).
  ReplyFuture send(std::uint32_t actor, std::uint16_t opcode, const void* data, std::size_t bytes,
                   std::uint64_t apply_epoch = 0);
  // (T is a value: a pointer or a C array goes to the (data, bytes) overload above, so that
  // send(actor, op, buffer, sizeof buffer) never sends the pointer with apply epoch = size.)
  template <class T>
    requires kMessageValue<T>
  ReplyFuture send(std::uint32_t actor, std::uint16_t opcode, const T& value,
                   std::uint64_t apply_epoch = 0) {
    static_assert(std::is_trivially_copyable_v<T> && sizeof(T) <= kEnvelopeDataBytes,
                  "pkrt: message data is at most 32 trivially copyable bytes");
    return send(actor, opcode, &value, sizeof(T), apply_epoch);
  }
  // Same, completing through a callback on the pump thread (or inline on a send failure).
  void send(std::uint32_t actor, std::uint16_t opcode, const void* data, std::size_t bytes,
            std::uint64_t apply_epoch, ReplyCallback callback);
  template <class T>
    requires kMessageValue<T>
  void send(std::uint32_t actor, std::uint16_t opcode, const T& value, std::uint64_t apply_epoch,
            ReplyCallback callback) {
    static_assert(std::is_trivially_copyable_v<T> && sizeof(T) <= kEnvelopeDataBytes,
                  "pkrt: message data is at most 32 trivially copyable bytes");
    send(actor, opcode, &value, sizeof(T), apply_epoch, std::move(callback));
  }

  // Fire and forget: the command is applied exactly like a send's, but nobody waits for it.
  // Ok once it is in the H2K ring; kOutOfRange for an actor the runtime does not have,
  // kRingFull after ring_full_timeout (at once before start()), kFailedPrecondition/kAborted
  // when the runtime cannot take commands. An error the kernel reports for a posted command
  // (unknown opcode, a handler's error) goes to the error callback and stats().errors; a
  // reply is dropped in the kernel (never published). With a replay log, posts are
  // acknowledged in runs (kOpAckRange) so the log still holds each one's applied epoch.
  Status post(std::uint32_t actor, std::uint16_t opcode, const void* data, std::size_t bytes,
              std::uint64_t apply_epoch = 0);
  template <class T>
    requires kMessageValue<T>
  Status post(std::uint32_t actor, std::uint16_t opcode, const T& value,
              std::uint64_t apply_epoch = 0) {
    static_assert(std::is_trivially_copyable_v<T> && sizeof(T) <= kEnvelopeDataBytes,
                  "pkrt: message data is at most 32 trivially copyable bytes");
    return post(actor, opcode, &value, sizeof(T), apply_epoch);
  }

  // Batches: the commands of one block go out with one ring reservation and one publish per
  // ring-full, and the whole batch rings the doorbell once. Commands keep their order per
  // block (so per actor). post_batch returns ok when every command is in a ring; on an error
  // it says how many were posted (the first ones, in order, per block).
  Status post_batch(std::span<const Command> commands);
  // One future per command, in order. `replies` must be as long as `commands` (else every
  // entry gets kInvalidArgument); the overload returning a vector allocates it.
  void send_batch(std::span<const Command> commands, std::span<ReplyFuture> replies);
  std::vector<ReplyFuture> send_batch(std::span<const Command> commands);

  // ---- Snapshots and restore (kernels/snapshot.hpp; checkpoint files: CheckpointManager) --

  using SnapshotSink = std::function<void(SnapshotImage)>;
  // Receives every snapshot (or its failure) on the pump thread; keep it short (hand the
  // image to a writer pool). Set before the first snapshot.
  void set_snapshot_sink(SnapshotSink sink);
  // Every actor at the end of `epoch` (or of the parked epoch, or the next one if `epoch`
  // has passed): one consistent cut. Returns the request id the images carry. It is a
  // control change: a parked grid stays parked and re-reports its park (wait_parked()).
  // With SnapshotScope::kActorsAndGlobal and an app that has a global region, one more image
  // (actor kGlobalRegionActor) holds the region at the same cut; every block waits at one
  // extra grid barrier while block 0 copies it. A sink that indexes images by actor asks for
  // the actors only (the default).
  // The staging pool (RuntimeOptions::staging_bytes) decides how: when it holds every actor's
  // image, all are copied in one pass; otherwise in waves of ImageLayout::staging_slots actors,
  // the grid holding at the cut (a park that is not reported: wait_parked() does not see it)
  // until the host has copied the last wave. One snapshot_all at a time uses the pool:
  // kFailedPrecondition while another is being served, or while single-actor snapshots or
  // live restores hold slots (wait for their images or replies first).
  Result<std::uint64_t> snapshot_all(std::uint64_t epoch, bool full = false,
                                     SnapshotScope scope = SnapshotScope::kActors);
  // Withdraws a snapshot_all the grid has not latched yet. Returns false if `request` is
  // not the pending one or the grid has latched it (its images then arrive as usual). A
  // request the grid latches in the instant of its withdrawal still writes its first wave;
  // those images are dropped, never delivered.
  bool cancel_snapshot(std::uint64_t request);
  // One actor at the end of the epoch the command applies at (0: next). Takes one staging
  // slot until its image is copied: kFailedPrecondition while a snapshot_all uses the pool or
  // when every slot is taken (wait for the images in flight, or raise staging_bytes).
  Result<std::uint64_t> snapshot_actor(std::uint32_t actor, bool full = false,
                                       std::uint64_t apply_epoch = 0);
  const ImageLayout& image_layout() const;
  // Before start(): every actor's image (as a snapshot produced it, all at `epoch`) and, for
  // an app with a global region, the region's image at the same epoch (image_layout().
  // global_bytes; refused when missing, since a zeroed region would silently restore a
  // different run); the run continues with epoch + 1 and skips App::init. `queued`: the
  // commands that were sent and not applied at `epoch` (RestorePoint::queued), posted again
  // here in their order, so they apply at the epochs they would have; refused when a block's
  // ring cannot hold its share before the launch (the fix: a larger ring_capacity).
  Status restore_before_start(std::uint64_t epoch, const std::vector<std::vector<std::byte>>& images,
                              std::span<const std::byte> global = {}, std::span<const Command> queued = {});
  // While running: replaces one actor's state at the start of `apply_epoch` (0: next) with
  // an image taken at `source_epoch`. Its next snapshot is full.
  std::future<Reply> restore_actor(std::uint32_t actor, const std::vector<std::byte>& image,
                                   std::uint64_t source_epoch, std::uint64_t apply_epoch = 0);

  // Copies an actor's State (region -1) or named region r to `out` (`bytes` at most the
  // region's size). Only while the grid is parked, after shutdown, or before start() (then
  // the state is still zero: init runs on the first launch).
  Status read_region(std::uint32_t actor, int region, void* out, std::size_t bytes);
  std::uint64_t region_bytes(int region) const;

  // Stops the kernel at the next epoch boundary, drains the rings, joins every thread.
  // Idempotent; returns the first error the runtime saw (watchdog, device fault), else ok.
  Status shutdown();

  // ---- Scale-out (pkrt/mpi.hpp drives these; RuntimeOptions::global_ids) ----------------
  // Whether every block has completed `epoch` (for a fresh run's start epoch: initialised its
  // actors), so that all its K2K commits are in place.
  bool epoch_completed(std::uint64_t epoch) const;
  // The K2K messages this runtime's actors committed in `epoch` to actors it does not run:
  // appends one K2KTransfer each to `out` and its payload to `payload`, in (dst, channel)
  // order. kFailedPrecondition unless epoch_completed(epoch) and `epoch` is the next to
  // deliver (the grid cannot pass epoch + D before that delivery, so its mailboxes are intact).
  Status collect_outbound_k2k(std::uint64_t epoch, std::vector<K2KTransfer>& out, std::vector<std::byte>& payload);
  // Writes K2K messages other runtimes' actors committed in `epoch` into this runtime's
  // mailboxes (payloads back to back in `payload`, in order), then lets the grid run through
  // epoch + D. Call once per epoch, in order, even with no messages: epoch e + D waits for it.
  // kInvalidArgument for a message to an actor this runtime does not run, a bad channel or
  // size, or a payload of the wrong length; kFailedPrecondition out of order.
  Status deliver_inbound_k2k(std::uint64_t epoch, std::span<const K2KTransfer> messages,
                             std::span<const std::byte> payload);
  // The first epoch whose K2K messages are exchanged: the start epoch for a fresh run (init
  // sends), the one after it for a restored run (its images hold what was in flight).
  std::uint64_t first_exchange_epoch() const;

  RuntimeStats stats() const;
  std::uint64_t epoch() const;
  BackendKind backend() const;
  const std::string& backend_description() const;  // e.g. "cpu (2 worker threads)"
  const Program& program() const;
  const RuntimeOptions& options() const;
  const ProgramLayout& layout() const;
  const std::vector<std::byte>& params() const;  // the app's Params as bytes
  PollPolicy poll_policy() const;  // the policy in force (kAuto resolved)
  Status health() const;  // first sticky error, or ok

  struct Impl;

 private:
  explicit Runtime(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace pkrt
