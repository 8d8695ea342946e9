// host/runtime.cpp: Runtime: setup, the host pump thread, the watchdog, send/reply plumbing.
//
// Host-side ownership of shared words (see pkrt/control.hpp and pkrt/ring.hpp):
//   HostControl       written here only (store_release, then a doorbell store + notify)
//   H2K producer      h2k_[b], one mutex per ring serialises host threads
//   K2H consumer      k2h_[b], used by the pump thread only
//   GridReport, BlockHeartbeat, ring indices of the device side: read only.
#include <pkrt/runtime.hpp>

#include "host/backend.hpp"

#include <pkrt/replay.hpp>
#include <pkrt/detail/block_platform.hpp>
#include <pkrt/detail/futex.hpp>
#include <pkrt/crc32.hpp>
#include <pkrt/detail/system_atomic.hpp>
#include <pkrt/kernels/crc32.hpp>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <sstream>
#include <thread>
#include <unordered_map>
#include <vector>

namespace pkrt {

const char* version() { return PKRT_VERSION_STRING; }

const char* backend_name(BackendKind kind) {
  switch (kind) {
    case BackendKind::kAuto: return "auto";
    case BackendKind::kCpu: return "cpu";
    case BackendKind::kCuda: return "cuda";
  }
  return "unknown";
}

Result<BackendKind> parse_backend(const std::string& text) {
  if (text == "auto") return BackendKind::kAuto;
  if (text == "cpu") return BackendKind::kCpu;
  if (text == "cuda") return BackendKind::kCuda;
  return Status(StatusCode::kInvalidArgument,
                "unknown backend '" + text + "'. Fix: use auto, cpu or cuda");
}

namespace {

constexpr std::uint64_t align_up(std::uint64_t v, std::uint64_t a) { return (v + a - 1) / a * a; }

enum class Phase { kCreated, kRunning, kStopped };

struct Pending {
  std::promise<Reply> promise;
  Runtime::ReplyCallback callback;  // used instead of the promise when set
  std::uint32_t actor = 0;
  std::uint16_t opcode = 0;
};

void complete(Pending& pending, Reply reply) {
  if (pending.callback) {
    pending.callback(reply);
  } else {
    pending.promise.set_value(std::move(reply));
  }
}

Event to_event(const Slot& slot, std::uint32_t block) {
  Event ev;
  ev.opcode = slot.header.opcode;
  ev.flags = slot.header.flags;
  ev.actor = slot.header.actor;
  ev.block = block;
  ev.epoch = slot.payload.epoch;
  ev.request = slot.payload.request;
  std::memcpy(ev.data.data(), slot.payload.data, kEnvelopeDataBytes);
  return ev;
}

std::string hex_opcode(std::uint16_t op) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%04x", op);
  return buf;
}

}  // namespace

struct Runtime::Impl {
  const Program* program = nullptr;
  BackendKind backend_kind = BackendKind::kCpu;
  std::vector<std::byte> params;
  RuntimeOptions options;
  ProgramLayout layout;
  std::unique_ptr<host::Backend> backend;
  host::LaunchPlan plan;
  std::string description;

  host::Buffer control_buf, heartbeat_buf, h2k_buf, k2h_buf, state_buf, k2k_buf, global_buf,
      grid_buf, lines_buf, params_buf, staging_buf, prev_crc_buf, actor_flag_buf, deferred_buf;
  ImageLayout image;
  // Per actor: the last snapshot image on the host (pump thread). Handed to the sink without a
  // copy; while a handed-out image is alive (`lent`), the next snapshot copies it first.
  struct MirrorImage {
    std::vector<std::byte> bytes;
    std::atomic<bool> lent{false};
  };
  std::vector<std::shared_ptr<MirrorImage>> mirror;
  ControlBlock* control = nullptr;      // host pointer
  BlockHeartbeat* heartbeats = nullptr;  // host pointer
  std::uint64_t ring_stride = 0;
  std::uint64_t state_stride = 0;
  detail::KernelArgs args{};

  std::vector<RingProducer> h2k;
  std::unique_ptr<std::mutex[]> h2k_mu;
  std::vector<RingConsumer> k2h;
  std::mutex control_mu;  // serialises HostControl stores so generation and doorbell only grow
  std::mutex sink_mu;     // held while the snapshot sink runs: replacing it waits for the call
  std::vector<std::uint32_t> pending_releases;  // pump thread: staging slots to release
  std::uint32_t restores_in_flight = 0;         // guarded by mu: live restores not yet applied
  std::uint32_t doorbell = 0;

  Phase phase = Phase::kCreated;
  std::thread pump;
  std::atomic<bool> pump_stop{false};

  mutable std::mutex mu;  // guards everything below
  std::condition_variable cv;
  std::unordered_map<std::uint64_t, Pending> pending;
  std::uint64_t next_request = 1;
  EventCallback on_event;
  ErrorCallback on_error;
  SnapshotSink on_snapshot;
  struct SnapshotRequest {
    std::chrono::steady_clock::time_point requested;
    std::uint32_t outstanding;  // actors whose image (or error) has not arrived
  };
  std::unordered_map<std::uint64_t, SnapshotRequest> snapshot_requests;
  Status sticky;
  bool parked = false;                  // last park report not yet followed by kOpResumed
  std::uint64_t parked_epoch = 0;
  std::uint32_t parked_generation = 0;  // control generation the last kOpPaused answered
  std::uint32_t generation = 0;         // control generation last stored (guarded by control_mu)
  bool pause_requested = false;         // host copy of HostControl::pause
  bool stopped_event = false;
  bool kernel_done = false;
  bool leaked = false;

  // Replay log (optional). `complete_epoch` is the pump's horizon: every K2H slot of epochs up
  // to it has been consumed (and logged). Written by the pump, read by senders for their
  // records' epoch_observed; relaxed both ways, it is a label and orders nothing.
  std::shared_ptr<ReplayLogWriter> log;
  std::atomic<std::uint64_t> complete_epoch{0};
  // Commands sent before start() are held here until start() has written the run's
  // metadata (restore_before_start may still change its start epoch), then logged in the
  // order they were sent.
  std::mutex log_mu;
  bool log_begun = false;                                    // guarded by log_mu
  std::vector<std::pair<std::uint32_t, Slot>> prestart_h2k;  // guarded by log_mu

  // Statistics counters: every access is relaxed; they order nothing and are only reported.
  std::atomic<std::uint64_t> commands_sent{0}, events_received{0}, replies{0}, errors{0};

  // ---- host control ----------------------------------------------------------------------

  // Callers hold control_mu.
  void ring_doorbell_locked() {
    // Release: the published count covers every slot whose publish finished before now;
    // block 0 compares it with the consumed counts to decide whether an idle grid may sleep.
    detail::store_release(control->host.published, commands_sent.load(std::memory_order_relaxed));
    ++doorbell;
    // Release: everything published before (ring slots, control words) is visible to the
    // block-0 leader that acquires the new doorbell value.
    detail::store_release(control->host.doorbell, doorbell);
    // Wakes CPU-backend blocks waiting in wait_for_change (futex); no-op for CUDA.
    std::atomic_ref<std::uint32_t>(control->host.doorbell).notify_all();
  }

  void ring_doorbell() {
    std::lock_guard<std::mutex> lock(control_mu);
    ring_doorbell_locked();
  }

  // Stores one control word, then the new generation, then rings (see pkrt/control.hpp).
  template <class T>
  void set_control(T HostControl::*field, T value) {
    std::lock_guard<std::mutex> lock(control_mu);
    // Release: pairs with block 0's acquire loads in ControlView::refresh.
    detail::store_release(control->host.*field, value);
    std::uint32_t g;
    {
      std::lock_guard<std::mutex> state_lock(mu);
      g = ++generation;
    }
    // Release: block 0 that acquires this generation sees the word stored above.
    detail::store_release(control->host.generation, g);
    ring_doorbell_locked();
  }

  // Several control words as one change: `store` runs under control_mu, then the generation
  // moves and the doorbell rings once.
  template <class Fn>
  void update_control(Fn&& store) {
    std::lock_guard<std::mutex> lock(control_mu);
    store();
    std::uint32_t g;
    {
      std::lock_guard<std::mutex> state_lock(mu);
      g = ++generation;
    }
    // Release: block 0 that acquires this generation sees the words stored above.
    detail::store_release(control->host.generation, g);
    ring_doorbell_locked();
  }

  // Callers hold mu; pending_releases itself is pump-thread state, read here only as a hint
  // through its size, which the pump updates under mu (retry_releases swaps under mu).
  bool pending_releases_empty() const { return pending_release_count == 0; }
  std::size_t pending_release_count = 0;  // guarded by mu: mirror of pending_releases.size()

  // The grid is parked in answer to the latest control change. Callers hold mu.
  bool parked_now() const { return parked && parked_generation == generation; }

  void record_error(const Status& st) {
    ErrorCallback cb;
    {
      std::lock_guard<std::mutex> lock(mu);
      if (!sticky.ok()) return;
      sticky = st;
      cb = on_error;
    }
    if (cb) cb(st);
    cv.notify_all();
  }

  void abort_kernel() { set_control(&HostControl::abort, 1u); }

  // ---- pump --------------------------------------------------------------------------------

  Status error_status(const Event& ev) const {
    const auto err = ev.as<ErrorData>();
    const auto code = static_cast<StatusCode>(err.code);
    std::string what;
    switch (code) {
      case StatusCode::kOutOfRange:
        what = "actor " + std::to_string(err.actor) + " is out of range: app '" +
               program->name + "' has " + std::to_string(err.detail) + " actors (0.." +
               std::to_string(err.detail == 0 ? 0 : err.detail - 1) +
               "). Fix: address an actor below " + std::to_string(err.detail);
        break;
      case StatusCode::kUnknownOpcode:
        what = "opcode " + hex_opcode(err.opcode) + " is not handled by app '" +
               program->name + "' (actor " + std::to_string(err.actor) + ", epoch " +
               std::to_string(ev.epoch) + "). Fix: send an opcode the actor's on_message "
               "handles (application opcodes start at 0x1000)";
        break;
      default:
        what = "actor " + std::to_string(err.actor) + " of app '" + program->name +
               "' rejected opcode " + hex_opcode(err.opcode) + " at epoch " +
               std::to_string(ev.epoch) + " with " + status_code_name(code);
        break;
    }
    return Status(code, what);
  }

  // Park/resume/stop reports seen during the current pump pass; applied (and waiters woken)
  // only after the pass drained every ring, so that the events other blocks published in
  // the parked epoch (ordered before kOpPaused by the grid barrier) are delivered first.
  std::vector<Event> deferred_reports;

  void apply_reports() {
    if (deferred_reports.empty()) return;
    {
      std::lock_guard<std::mutex> lock(mu);
      for (const Event& ev : deferred_reports) {
        if (ev.opcode == kOpPaused) {
          parked = true;
          parked_epoch = ev.epoch;
          parked_generation = ev.as<std::uint32_t>();
        } else if (ev.opcode == kOpResumed) {
          parked = false;
        } else {
          stopped_event = true;
          parked = false;
          parked_epoch = ev.as<StopData>().final_epoch;
        }
      }
    }
    deferred_reports.clear();
    cv.notify_all();
  }

  void handle(const Slot& slot, std::uint32_t block) {
    events_received.fetch_add(1, std::memory_order_relaxed);  // Relaxed: statistics only.
    const Event ev = to_event(slot, block);
    if (ev.opcode == kOpSnapshotReady) {
      handle_snapshot(ev);
      return;
    }
    if (ev.opcode == kOpError && ev.as<ErrorData>().opcode == kOpSnapshotActor) {
      errors.fetch_add(1, std::memory_order_relaxed);  // Relaxed: statistics only.
      SnapshotImage failed;
      failed.actor = ev.actor;
      failed.epoch = ev.epoch;
      failed.request = ev.request;
      failed.status = Status(static_cast<StatusCode>(ev.as<ErrorData>().code),
                             "snapshot of actor " + std::to_string(ev.actor) + " at epoch " +
                                 std::to_string(ev.epoch) + " refused: " +
                                 (ev.as<ErrorData>().code == static_cast<std::uint16_t>(StatusCode::kFailedPrecondition)
                                      ? "its staging slot still holds an unreleased snapshot"
                                      : status_code_name(static_cast<StatusCode>(ev.as<ErrorData>().code))));
      deliver_snapshot(std::move(failed));
      return;
    }
    if (ev.request == 0 && ev.opcode == kOpAck) return;  // internal commands (ReleaseStaging)
    if (ev.opcode == kOpError) errors.fetch_add(1, std::memory_order_relaxed);  // statistics
    if ((ev.flags & kFlagReply) != 0) {
      replies.fetch_add(1, std::memory_order_relaxed);  // Relaxed: statistics only.
      Pending p;
      bool found = false;
      {
        std::lock_guard<std::mutex> lock(mu);
        auto it = pending.find(ev.request);
        if (it != pending.end()) {
          p = std::move(it->second);
          pending.erase(it);
          found = true;
        }
      }
      if (found) {
        Reply reply;
        reply.event = ev;
        if (ev.opcode == kOpError) reply.status = error_status(ev);
        complete(p, std::move(reply));
        return;
      }
      if (ev.opcode == kOpError) {
        record_error(Status(StatusCode::kInternal,
                            "error event for unknown request " + std::to_string(ev.request) +
                                ": " + error_status(ev).to_string()));
      }
      return;
    }
    if (ev.opcode == kOpPaused || ev.opcode == kOpResumed || ev.opcode == kOpStopped) {
      deferred_reports.push_back(ev);
      return;
    }
    EventCallback cb;
    {
      std::lock_guard<std::mutex> lock(mu);
      cb = on_event;
    }
    if (cb) cb(ev);
  }

  // Pump thread: a staging slot is ready. Copy the changed chunks into the host mirror,
  // check the whole image's CRC, release the slot, and hand the image to the sink.
  void handle_snapshot(const Event& ev) {
    const auto ready = ev.as<SnapshotReadyData>();
    SnapshotImage img;
    img.actor = ev.actor;
    img.epoch = ev.epoch;
    img.request = ev.request;
    img.crc = ready.crc;
    img.stall_ns = ready.stall_ns;
    img.status = copy_snapshot(ev.actor, ready, img);
    // Release even after a failed copy: the device must not stay blocked on this slot.
    // A full H2K ring is retried by the pump (retry_releases), never given up.
    pending_releases.push_back(ev.actor);
    retry_releases();
    img.copied = std::chrono::steady_clock::now();
    deliver_snapshot(std::move(img));
  }

  // Pump thread: one attempt each; what does not fit stays queued for the next pass.
  void retry_releases() {
    if (pending_releases.empty()) return;
    std::vector<std::uint32_t> left;
    for (std::uint32_t actor : pending_releases) {
      const std::uint32_t b = detail::block_of_actor(actor, plan.blocks, options.num_actors);
      const Envelope env = detail::make_envelope(0, 0, nullptr, 0);
      bool done = false;
      {
        std::lock_guard<std::mutex> lock(h2k_mu[b]);
        if (h2k[b].has_room()) {
          log_h2k(b, kOpReleaseStaging, actor, env);
          done = h2k[b].try_publish(kOpReleaseStaging, kFlagNone, actor, env);
        }
      }
      if (done) commands_sent.fetch_add(1, std::memory_order_relaxed);  // Relaxed: statistics only.
      else left.push_back(actor);
    }
    if (left.size() != pending_releases.size()) ring_doorbell();
    pending_releases.swap(left);
    std::lock_guard<std::mutex> lock(mu);
    pending_release_count = pending_releases.size();
  }

  Status copy_snapshot(std::uint32_t actor, const SnapshotReadyData& ready, SnapshotImage& img) {
    // Every failure below drops the mirror: the device has moved its chunk CRCs on to this
    // snapshot either way, so the next one must copy (and check) the whole image.
    if (ready.image_bytes != image.image_bytes || ready.chunks != image.chunks) {
      mirror[actor].reset();
      return Status(StatusCode::kInternal, "snapshot of actor " + std::to_string(actor) +
                                               " reports a layout the host did not allocate");
    }
    const auto* slot = static_cast<const std::byte*>(staging_buf.device()) + args.staging_stride * actor;
    std::vector<std::uint8_t> changed(image.chunks);
    if (Status st = backend->copy_to_host(changed.data(), slot + args.changed_offset, image.chunks); !st.ok()) {
      mirror[actor].reset();
      return st;
    }
    std::shared_ptr<MirrorImage>& mp = mirror[actor];
    bool whole = false;
    if (!mp || mp->bytes.size() != image.image_bytes) {
      // No valid mirror (first snapshot, or the last copy failed): take every chunk; the
      // staging slot always holds the whole image.
      mp = std::make_shared<MirrorImage>();
      mp->bytes.assign(image.image_bytes, std::byte{0});
      std::fill(changed.begin(), changed.end(), std::uint8_t{1});
      whole = true;
    } else if (mp->lent.load(std::memory_order_acquire)) {
      // Acquire (this and the false case): pairs with the release in the lent image's
      // deleter, so the sink's reads of the bytes happen before we overwrite them. Still
      // lent: copy on write; the sink keeps reading the old buffer.
      auto fresh = std::make_shared<MirrorImage>();
      fresh->bytes = mp->bytes;
      mp = std::move(fresh);
    }
    std::vector<std::byte>& m = mp->bytes;
    // Coalesce runs of changed chunks into one copy each.
    for (std::uint32_t c = 0; c < image.chunks;) {
      if (changed[c] == 0) {
        ++c;
        continue;
      }
      std::uint32_t end = c;
      while (end < image.chunks && changed[end] != 0) img.changed.push_back(end++);
      const std::uint64_t off = std::uint64_t{c} * image.chunk_bytes;
      const std::uint64_t len = std::min<std::uint64_t>(std::uint64_t{end} * image.chunk_bytes, image.image_bytes) - off;
      Status copied = backend->copy_to_host(m.data() + off, slot + off, len);
      if (!copied.ok()) {
        mp.reset();  // partly updated: the next snapshot of this actor copies everything
        return copied;
      }
      img.bytes_copied += len;
      c = end;
    }
    if (!mirror_matches_device(actor, m, img.changed, whole, ready.crc)) {
      mp.reset();  // the next snapshot of this actor copies everything again
      return Status(StatusCode::kCorruptData,
                    "snapshot of actor " + std::to_string(actor) + " at epoch " + std::to_string(img.epoch) +
                        ": the host copy does not match the device CRC (a chunk was missed or damaged in "
                        "transfer). The next snapshot of this actor should be full");
    }
    // Relaxed: the pump alone sets it, before the image leaves this thread.
    mp->lent.store(true, std::memory_order_relaxed);
    img.image = std::shared_ptr<const std::vector<std::byte>>(&mp->bytes, [keep = mp](const std::vector<std::byte>*) {
      // Release: the sink's reads of the bytes happen before the pump reuses the buffer.
      keep->lent.store(false, std::memory_order_release);
    });
    return Status();
  }

  // Whether the host mirror holds the image the device CRC'd. When most chunks changed, one
  // CRC of the whole mirror. A delta checks only what it copied: each copied chunk against
  // the device's chunk CRC, and the device's chunk CRCs against its image CRC (unchanged
  // chunks have the CRCs the mirror was verified with before), so a delta costs the host
  // work proportional to what changed.
  bool mirror_matches_device(std::uint32_t actor, const std::vector<std::byte>& m,
                             const std::vector<std::uint32_t>& copied, bool whole, std::uint32_t image_crc) {
    if (whole || copied.size() * 4 >= image.chunks) return crc32(m.data(), m.size()) == image_crc;
    const auto* slot = static_cast<const std::byte*>(staging_buf.device()) + args.staging_stride * actor;
    std::vector<std::uint32_t> crcs(image.chunks);
    if (!backend->copy_to_host(crcs.data(), slot + args.crc_offset, crcs.size() * sizeof(std::uint32_t)).ok())
      return false;
    if (crc::crc32_combine_chunks(crcs.data(), image.image_bytes, image.chunk_bytes) != image_crc) return false;
    for (std::uint32_t c : copied) {
      const std::uint64_t off = std::uint64_t{c} * image.chunk_bytes;
      const std::uint64_t len = std::min<std::uint64_t>(image.chunk_bytes, image.image_bytes - off);
      if (crc32(m.data() + off, len) != crcs[c]) return false;
    }
    return true;
  }

  void deliver_snapshot(SnapshotImage img) {
    {
      std::lock_guard<std::mutex> lock(mu);
      auto it = snapshot_requests.find(img.request);
      if (it != snapshot_requests.end()) {
        img.requested = it->second.requested;
        if (--it->second.outstanding == 0) snapshot_requests.erase(it);
      }
    }
    if (!img.status.ok()) record_snapshot_failure(img.status);
    std::lock_guard<std::mutex> lock(sink_mu);
    if (on_snapshot) on_snapshot(std::move(img));
  }

  void record_snapshot_failure(const Status& st) {
    ErrorCallback cb;
    {
      std::lock_guard<std::mutex> lock(mu);
      cb = on_error;
    }
    if (cb) cb(st);
  }

  bool any_k2h_ready() const {
    for (const RingConsumer& c : k2h)
      if (c.ready()) return true;
    return false;
  }

  // CPU backend: after spinning and yielding, sleep on the pump doorbell until a block
  // publishes (see PumpDoorbell) or 5 ms pass (the watchdog's tick).
  void sleep_until_k2h() {
    PumpDoorbell& pd = control->pump;
    // Relaxed: the value only needs to be the one the futex compares against.
    const std::uint32_t bell = std::atomic_ref<std::uint32_t>(pd.bell).load(std::memory_order_relaxed);
    // Relaxed store, then a seq_cst fence: pairs with the fence in wake_host_pump.
    std::atomic_ref<std::uint32_t>(pd.sleeping).store(1, std::memory_order_relaxed);
    std::atomic_thread_fence(std::memory_order_seq_cst);
    if (!any_k2h_ready() && !backend->kernel_finished())
      detail::futex_wait_for(&pd.bell, bell, std::chrono::milliseconds(5));
    // Relaxed: blocks that still see 1 only make one spare wake-up.
    std::atomic_ref<std::uint32_t>(pd.sleeping).store(0, std::memory_order_relaxed);
  }

  // Minimum and maximum heartbeat epoch over all blocks.
  std::pair<std::uint64_t, std::uint64_t> heartbeat_range() const {
    std::uint64_t lo = ~0ull, hi = 0;
    for (std::uint32_t b = 0; b < plan.blocks; ++b) {
      // Relaxed: a progress counter; the watchdog needs no ordering with other data.
      const std::uint64_t e = detail::load_relaxed(heartbeats[b].epoch);
      lo = std::min(lo, e);
      hi = std::max(hi, e);
    }
    return {lo, hi};
  }

  // The smallest heartbeat, acquired: every K2H slot of epochs up to it is visible now
  // (each block stores its heartbeat with release after publishing the epoch's slots).
  std::uint64_t acquire_min_heartbeat() const {
    std::uint64_t lo = ~0ull;
    for (std::uint32_t b = 0; b < plan.blocks; ++b) {
      // Acquire: pairs with the block's store_release of its heartbeat epoch.
      lo = std::min(lo, detail::load_acquire(heartbeats[b].epoch));
    }
    return lo;
  }

  // Callers hold h2k_mu[b] and have checked has_room(), so the publish that follows cannot
  // fail: the record is in the log before the kernel can see the command, hence before
  // its acknowledgement.
  void log_h2k(std::uint32_t b, std::uint16_t opcode, std::uint32_t actor, const Envelope& env) {
    if (!log) return;
    Slot slot{};
    slot.header.seq = h2k[b].position() + 1;
    slot.header.opcode = opcode;
    slot.header.flags = kFlagNone;
    slot.header.actor = actor;
    slot.payload = env;
    std::lock_guard<std::mutex> lock(log_mu);
    if (!log_begun) {
      prestart_h2k.emplace_back(b, slot);
      return;
    }
    // Relaxed: a label for the record (see complete_epoch); it orders nothing.
    log->append(ReplayDirection::kH2K, b, complete_epoch.load(std::memory_order_relaxed), env.epoch, slot);
  }

  // Pump thread: consumes everything block b's K2H ring holds, logging each slot first.
  bool drain_k2h(std::uint32_t b) {
    // Relaxed: the pump's own value; the records' epoch_observed label.
    const std::uint64_t observed = complete_epoch.load(std::memory_order_relaxed);
    bool any = false;
    Slot slot;
    while (k2h[b].try_consume(slot)) {
      if (log) log->append(ReplayDirection::kK2H, b, observed, slot.payload.epoch, slot);
      handle(slot, b);
      any = true;
    }
    return any;
  }

  // Pump thread, after a pass that drained every ring: K2H is complete through `horizon`.
  void advance_horizon(std::uint64_t horizon) {
    // Relaxed: a label for later records; see complete_epoch.
    if (horizon <= complete_epoch.load(std::memory_order_relaxed)) return;
    complete_epoch.store(horizon, std::memory_order_relaxed);
    if (log) log->set_complete_epoch(horizon);
  }

  std::string stalled_blocks(std::uint64_t lo) const {
    std::string out;
    for (std::uint32_t b = 0; b < plan.blocks; ++b) {
      // Relaxed: diagnostics only.
      if (detail::load_relaxed(heartbeats[b].epoch) == lo) {
        if (!out.empty()) out += ",";
        out += std::to_string(b);
      }
    }
    return out;
  }

  void pump_loop() {
    detail::Backoff backoff(256);
    auto last_progress = std::chrono::steady_clock::now();
    auto last_check = last_progress;
    std::uint64_t last_sum = ~0ull;
    bool fault_reported = false;
    for (;;) {
      bool any = false;
      // Read before the pass: the pass drains every slot published up to this epoch.
      std::uint64_t horizon = acquire_min_heartbeat();
      for (std::uint32_t b = 0; b < plan.blocks; ++b) any |= drain_k2h(b);
      advance_horizon(horizon);
      apply_reports();
      retry_releases();
      if (any) backoff.reset();
      const bool finished = !any && backend->kernel_finished();
      if (finished) {
        // Drain once more: slots published right before the kernel returned.
        horizon = acquire_min_heartbeat();
        bool more = false;
        for (std::uint32_t b = 0; b < plan.blocks; ++b) more |= drain_k2h(b);
        advance_horizon(horizon);
        apply_reports();
        if (!more) {
          {
            std::lock_guard<std::mutex> lock(mu);
            kernel_done = true;
          }
          cv.notify_all();
          // Acquire: pairs with shutdown()'s release store, made after the kernel finished.
          if (pump_stop.load(std::memory_order_acquire)) break;
        }
      } else if (pump_stop.load(std::memory_order_acquire)) {  // Acquire: as above.
        // Shutdown gave up waiting on a stuck kernel; nothing more will be drained.
        break;
      }
      const auto now = std::chrono::steady_clock::now();
      if (now - last_check >= std::chrono::milliseconds(5)) {
        last_check = now;
        if (!fault_reported) {
          Status fault = backend->poll_fault();
          if (!fault.ok()) {
            fault_reported = true;
            record_error(fault);
          }
        }
        // Acquire: pairs with block 0's store_release of the grid state.
        const auto state = detail::load_acquire(control->grid.state);
        const auto [lo, hi] = heartbeat_range();
        const std::uint64_t sum = lo * 1000003u + hi;
        // Parked, idle, not yet started (init may be long) or stopped grids owe no heartbeat.
        if (finished || state != kGridRunning || sum != last_sum) {
          last_sum = sum;
          last_progress = now;
        } else if (now - last_progress > options.watchdog_timeout) {
          record_error(Status(
              StatusCode::kWatchdogTimeout,
              "no heartbeat for " + std::to_string(options.watchdog_timeout.count()) +
                  " ms from block(s) " + stalled_blocks(lo) + " of app '" + program->name +
                  "' (stuck in epoch " + std::to_string(lo + 1) + "; grid completed epoch " +
                  std::to_string(lo) + "). An actor's step or message handler is not "
                  "returning; the runtime is stopping. Fix: look for an infinite loop or a "
                  "wait on a message that never comes, or raise the watchdog timeout for "
                  "long epochs"));
          abort_kernel();
          last_progress = now;
        }
      }
      if (any) continue;
      if (finished) {
        std::this_thread::sleep_for(std::chrono::microseconds(200));
      } else if (backend_kind == BackendKind::kCpu && backoff.count() >= 256 + 64) {
        sleep_until_k2h();
      } else {
        backoff.pause();
      }
    }
  }

  // ---- send --------------------------------------------------------------------------------

  Status publish(std::uint32_t actor, std::uint16_t opcode, const void* data, std::size_t bytes,
                 std::uint64_t apply_epoch, std::uint64_t request) {
    const std::uint32_t b = actor < options.num_actors
                                ? detail::block_of_actor(actor, plan.blocks, options.num_actors)
                                : 0;  // out of range: block 0 rejects it with kOpError
    const Envelope env = detail::make_envelope(apply_epoch, request, data, bytes);
    const auto deadline = std::chrono::steady_clock::now() + options.ring_full_timeout;
    detail::Backoff backoff(64);
    std::lock_guard<std::mutex> lock(h2k_mu[b]);
    while (!h2k[b].has_room()) {
      if (std::chrono::steady_clock::now() >= deadline) {
        return Status(StatusCode::kRingFull,
                      "H2K ring of block " + std::to_string(b) + " stayed full (capacity " +
                          std::to_string(options.ring_capacity) + " slots) for " +
                          std::to_string(options.ring_full_timeout.count()) +
                          " ms; the command to actor " + std::to_string(actor) +
                          " was not sent. The kernel is not consuming commands (parked, "
                          "stalled, or commands far in the future block the ring). Fix: resume "
                          "the runtime, raise ring_capacity (--ring-capacity), or send fewer "
                          "commands ahead of time");
      }
      {
        // Acquire: pairs with block 0's store_release of the grid state; a stopped kernel
        // will never drain the ring.
        if (detail::load_acquire(control->grid.state) == kGridStopped)
          return Status(StatusCode::kAborted, "the kernel stopped; command not sent");
      }
      backoff.pause();
    }
    log_h2k(b, opcode, actor, env);
    // Cannot fail: we hold the ring's only producer lock and has_room() said yes.
    (void)h2k[b].try_publish(opcode, kFlagNone, actor, env);
    commands_sent.fetch_add(1, std::memory_order_relaxed);  // Relaxed: statistics only.
    return Status();
  }

  void send(std::uint32_t actor, std::uint16_t opcode, const void* data, std::size_t bytes,
            std::uint64_t apply_epoch, Pending p) {
    std::uint64_t request = 0;
    Status refusal;
    {
      std::lock_guard<std::mutex> lock(mu);
      if (phase == Phase::kStopped) {
        refusal = Status(StatusCode::kFailedPrecondition,
                         "runtime was shut down; commands can no longer be sent");
      } else if (!sticky.ok()) {
        refusal = Status(sticky.code(), "runtime failed earlier: " + sticky.message());
      } else {
        request = next_request++;
        p.actor = actor;
        p.opcode = opcode;
        pending.emplace(request, std::move(p));
      }
    }
    if (!refusal.ok()) {
      complete(p, Reply{refusal, Event{}});
      return;
    }
    Status st = publish(actor, opcode, data, bytes, apply_epoch, request);
    if (!st.ok()) {
      Pending back;
      bool found = false;
      {
        std::lock_guard<std::mutex> lock(mu);
        auto it = pending.find(request);
        if (it != pending.end()) {
          back = std::move(it->second);
          pending.erase(it);
          found = true;
        }
      }
      if (found) complete(back, Reply{st, Event{}});
      return;
    }
    ring_doorbell();
  }
};

// ---- Runtime -----------------------------------------------------------------------------

Runtime::Runtime(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Runtime::~Runtime() { shutdown().ignore(); }

Result<std::unique_ptr<Runtime>> Runtime::create(const Program& program, const void* params,
                                                 std::size_t params_bytes,
                                                 const RuntimeOptions& options) {
  auto impl = std::make_unique<Impl>();
  impl->program = &program;
  impl->options = options;
  if (params_bytes != program.params_bytes) {
    return Status(StatusCode::kInvalidArgument,
                  "params of " + std::to_string(params_bytes) + " bytes given to app '" +
                      program.name + "', which expects " + std::to_string(program.params_bytes) +
                      ". Fix: pass the app's own Params struct");
  }
  if (options.num_actors == 0 || options.num_actors > (1u << 24)) {
    return Status(StatusCode::kInvalidArgument,
                  "actor count " + std::to_string(options.num_actors) +
                      " is out of range. Fix: use 1..16777216 actors");
  }
  if (!ring_capacity_valid(options.ring_capacity)) {
    return Status(StatusCode::kInvalidArgument,
                  "ring capacity " + std::to_string(options.ring_capacity) +
                      " is invalid. Fix: use a power of two between 2 and 1048576");
  }
  impl->params.assign(static_cast<const std::byte*>(params),
                      static_cast<const std::byte*>(params) + params_bytes);
  if (program.check_params != nullptr) {
    if (const char* problem = program.check_params(impl->params.data(), options.num_actors)) {
      return Status(StatusCode::kInvalidArgument,
                    std::string("params rejected by app '") + program.name + "': " + problem);
    }
  }
  impl->layout = program.layout(impl->params.data(), options.num_actors);

  // Backend selection. Chaos mode perturbs CPU worker threads; a GPU schedules on its own.
  std::string note;
  if (options.chaos && options.backend == BackendKind::kCuda) {
    return Status(StatusCode::kInvalidArgument,
                  "chaos mode perturbs the CPU backend's worker threads and cannot run on the "
                  "CUDA backend. Fix: drop --chaos, or use --backend cpu");
  }
  if (options.chaos && options.backend == BackendKind::kAuto) {
    note = "; chaos mode runs on the CPU";
  } else if (options.backend == BackendKind::kCuda) {
    auto cuda = host::make_cuda_backend(options.cuda_device);
    if (!cuda.ok()) return cuda.status();
    impl->backend = std::move(cuda.value());
  } else if (options.backend == BackendKind::kAuto) {
    if (!host::cuda_backend_compiled()) {
      note = "; CUDA backend not built";
    } else if (program.cuda_kernel == nullptr) {
      note = "; app not compiled for CUDA";
    } else {
      auto cuda = host::make_cuda_backend(options.cuda_device);
      if (cuda.ok()) {
        impl->backend = std::move(cuda.value());
      } else {
        note = "; no usable GPU";
      }
    }
  }
  if (!impl->backend) impl->backend = host::make_cpu_backend();
  impl->backend_kind = impl->backend->kind();

  auto plan = impl->backend->plan(program, options.num_actors, options.threads);
  if (!plan.ok()) return plan.status();
  impl->plan = plan.value();
  impl->plan.chaos = options.chaos;
  impl->plan.chaos_seed = options.chaos_seed;
  if (options.chaos) impl->plan.description += ", chaos seed " + std::to_string(options.chaos_seed);
  impl->description = impl->plan.description +
                      (options.backend == BackendKind::kAuto ? ", picked by --backend auto" + note : "");

  host::Backend& be = *impl->backend;
  const std::uint32_t blocks = impl->plan.blocks;
  const ProgramLayout& lay = impl->layout;

  // State arenas: [State][region 0][region 1]..., each 256-byte aligned.
  detail::KernelArgs& a = impl->args;
  std::uint64_t offset = align_up(std::max<std::uint64_t>(lay.state_bytes, 1), detail::kRegionAlign);
  a.region_count = lay.region_count;
  for (std::uint32_t r = 0; r < lay.region_count; ++r) {
    a.region_offset[r] = offset;
    a.region_bytes[r] = lay.region_bytes[r];
    offset += align_up(std::max<std::uint64_t>(lay.region_bytes[r], 1), detail::kRegionAlign);
  }
  impl->state_stride = offset;
  impl->ring_stride = align_up(ring_bytes(options.ring_capacity), 4096);

  auto alloc_hv = [&](host::Buffer& buf, std::size_t bytes) -> Status {
    auto r = be.alloc_host_visible(bytes);
    if (!r.ok()) return r.status();
    buf = std::move(r.value());
    return Status();
  };
  auto alloc_dev = [&](host::Buffer& buf, std::size_t bytes) -> Status {
    auto r = be.alloc_device(bytes);
    if (!r.ok()) return r.status();
    buf = std::move(r.value());
    return Status();
  };
  const std::uint64_t k2k_stride =
      lay.k2k_channels == 0 ? 0 : align_up(detail::kK2KHeaderBytes + lay.k2k_payload_bytes, 64);
  const std::uint64_t k2k_bytes = 2ull * options.num_actors * lay.k2k_channels * k2k_stride;
  if (options.snapshots &&
      (options.chunk_bytes < 256 || (options.chunk_bytes & (options.chunk_bytes - 1)) != 0)) {
    return Status(StatusCode::kInvalidArgument,
                  "chunk size " + std::to_string(options.chunk_bytes) +
                      " is invalid. Fix: use a power of two of at least 256 bytes (default 65536)");
  }
  ImageLayout& img = impl->image;
  img.arena_bytes = impl->state_stride;
  img.inbox_bytes = std::uint64_t{lay.k2k_channels} * k2k_stride;
  img.image_bytes = img.arena_bytes + img.inbox_bytes;
  img.chunk_bytes = options.chunk_bytes;
  img.chunks = static_cast<std::uint32_t>((img.image_bytes + img.chunk_bytes - 1) / img.chunk_bytes);
  img.regions.push_back({"state", 0, lay.state_bytes});
  for (std::uint32_t r = 0; r < lay.region_count; ++r)
    img.regions.push_back({lay.region_names[r], a.region_offset[r], lay.region_bytes[r]});
  if (img.inbox_bytes > 0) img.regions.push_back({"k2k_inbox", img.arena_bytes, img.inbox_bytes});

  PKRT_RETURN_IF_ERROR(alloc_hv(impl->control_buf, sizeof(ControlBlock)));
  PKRT_RETURN_IF_ERROR(alloc_hv(impl->heartbeat_buf, sizeof(BlockHeartbeat) * blocks));
  PKRT_RETURN_IF_ERROR(alloc_hv(impl->h2k_buf, impl->ring_stride * blocks));
  PKRT_RETURN_IF_ERROR(alloc_hv(impl->k2h_buf, impl->ring_stride * blocks));
  PKRT_RETURN_IF_ERROR(alloc_dev(impl->state_buf, impl->state_stride * options.num_actors));
  PKRT_RETURN_IF_ERROR(alloc_dev(impl->k2k_buf, std::max<std::uint64_t>(k2k_bytes, 64)));
  PKRT_RETURN_IF_ERROR(alloc_dev(impl->global_buf, std::max<std::uint64_t>(lay.global_bytes, 64)));
  PKRT_RETURN_IF_ERROR(alloc_dev(impl->grid_buf, sizeof(detail::GridScratch)));
  PKRT_RETURN_IF_ERROR(alloc_dev(impl->lines_buf, sizeof(detail::BlockLine) * blocks));
  PKRT_RETURN_IF_ERROR(alloc_dev(impl->params_buf, std::max<std::size_t>(params_bytes, 1)));
  // Deferred commands: as many per block as its ring holds, so deferring never loses one.
  PKRT_RETURN_IF_ERROR(alloc_dev(impl->deferred_buf, sizeof(Slot) * options.ring_capacity * blocks));
  a.deferred = static_cast<Slot*>(impl->deferred_buf.device());
  a.deferred_capacity = options.ring_capacity;
  if (options.snapshots) {
    a.image_bytes = img.image_bytes;
    a.chunk_bytes = img.chunk_bytes;
    a.chunks = img.chunks;
    a.crc_offset = align_up(img.image_bytes, detail::kRegionAlign);
    a.changed_offset = a.crc_offset + align_up(std::uint64_t{img.chunks} * 4, detail::kRegionAlign);
    a.staging_stride = a.changed_offset + align_up(img.chunks, detail::kRegionAlign);
    PKRT_RETURN_IF_ERROR(alloc_dev(impl->staging_buf, a.staging_stride * options.num_actors));
    PKRT_RETURN_IF_ERROR(alloc_dev(impl->prev_crc_buf, std::uint64_t{img.chunks} * 4 * options.num_actors));
    PKRT_RETURN_IF_ERROR(alloc_dev(impl->actor_flag_buf, 4ull * options.num_actors));
    a.staging = static_cast<std::byte*>(impl->staging_buf.device());
    a.prev_crcs = static_cast<std::uint32_t*>(impl->prev_crc_buf.device());
    a.actor_flags = static_cast<std::uint32_t*>(impl->actor_flag_buf.device());
    impl->mirror.resize(options.num_actors);
  }

  impl->control = static_cast<ControlBlock*>(impl->control_buf.host());
  impl->heartbeats = static_cast<BlockHeartbeat*>(impl->heartbeat_buf.host());
  // Plain store: the kernel is not running yet; the launch orders it.
  impl->control->host.target_epoch = kNoTargetEpoch;
  for (std::uint32_t b = 0; b < blocks; ++b) {
    ring_init(detail::ring_at(static_cast<std::byte*>(impl->h2k_buf.host()), impl->ring_stride, b),
              options.ring_capacity);
    ring_init(detail::ring_at(static_cast<std::byte*>(impl->k2h_buf.host()), impl->ring_stride, b),
              options.ring_capacity);
  }
  if (k2k_bytes > 0) {
    // Every mailbox starts stale (epoch ~0), so an epoch-1 read of a slot nobody wrote in
    // init is empty rather than a zero-length message from actor 0.
    std::vector<std::byte> image(k2k_bytes);
    for (std::uint64_t off = 0; off < k2k_bytes; off += k2k_stride) {
      detail::K2KSlotHeader h{~0ull, 0, 0};
      std::memcpy(image.data() + off, &h, sizeof h);
    }
    PKRT_RETURN_IF_ERROR(be.copy_to_device(impl->k2k_buf.device(), image.data(), k2k_bytes));
  }
  if (params_bytes > 0) {
    PKRT_RETURN_IF_ERROR(be.copy_to_device(impl->params_buf.device(), params, params_bytes));
  }

  a.control = static_cast<ControlBlock*>(impl->control_buf.device());
  a.heartbeats = static_cast<BlockHeartbeat*>(impl->heartbeat_buf.device());
  a.h2k = static_cast<std::byte*>(impl->h2k_buf.device());
  a.k2h = static_cast<std::byte*>(impl->k2h_buf.device());
  a.ring_stride = impl->ring_stride;
  a.state = static_cast<std::byte*>(impl->state_buf.device());
  a.state_stride = impl->state_stride;
  a.k2k = static_cast<std::byte*>(impl->k2k_buf.device());
  a.k2k_channels = lay.k2k_channels;
  a.k2k_slot_stride = k2k_stride;
  a.k2k_payload_bytes = lay.k2k_payload_bytes;
  a.global = static_cast<std::byte*>(impl->global_buf.device());
  a.global_bytes = lay.global_bytes;
  a.grid = static_cast<detail::GridScratch*>(impl->grid_buf.device());
  a.block_lines = static_cast<detail::BlockLine*>(impl->lines_buf.device());
  a.params = impl->params_buf.device();
  a.num_actors = options.num_actors;
  a.num_blocks = blocks;
  a.start_epoch = 0;
  a.run_init = 1;
  a.idle_spin = options.idle_spin;
  a.digest_period = options.digest_period;
  impl->log = options.replay_log;

  impl->h2k_mu = std::make_unique<std::mutex[]>(blocks);
  for (std::uint32_t b = 0; b < blocks; ++b) {
    impl->h2k.emplace_back(
        detail::ring_at(static_cast<std::byte*>(impl->h2k_buf.host()), impl->ring_stride, b));
    impl->k2h.emplace_back(
        detail::ring_at(static_cast<std::byte*>(impl->k2h_buf.host()), impl->ring_stride, b));
  }
  return std::unique_ptr<Runtime>(new Runtime(std::move(impl)));
}

void Runtime::set_event_callback(EventCallback callback) {
  std::lock_guard<std::mutex> lock(impl_->mu);
  impl_->on_event = std::move(callback);
}

void Runtime::set_error_callback(ErrorCallback callback) {
  std::lock_guard<std::mutex> lock(impl_->mu);
  impl_->on_error = std::move(callback);
}

Status Runtime::start() {
  Impl& m = *impl_;
  if (m.phase != Phase::kCreated) {
    return Status(StatusCode::kFailedPrecondition,
                  "start() called twice; a Runtime launches its kernel once. Fix: create a new "
                  "Runtime to run again");
  }
  if (m.log) {
    ReplayRunInfo info;
    info.app = m.program->name;
    info.params = m.params;
    info.backend = backend_name(m.backend_kind);
    info.num_actors = m.options.num_actors;
    info.blocks = m.plan.blocks;
    info.threads_per_block = m.plan.threads_per_block;
    info.ring_capacity = m.options.ring_capacity;
    info.digest_period = m.options.digest_period;
    info.chaos = m.options.chaos;
    info.chaos_seed = m.options.chaos_seed;
    info.start_epoch = m.args.start_epoch;
    info.config_hash = replay_config_hash(*m.program, m.params, m.options.num_actors, m.options.digest_period);
    info.pkrt_version = version();
    info.created_unix_ns = static_cast<std::uint64_t>(
        std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::system_clock::now().time_since_epoch()).count());
    std::lock_guard<std::mutex> lock(m.log_mu);
    PKRT_RETURN_IF_ERROR(m.log->begin_run(info));
    // Relaxed: senders read it only as a label, under log_mu from here on.
    m.complete_epoch.store(m.args.start_epoch, std::memory_order_relaxed);
    m.log->set_complete_epoch(m.args.start_epoch);
    for (const auto& [b, slot] : m.prestart_h2k)
      m.log->append(ReplayDirection::kH2K, b, m.args.start_epoch, slot.payload.epoch, slot);
    m.prestart_h2k.clear();
    m.log_begun = true;
  }
  PKRT_RETURN_IF_ERROR(m.backend->launch(*m.program, m.args, m.plan));
  {
    std::lock_guard<std::mutex> lock(m.mu);
    m.phase = Phase::kRunning;
  }
  m.pump = std::thread([&m] { m.pump_loop(); });
  return Status();
}

Status Runtime::set_target_epoch(std::uint64_t epoch) {
  impl_->set_control(&HostControl::target_epoch, epoch);
  return Status();
}

Status Runtime::pause() {
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    impl_->pause_requested = true;
  }
  impl_->set_control(&HostControl::pause, 1u);
  return Status();
}

Status Runtime::resume() {
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    impl_->pause_requested = false;
  }
  impl_->set_control(&HostControl::pause, 0u);
  return Status();
}

namespace {

Status wait_for(Runtime::Impl& m, std::unique_lock<std::mutex>& lock,
                std::chrono::milliseconds timeout, const std::function<bool()>& done,
                const std::string& what) {
  const bool ok = m.cv.wait_for(lock, timeout, [&] {
    return done() || !m.sticky.ok() || m.kernel_done || m.stopped_event;
  });
  if (done()) return Status();
  if (!m.sticky.ok()) return m.sticky;
  if (m.kernel_done || m.stopped_event) {
    return Status(StatusCode::kAborted, "the kernel stopped at epoch " +
                                            std::to_string(m.parked_epoch) + " before " + what);
  }
  (void)ok;
  return Status(StatusCode::kTimeout, "timed out after " + std::to_string(timeout.count()) +
                                          " ms waiting for " + what);
}

}  // namespace

Status Runtime::run_until(std::uint64_t epoch, std::chrono::milliseconds timeout) {
  Impl& m = *impl_;
  if (m.phase != Phase::kRunning)
    return Status(StatusCode::kFailedPrecondition, "run_until() needs a started runtime");
  {
    std::lock_guard<std::mutex> lock(m.mu);
    if (m.pause_requested) {
      return Status(StatusCode::kFailedPrecondition,
                    "run_until(" + std::to_string(epoch) + ") on a paused runtime would wait forever. "
                    "Fix: call resume() first");
    }
  }
  PKRT_RETURN_IF_ERROR(set_target_epoch(epoch));
  std::unique_lock<std::mutex> lock(m.mu);
  PKRT_RETURN_IF_ERROR(wait_for(m, lock, timeout,
                                [&] { return m.parked_now() && m.parked_epoch >= epoch; },
                                "the grid to reach epoch " + std::to_string(epoch)));
  if (m.parked_epoch > epoch) {
    return Status(StatusCode::kFailedPrecondition,
                  "run_until(" + std::to_string(epoch) + "): the grid had already completed epoch " +
                      std::to_string(m.parked_epoch) + " and is parked there. Fix: call "
                      "set_target_epoch() before start() (or before the grid passes the epoch)");
  }
  return Status();
}

Status Runtime::wait_parked(std::chrono::milliseconds timeout) {
  Impl& m = *impl_;
  std::unique_lock<std::mutex> lock(m.mu);
  return wait_for(m, lock, timeout, [&] { return m.parked_now(); }, "the grid to park");
}

std::future<Reply> Runtime::send(std::uint32_t actor, std::uint16_t opcode, const void* data,
                                 std::size_t bytes, std::uint64_t apply_epoch) {
  Pending p;
  std::future<Reply> f = p.promise.get_future();
  impl_->send(actor, opcode, data, bytes, apply_epoch, std::move(p));
  return f;
}

void Runtime::send(std::uint32_t actor, std::uint16_t opcode, const void* data, std::size_t bytes,
                   std::uint64_t apply_epoch, ReplyCallback callback) {
  Pending p;
  p.callback = std::move(callback);
  impl_->send(actor, opcode, data, bytes, apply_epoch, std::move(p));
}

std::uint64_t Runtime::region_bytes(int region) const {
  if (region < 0) return impl_->layout.state_bytes;
  if (static_cast<std::uint32_t>(region) >= impl_->layout.region_count) return 0;
  return impl_->layout.region_bytes[region];
}

Status Runtime::read_region(std::uint32_t actor, int region, void* out, std::size_t bytes) {
  Impl& m = *impl_;
  if (actor >= m.options.num_actors) {
    return Status(StatusCode::kOutOfRange,
                  "actor " + std::to_string(actor) + " is out of range (app '" + m.program->name +
                      "' has " + std::to_string(m.options.num_actors) + " actors)");
  }
  if (region >= static_cast<int>(m.layout.region_count) || region < -1) {
    return Status(StatusCode::kOutOfRange,
                  "region " + std::to_string(region) + " does not exist (app '" +
                      m.program->name + "' has " + std::to_string(m.layout.region_count) +
                      " named regions; -1 is the State struct)");
  }
  if (bytes > region_bytes(region)) {
    return Status(StatusCode::kInvalidArgument,
                  "asked for " + std::to_string(bytes) + " bytes of a " +
                      std::to_string(region_bytes(region)) + "-byte region");
  }
  // Held through the copy: resume() and set_target_epoch() cannot release the grid mid-copy.
  std::lock_guard<std::mutex> control_lock(m.control_mu);
  {
    std::lock_guard<std::mutex> lock(m.mu);
    const bool quiet = m.phase == Phase::kCreated || m.kernel_done || m.parked_now();
    if (!quiet || m.leaked) {
      return Status(StatusCode::kFailedPrecondition,
                    "actor state can only be read while the grid is parked or stopped. Fix: "
                    "call run_until(epoch) or pause() + wait_parked() first");
    }
  }
  const std::uint64_t off = m.state_stride * actor + (region < 0 ? 0 : m.args.region_offset[region]);
  return m.backend->copy_to_host(out, static_cast<std::byte*>(m.state_buf.device()) + off, bytes);
}

Status Runtime::shutdown() {
  Impl& m = *impl_;
  if (m.phase == Phase::kStopped) return health();
  const bool launched = m.phase == Phase::kRunning;
  if (launched) {
    m.set_control(&HostControl::shutdown, 1u);
  }
  // Never started: nothing runs; commands queued before start() are failed below.
  Status waited = launched ? m.backend->wait_finished(m.options.stop_timeout) : Status();
  if (!waited.ok() && waited.code() == StatusCode::kTimeout) {
    m.abort_kernel();
    waited = m.backend->wait_finished(m.options.stop_timeout);
  }
  // Release: pairs with the pump's acquire load; it exits after a final drain.
  m.pump_stop.store(true, std::memory_order_release);
  if (m.pump.joinable()) m.pump.join();
  if (!waited.ok()) {
    m.record_error(waited);
    if (waited.code() == StatusCode::kTimeout) {
      // Blocks are still running user code: freeing their memory would turn a hang into a
      // crash. Keep everything alive for the rest of the process.
      std::lock_guard<std::mutex> lock(m.mu);
      m.leaked = true;
      for (host::Buffer* b : {&m.control_buf, &m.heartbeat_buf, &m.h2k_buf, &m.k2h_buf,
                              &m.state_buf, &m.k2k_buf, &m.global_buf, &m.grid_buf, &m.lines_buf,
                              &m.params_buf, &m.staging_buf, &m.prev_crc_buf, &m.actor_flag_buf,
                              &m.deferred_buf})
        b->leak();
      (void)m.backend.release();
    }
  }
  std::unordered_map<std::uint64_t, Pending> orphans;
  {
    std::lock_guard<std::mutex> lock(m.mu);
    m.phase = Phase::kStopped;
    m.kernel_done = true;
    orphans.swap(m.pending);
  }
  for (auto& [request, p] : orphans) {
    complete(p, Reply{Status(StatusCode::kAborted,
                             "runtime shut down before actor " + std::to_string(p.actor) +
                                 " answered opcode " + hex_opcode(p.opcode) +
                                 " (its apply epoch was never reached)"),
                      Event{}});
  }
  m.cv.notify_all();
  return health();
}

void Runtime::set_snapshot_sink(SnapshotSink sink) {
  // Waits for a sink call in progress on the pump thread, so the old sink's owner may be
  // destroyed as soon as this returns.
  std::lock_guard<std::mutex> lock(impl_->sink_mu);
  impl_->on_snapshot = std::move(sink);
}

const ImageLayout& Runtime::image_layout() const { return impl_->image; }

namespace {

Status snapshots_disabled() {
  return Status(StatusCode::kFailedPrecondition,
                "snapshots are disabled for this runtime (RuntimeOptions::snapshots = false). Fix: "
                "create it with snapshots enabled");
}

}  // namespace

Result<std::uint64_t> Runtime::snapshot_all(std::uint64_t epoch, bool full) {
  Impl& m = *impl_;
  if (!m.options.snapshots) return snapshots_disabled();
  std::uint64_t id;
  {
    std::lock_guard<std::mutex> lock(m.mu);
    if (m.phase == Phase::kStopped) return Status(StatusCode::kFailedPrecondition, "runtime was shut down");
    if (!m.sticky.ok()) return Status(m.sticky.code(), "runtime failed earlier: " + m.sticky.message());
    if (m.restores_in_flight != 0)
      return Status(StatusCode::kFailedPrecondition,
                    "a live restore is in flight through the staging slots. Fix: wait for its reply first");
    id = m.next_request++;
    m.snapshot_requests[id] = {std::chrono::steady_clock::now(), m.options.num_actors};
  }
  m.update_control([&] {
    // Release (all three): pair with block 0's acquire loads in ControlView::refresh.
    detail::store_release(m.control->host.snapshot_epoch, epoch);
    detail::store_release(m.control->host.snapshot_full, full ? 1u : 0u);
    detail::store_release(m.control->host.snapshot_request, id);
  });
  return id;
}

bool Runtime::cancel_snapshot(std::uint64_t request) {
  Impl& m = *impl_;
  bool withdrawn = false;
  m.update_control([&] {
    // Relaxed: our own last store (control_mu is held); nobody else writes this word.
    if (detail::load_relaxed(m.control->host.snapshot_request) == request) {
      // Release: pairs with block 0's acquire load in ControlView::refresh.
      detail::store_release(m.control->host.snapshot_request, std::uint64_t{0});
      withdrawn = true;
    }
  });
  if (withdrawn) {
    std::lock_guard<std::mutex> lock(m.mu);
    m.snapshot_requests.erase(request);
  }
  return withdrawn;
}

Result<std::uint64_t> Runtime::snapshot_actor(std::uint32_t actor, bool full, std::uint64_t apply_epoch) {
  Impl& m = *impl_;
  if (!m.options.snapshots) return snapshots_disabled();
  if (actor >= m.options.num_actors)
    return Status(StatusCode::kOutOfRange, "actor " + std::to_string(actor) + " is out of range (app has " +
                                               std::to_string(m.options.num_actors) + " actors)");
  std::uint64_t id;
  {
    std::lock_guard<std::mutex> lock(m.mu);
    if (m.phase == Phase::kStopped) return Status(StatusCode::kFailedPrecondition, "runtime was shut down");
    if (m.restores_in_flight != 0)
      return Status(StatusCode::kFailedPrecondition,
                    "a live restore is in flight through the staging slots. Fix: wait for its reply first");
    id = m.next_request++;
    m.snapshot_requests[id] = {std::chrono::steady_clock::now(), 1};
  }
  const SnapshotRequestData req{full ? 1u : 0u};
  Status st = m.publish(actor, kOpSnapshotActor, &req, sizeof req, apply_epoch, id);
  if (!st.ok()) {
    std::lock_guard<std::mutex> lock(m.mu);
    m.snapshot_requests.erase(id);
    return st;
  }
  m.ring_doorbell();
  return id;
}

Status Runtime::restore_before_start(std::uint64_t epoch, const std::vector<std::vector<std::byte>>& images) {
  Impl& m = *impl_;
  if (m.phase != Phase::kCreated)
    return Status(StatusCode::kFailedPrecondition, "restore_before_start() must come before start()");
  if (images.size() != m.options.num_actors) {
    return Status(StatusCode::kInvalidArgument,
                  std::to_string(images.size()) + " images for " + std::to_string(m.options.num_actors) +
                      " actors. Fix: restore every actor from the same checkpoint epoch");
  }
  const ImageLayout& img = m.image;
  for (std::uint32_t a = 0; a < images.size(); ++a) {
    if (images[a].size() != img.image_bytes) {
      return Status(StatusCode::kInvalidArgument,
                    "image of actor " + std::to_string(a) + " has " + std::to_string(images[a].size()) +
                        " bytes; this runtime's actors need " + std::to_string(img.image_bytes) +
                        ". Fix: restore with the same app parameters and actor count as the checkpoint");
    }
    auto* arena = static_cast<std::byte*>(m.state_buf.device()) + m.state_stride * a;
    PKRT_RETURN_IF_ERROR(m.backend->copy_to_device(arena, images[a].data(), img.arena_bytes));
    if (img.inbox_bytes > 0) {
      auto* inbox = static_cast<std::byte*>(m.k2k_buf.device()) +
                    ((epoch & 1u) * m.options.num_actors + a) * img.inbox_bytes;
      PKRT_RETURN_IF_ERROR(m.backend->copy_to_device(inbox, images[a].data() + img.arena_bytes, img.inbox_bytes));
    }
    if (m.options.snapshots) {
      m.mirror[a] = std::make_shared<Impl::MirrorImage>();
      m.mirror[a]->bytes = images[a];
    }
  }
  m.args.start_epoch = epoch;
  m.args.run_init = 0;
  // Plain stores: the kernel has not been launched; the launch orders them.
  m.control->grid.epoch = epoch;
  return Status();
}

std::future<Reply> Runtime::restore_actor(std::uint32_t actor, const std::vector<std::byte>& image,
                                          std::uint64_t source_epoch, std::uint64_t apply_epoch) {
  Impl& m = *impl_;
  auto fail = [](Status st) {
    std::promise<Reply> p;
    p.set_value(Reply{std::move(st), Event{}});
    return p.get_future();
  };
  if (!m.options.snapshots) return fail(snapshots_disabled());
  if (actor >= m.options.num_actors)
    return fail(Status(StatusCode::kOutOfRange, "actor " + std::to_string(actor) + " is out of range"));
  if (image.size() != m.image.image_bytes)
    return fail(Status(StatusCode::kInvalidArgument, "image of " + std::to_string(image.size()) +
                                                         " bytes; actors need " + std::to_string(m.image.image_bytes)));
  {
    // Snapshots and live restores share the staging slots: one kind at a time.
    std::lock_guard<std::mutex> lock(m.mu);
    if (!m.snapshot_requests.empty() || !m.pending_releases_empty())
      return fail(Status(StatusCode::kFailedPrecondition,
                         "a snapshot is in flight and may be using the staging slot. Fix: wait for "
                         "pending snapshots (CheckpointManager::flush) before a live restore"));
    ++m.restores_in_flight;
  }
  // The slot is free (no snapshot in flight, the last one released); the kernel does not
  // touch it until the restore command applies.
  auto* slot = static_cast<std::byte*>(m.staging_buf.device()) + m.args.staging_stride * actor;
  Status st = m.backend->copy_to_device(slot, image.data(), image.size());
  if (!st.ok()) {
    std::lock_guard<std::mutex> lock(m.mu);
    --m.restores_in_flight;
    return fail(st);
  }
  auto done = std::make_shared<std::promise<Reply>>();
  std::future<Reply> f = done->get_future();
  Impl* impl = impl_.get();
  send(actor, kOpRestoreActor, &source_epoch, sizeof source_epoch, apply_epoch, [impl, done](const Reply& r) {
    {
      std::lock_guard<std::mutex> lock(impl->mu);
      --impl->restores_in_flight;
    }
    done->set_value(r);
  });
  return f;
}

RuntimeStats Runtime::stats() const {
  RuntimeStats s;
  s.epoch = epoch();
  // Relaxed (all four): statistics counters, see Impl.
  s.commands_sent = impl_->commands_sent.load(std::memory_order_relaxed);
  s.events_received = impl_->events_received.load(std::memory_order_relaxed);
  s.replies = impl_->replies.load(std::memory_order_relaxed);
  s.errors = impl_->errors.load(std::memory_order_relaxed);
  s.blocks = impl_->plan.blocks;
  s.threads_per_block = impl_->plan.threads_per_block;
  return s;
}

std::uint64_t Runtime::epoch() const {
  // Relaxed: a progress value; callers that need the state behind it wait on a park.
  return detail::load_relaxed(impl_->control->grid.epoch);
}

BackendKind Runtime::backend() const { return impl_->backend_kind; }
const std::string& Runtime::backend_description() const { return impl_->description; }
const Program& Runtime::program() const { return *impl_->program; }
const RuntimeOptions& Runtime::options() const { return impl_->options; }
const ProgramLayout& Runtime::layout() const { return impl_->layout; }
const std::vector<std::byte>& Runtime::params() const { return impl_->params; }

Status Runtime::health() const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  return impl_->sticky;
}

}  // namespace pkrt
