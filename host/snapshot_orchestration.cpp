// host/snapshot_orchestration.cpp: the host's half of the snapshot protocol
// (kernels/snapshot.hpp) and restores.
//
// Snapshot: the host asks (snapshot_all through the control block, snapshot_actor as an H2K
// command naming a staging-pool slot); the kernel copies the actor's image into the slot with
// chunk CRCs and answers kOpSnapshotReady. The pump then copies the changed chunks into the
// host mirror, verifies them against the device's CRCs, returns the slot to the pool (or
// posts the next wave of a snapshot_all; kernels/snapshot.hpp) and hands the image to the
// sink. The global region's slot and the queued-commands areas sit outside the pool and are
// released to the device (kOpReleaseStaging, retried every pass while the ring is full, never
// given up).
// Restore: before start (restore_before_start: straight into the arenas and K2K inboxes) or
// live (restore_actor: upload into a pool slot, then kOpRestoreActor at an epoch boundary).
#include "host/runtime_impl.hpp"
#include "host/nvtx.hpp"

#include <pkrt/checkpoint_set.hpp>
#include <pkrt/crc32.hpp>
#include <pkrt/kernels/crc32.hpp>

#include <algorithm>

namespace pkrt {
namespace {

std::string snapshot_subject(std::uint32_t actor) {
  if (actor == kGlobalRegionActor) return "the global region";
  if (actor == kQueuedCommandsActor) return "the queued commands";
  return "actor " + std::to_string(actor);
}

}  // namespace

void Runtime::Impl::handle_queued_commands(const Event& ev, const Status& refused) {
  const std::uint32_t block = ev.block;
  std::vector<Command> mine;
  Status st = refused;
  if (st.ok()) {
    // Copied now, on the pump thread, before the area is released for the next cut.
    const auto ready = ev.as<QueuedCommandsData>();
    const std::uint64_t capacity = 2ull * args.deferred_capacity;
    if (ready.count > capacity || ready.deferred > ready.count) {
      st = Status(StatusCode::kInternal, "block " + std::to_string(block) + " reports " + std::to_string(ready.count) +
                                             " queued commands; its area holds " + std::to_string(capacity));
    } else {
      std::vector<Slot> slots(ready.count);
      const auto* area = static_cast<const std::byte*>(queued_buf.device()) + capacity * sizeof(Slot) * block;
      const host::HostCopy copy[] = {{slots.data(), area, slots.size() * sizeof(Slot)}};
      if (!slots.empty()) st = backend->gather_to_host(copy);
      if (st.ok()) {
        // The deferred list is in no order; it applies by (apply epoch, sending order). The
        // ring sequence is unique, so the order is total and std::sort suffices (stable_sort's
        // temporary buffer ignores Slot's 64-byte alignment: UBSan caught it).
        std::sort(slots.begin(), slots.begin() + ready.deferred, [](const Slot& a, const Slot& b) {
          return a.payload.epoch != b.payload.epoch ? a.payload.epoch < b.payload.epoch : a.header.seq < b.header.seq;
        });
        for (const Slot& s : slots) {
          // Runtime-internal commands (staging releases, snapshot and restore requests, pings)
          // belong to this process, not to the run's history.
          if (s.header.opcode < kUserOpcodeBase) continue;
          Command c;
          c.actor = s.header.actor;
          c.opcode = s.header.opcode;
          c.apply_epoch = s.payload.epoch;
          std::memcpy(c.data.data(), s.payload.data, kEnvelopeDataBytes);
          mine.push_back(c);
        }
      }
    }
    pending_releases.push_back({block, kQueuedCommandsActor});
    retry_releases();
  }
  SnapshotImage img;
  bool complete = false;
  {
    std::lock_guard<std::mutex> lock(mu);
    auto it = snapshot_requests.find(ev.request);
    if (it == snapshot_requests.end() || it->second.queued_blocks_left == 0) return;  // failed or withdrawn
    SnapshotRequest& r = it->second;
    r.queued.insert(r.queued.end(), mine.begin(), mine.end());
    if (r.queued_status.ok() && !st.ok()) r.queued_status = st;
    if (--r.queued_blocks_left == 0) {
      complete = true;
      img.status = r.queued_status;
      if (img.status.ok()) {
        img.image = std::make_shared<const std::vector<std::byte>>(encode_queued_commands(r.queued));
        img.crc = crc32(img.image->data(), img.image->size());
        img.changed.resize((img.image->size() + image.chunk_bytes - 1) / image.chunk_bytes);
        for (std::uint32_t c = 0; c < img.changed.size(); ++c) img.changed[c] = c;
      }
    }
  }
  if (!complete) return;
  img.actor = kQueuedCommandsActor;
  img.epoch = ev.epoch;
  img.request = ev.request;
  img.copied = std::chrono::steady_clock::now();
  deliver_snapshot(std::move(img));
}

void Runtime::Impl::handle_snapshot(const Event& ev) {
  const auto ready = ev.as<SnapshotReadyData>();
  SnapshotImage img;
  img.actor = ev.actor;
  img.epoch = ev.epoch;
  img.request = ev.request;
  img.crc = ready.crc;
  img.stall_ns = ready.stall_ns;
  // The stall happened on the device; the host learns its length only now.
  static const host::NvtxName kStallName("snapshot stall (device ns)");
  host::nvtx_mark(kStallName, ready.stall_ns);
  {
    static const host::NvtxName kCopyName("snapshot D2H copy");
    const host::NvtxRange range(kCopyName);
    img.status = copy_snapshot(ev.actor, ready, img);
  }
  // Even after a failed copy, the slot is done with: back to the pool (or on to the next
  // wave), or released to the device, which must not stay blocked on it.
  if (ev.actor < options.num_actors) {
    pool_image_copied(ev.request);
  } else if (ev.actor == kGlobalRegionActor && has_global_snapshots()) {
    pending_releases.push_back({block_of(ev.actor), ev.actor});
  }
  retry_releases();
  img.copied = std::chrono::steady_clock::now();
  deliver_snapshot(std::move(img));
}

void Runtime::Impl::handle_snapshot_refusal(const Event& ev) {
  const auto err = ev.as<ErrorData>();
  if (ev.actor < options.num_actors) pool_image_copied(ev.request);  // the slot was never written
  SnapshotImage failed;
  failed.actor = ev.actor;
  failed.epoch = ev.epoch;
  failed.request = ev.request;
  failed.status = Status(static_cast<StatusCode>(err.code),
                         "snapshot of " + snapshot_subject(ev.actor) + " at epoch " + std::to_string(ev.epoch) +
                             " refused: " +
                             (err.code == static_cast<std::uint16_t>(StatusCode::kFailedPrecondition)
                                  ? "its staging slot still holds an unreleased snapshot"
                                  : status_code_name(static_cast<StatusCode>(err.code))));
  deliver_snapshot(std::move(failed));
}

// ---- the staging pool ----------------------------------------------------------------------

void Runtime::Impl::reset_pool_locked() {
  // Handed out from the back: slot 0 first.
  pool.free.resize(args.staging_slots);
  for (std::uint32_t i = 0; i < args.staging_slots; ++i) pool.free[i] = args.staging_slots - 1 - i;
  pool.all_request = 0;
  pool.hold = false;
  pool.wave_left = 0;
  pool.withdrawn = 0;
  pool.withdrawn_left = 0;
  restoring.clear();
  ++pool.resets;
}

Result<std::uint32_t> Runtime::Impl::take_pool_slot_locked(const char* what) {
  PKRT_RETURN_IF_ERROR(pool_refusal(/*whole=*/false, what));
  const std::uint32_t slot = pool.free.back();
  pool.free.pop_back();
  return slot;
}

Status Runtime::Impl::pool_refusal(bool whole, const char* what) const {
  const std::uint64_t holder = pool.all_request != 0 ? pool.all_request : pool.withdrawn;
  if (holder != 0)
    return Status(StatusCode::kFailedPrecondition,
                  std::string(what) + " refused: snapshot_all request " + std::to_string(holder & ~kSnapshotRequestTag) +
                      " is using the staging pool (" + std::to_string(args.staging_slots) +
                      " actor images at a time) until its last image is copied. Fix: wait for its images "
                      "(the snapshot sink; CheckpointManager::flush) first");
  const std::size_t held = args.staging_slots - pool.free.size();
  if (whole && held != 0)
    return Status(StatusCode::kFailedPrecondition,
                  std::string(what) + " refused: " + std::to_string(held) +
                      " single-actor snapshot(s) or live restore(s) hold staging slots, and a snapshot_all "
                      "needs the whole pool. Fix: wait for their images or replies first");
  if (!whole && pool.free.empty())
    return Status(StatusCode::kFailedPrecondition,
                  std::string(what) + " refused: all " + std::to_string(args.staging_slots) +
                      " staging slots hold images that are not copied or restored yet. Fix: wait for "
                      "them, or give the runtime a larger pool (RuntimeOptions::staging_bytes; one slot is " +
                      std::to_string(args.staging_stride) + " bytes)");
  return Status();
}

void Runtime::Impl::pool_image_copied(std::uint64_t request) {
  std::uint32_t first = 0, last = 0, wave = 0;
  bool finished = false;
  {
    std::lock_guard<std::mutex> lock(mu);
    if (pool.all_request != 0 && request == pool.all_request) {
      // The held grid's progress (pump thread, like the watchdog that reads it).
      last_progress = std::chrono::steady_clock::now();
      if (pool.wave_left == 0 || --pool.wave_left != 0) return;
      if (pool.wave_last >= options.num_actors) {
        finished = true;
      } else {
        // The next wave, in the same slots (all copied now).
        pool.wave_first = pool.wave_last;
        pool.wave_last = static_cast<std::uint32_t>(
            std::min<std::uint64_t>(options.num_actors, std::uint64_t{pool.wave_first} + args.staging_slots));
        pool.wave_left = pool.wave_last - pool.wave_first;
        first = pool.wave_first;
        last = pool.wave_last;
        wave = ++pool.wave;
      }
    } else if (pool.withdrawn != 0 && request == pool.withdrawn) {
      if (pool.withdrawn_left > 0 && --pool.withdrawn_left == 0) reset_pool_locked();
      return;
    } else {
      // A single-actor snapshot: its slot is free again.
      auto it = snapshot_requests.find(request);
      if (it != snapshot_requests.end() && it->second.actor != kNoActor) pool.free.push_back(it->second.slot);
      return;
    }
  }
  update_control([&] {
    // Relaxed: control_mu is held, so no other host thread stores these words now; the last
    // store was ours or snapshot_all's, both under control_mu.
    if (detail::load_relaxed(control->host.snapshot_request) != request) return;  // withdrawn meanwhile
    if (finished) {
      // Release: pairs with block 0's acquire load in ControlView::refresh. The request word
      // goes back to 0 (and the hold with it) before the pool is free for the next request,
      // so block 0 never pairs this request with the next one's flags and waves.
      detail::store_release(control->host.snapshot_request, std::uint64_t{0});
      return;
    }
    // Relaxed: as above.
    const std::uint32_t flags = detail::load_relaxed(control->host.snapshot_flags);
    // The global region and the queued commands came with the first wave. Release (all):
    // pair with block 0's acquire loads in ControlView::refresh, which loads the wave before
    // the flags and its range.
    detail::store_release(control->host.snapshot_flags, flags & ~(kSnapshotAllGlobal | kSnapshotAllCommands));
    detail::store_release(control->host.snapshot_wave_first, first);
    detail::store_release(control->host.snapshot_wave_last, last);
    detail::store_release(control->host.snapshot_wave, wave);
  });
  if (finished) {
    std::lock_guard<std::mutex> lock(mu);
    if (pool.all_request == request) reset_pool_locked();
  }
}

bool Runtime::Impl::reclaim_withdrawn_locked() {
  if (pool.withdrawn == 0) return true;
  // Acquire: pairs with block 0's release store of control_generation, made after its latch
  // of any request it saw before that generation (latched_snapshot).
  const std::uint32_t seen = detail::load_acquire(control->grid.control_generation);
  // Relaxed: ordered by the acquire above.
  const std::uint64_t latched = detail::load_relaxed(control->grid.latched_snapshot);
  // Before start() no block has seen the request; after the kernel ended none will.
  if (phase == RuntimePhase::kCreated || kernel_done ||
      (static_cast<std::int32_t>(seen - pool.withdrawn_generation) >= 0 && latched != pool.withdrawn)) {
    // Block 0 acted on the withdrawal without latching the request: it never will.
    reset_pool_locked();
    return true;
  }
  return false;
}

void Runtime::Impl::wait_for_withdrawn_pool(std::unique_lock<std::mutex>& lock) {
  // A request withdrawn a moment ago: block 0 acts on the withdrawal within a round (a parked
  // or idle grid is woken by it) and the images of a request it had latched follow at once,
  // so a new request right after a cancel waits that long (bounded) rather than failing.
  // On the pump thread (a sink or callback) nobody else would copy the images it waits for.
  if (requests->on_pump_thread()) {
    reclaim_withdrawn_locked();
    return;
  }
  const auto deadline = std::chrono::steady_clock::now() + options.ring_full_timeout;
  while (!reclaim_withdrawn_locked() && std::chrono::steady_clock::now() < deadline) {
    lock.unlock();
    std::this_thread::sleep_for(std::chrono::microseconds(50));
    lock.lock();
  }
}

void Runtime::Impl::pool_housekeeping() {
  // Relaxed: a hint; the state itself is read under mu.
  if (!pool_housekeeping_due.load(std::memory_order_relaxed)) return;
  // Relaxed: a label written by the pump (this thread).
  const std::uint64_t done_epoch = complete_epoch.load(std::memory_order_relaxed);
  std::lock_guard<std::mutex> lock(mu);
  reclaim_withdrawn_locked();
  std::erase_if(restoring, [&](const RestoringSlot& r) {
    if (r.epoch > done_epoch && !kernel_done) return false;
    pool.free.push_back(r.slot);
    return true;
  });
  // Relaxed: a hint for this thread's next loop; the state is re-read under mu.
  pool_housekeeping_due.store(pool.withdrawn != 0 || !restoring.empty(), std::memory_order_relaxed);
}

void Runtime::Impl::retry_releases() {
  if (pending_releases.empty()) return;
  std::vector<PendingRelease> left;
  for (const PendingRelease& r : pending_releases) {
    const Envelope env = detail::make_envelope(0, 0, nullptr, 0);
    // One attempt each: the pump must never wait on a full ring (the kernel may be waiting
    // on the pump); what does not fit is retried next pass.
    if (!publish_internal(r.block, kOpReleaseStaging, r.actor, env, /*wait=*/false).ok()) left.push_back(r);
  }
  pending_releases.swap(left);
  std::lock_guard<std::mutex> lock(mu);
  pending_release_count = pending_releases.size();
}

Runtime::Impl::SnapshotSlot Runtime::Impl::snapshot_slot(std::uint32_t actor, std::uint32_t pool_slot) const {
  if (actor == kGlobalRegionActor) {
    return {static_cast<const std::byte*>(global_staging_buf.device()), args.global_bytes, args.global_chunks,
            args.global_crc_offset, args.global_changed_offset, options.num_actors};
  }
  return {static_cast<const std::byte*>(staging_buf.device()) + args.staging_stride * pool_slot,
          image.image_bytes,
          image.chunks,
          args.crc_offset,
          args.changed_offset,
          actor};
}

Status Runtime::Impl::copy_snapshot(std::uint32_t actor, const SnapshotReadyData& ready, SnapshotImage& img) {
  const bool known = actor < options.num_actors || (actor == kGlobalRegionActor && has_global_snapshots());
  if (!known)
    return Status(StatusCode::kInternal, "the kernel reported a snapshot of actor " + std::to_string(actor) +
                                             ", which has no staging slot");
  const std::uint32_t pool_slot = snapshot_ready_slot(ready.flags);
  if (actor != kGlobalRegionActor && pool_slot >= args.staging_slots)
    return Status(StatusCode::kInternal, "the kernel reported a snapshot of actor " + std::to_string(actor) +
                                             " in staging slot " + std::to_string(pool_slot) + "; the pool has " +
                                             std::to_string(args.staging_slots));
  const SnapshotSlot s = snapshot_slot(actor, pool_slot);
  const std::string what = snapshot_subject(actor);
  // Every failure below drops the mirror: the device has moved its chunk CRCs on to this
  // snapshot either way, so the next one must copy (and check) the whole image.
  std::shared_ptr<MirrorImage>& mp = mirror[s.index];
  if (ready.image_bytes != s.image_bytes || ready.chunks != s.chunks) {
    mp.reset();
    return Status(StatusCode::kInternal, "snapshot of " + what + " reports a layout the host did not allocate");
  }
  // Two round trips per snapshot on CUDA: the changed flags with the chunk CRCs (a delta's
  // check needs them), then every changed run of chunks in one gather.
  std::vector<std::uint8_t> changed(s.chunks);
  std::vector<std::uint32_t> crcs(s.chunks);
  const host::HostCopy tables[] = {
      {changed.data(), s.slot + s.changed_offset, s.chunks},
      {crcs.data(), s.slot + s.crc_offset, crcs.size() * sizeof(std::uint32_t)},
  };
  if (Status st = backend->gather_to_host(tables); !st.ok()) {
    mp.reset();
    return st;
  }
  bool whole = false;
  if (!mp || mp->bytes.size() != s.image_bytes) {
    // No valid mirror (first snapshot, or the last copy failed): take every chunk; the
    // staging slot always holds the whole image.
    mp = std::make_shared<MirrorImage>();
    mp->bytes.assign(s.image_bytes, std::byte{0});
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
  // Coalesce runs of changed chunks into one region each.
  std::vector<host::HostCopy> runs;
  for (std::uint32_t c = 0; c < s.chunks;) {
    if (changed[c] == 0) {
      ++c;
      continue;
    }
    std::uint32_t end = c;
    while (end < s.chunks && changed[end] != 0) img.changed.push_back(end++);
    const std::uint64_t off = std::uint64_t{c} * image.chunk_bytes;
    const std::uint64_t len = std::min<std::uint64_t>(std::uint64_t{end} * image.chunk_bytes, s.image_bytes) - off;
    runs.push_back({m.data() + off, s.slot + off, len});
    img.bytes_copied += len;
    c = end;
  }
  if (Status copied = backend->gather_to_host(runs); !copied.ok()) {
    mp.reset();  // partly updated: the next snapshot of this actor copies everything
    return copied;
  }
  if (!mirror_matches_device(s, m, crcs, img.changed, whole, ready.crc)) {
    mp.reset();  // the next snapshot of this actor copies everything again
    return Status(StatusCode::kCorruptData,
                  "snapshot of " + what + " at epoch " + std::to_string(img.epoch) +
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

// Whether the host mirror holds the image the device CRC'd. When most chunks changed, one CRC
// of the whole mirror. A delta checks only what it copied: each copied chunk against the
// device's chunk CRC, and the device's chunk CRCs against its image CRC (unchanged chunks
// have the CRCs the mirror was verified with before), so a delta costs the host work
// proportional to what changed.
bool Runtime::Impl::mirror_matches_device(const SnapshotSlot& s, const std::vector<std::byte>& m,
                                          const std::vector<std::uint32_t>& crcs,
                                          const std::vector<std::uint32_t>& copied, bool whole,
                                          std::uint32_t image_crc) {
  if (whole || copied.size() * 4 >= s.chunks) return crc32(m.data(), m.size()) == image_crc;
  if (crc::crc32_combine_chunks(crcs.data(), s.image_bytes, image.chunk_bytes) != image_crc) return false;
  for (std::uint32_t c : copied) {
    const std::uint64_t off = std::uint64_t{c} * image.chunk_bytes;
    const std::uint64_t len = std::min<std::uint64_t>(image.chunk_bytes, s.image_bytes - off);
    if (crc32(m.data() + off, len) != crcs[c]) return false;
  }
  return true;
}

namespace {
// Whether this thread is inside the snapshot sink (call_sink): sink_mu is held, and taking it
// again would deadlock.
thread_local bool tls_in_sink = false;
}  // namespace

void Runtime::Impl::call_sink(std::vector<SnapshotImage> images) {
  if (tls_in_sink) {
    std::lock_guard<std::mutex> lock(mu);
    for (SnapshotImage& img : images) sink_backlog.push_back(std::move(img));
    return;
  }
  std::lock_guard<std::mutex> lock(sink_mu);
  struct InSink {
    InSink() { tls_in_sink = true; }
    ~InSink() { tls_in_sink = false; }
  } in_sink;
  while (!images.empty()) {
    for (SnapshotImage& img : images)
      if (on_snapshot) on_snapshot(std::move(img));
    images.clear();
    std::lock_guard<std::mutex> backlog_lock(mu);
    images.swap(sink_backlog);
  }
}

void Runtime::Impl::deliver_snapshot(SnapshotImage img) {
  {
    std::lock_guard<std::mutex> lock(mu);
    auto it = snapshot_requests.find(img.request);
    if (it != snapshot_requests.end()) {
      img.requested = it->second.requested;
      const std::size_t index = image_index(img.actor);
      if (index < it->second.arrived.size()) it->second.arrived[index] = true;
      if (--it->second.outstanding == 0) snapshot_requests.erase(it);
    } else if (failed_snapshot_requests.count(img.request) != 0) {
      return;  // already answered with a failure; its staging slot was released by the caller
    }
  }
  if (!img.status.ok()) report_error(img.status);
  std::vector<SnapshotImage> one;
  one.push_back(std::move(img));
  call_sink(std::move(one));
}

void Runtime::Impl::fail_open_snapshots(const Status& why) {
  std::vector<SnapshotImage> failed;
  {
    std::lock_guard<std::mutex> lock(mu);
    for (const auto& [request, open] : snapshot_requests) {
      // Past the actors, arrived[] has the global region and the queued commands (image_index);
      // only those the request asked for are owed.
      for (std::uint32_t a = 0; a < options.num_actors + 2; ++a) {
        const std::uint32_t actor =
            a < options.num_actors ? a : (a == options.num_actors ? kGlobalRegionActor : kQueuedCommandsActor);
        const std::size_t i = image_index(actor);
        const bool asked = open.actor == kNoActor && i < open.arrived.size() &&
                           (actor != kGlobalRegionActor || open.with_global) &&
                           (actor != kQueuedCommandsActor || open.with_queued);
        const bool owed = open.actor == kNoActor ? asked && !open.arrived[i] : actor == open.actor;
        if (!owed) continue;
        SnapshotImage img;
        img.status =
            Status(why.code(), "snapshot of " + snapshot_subject(actor) + " will not be served: " + why.message());
        img.actor = actor;
        img.request = request;
        img.requested = open.requested;
        failed.push_back(std::move(img));
      }
      failed_snapshot_requests.insert(request);
    }
    snapshot_requests.clear();
    // Nothing in flight will be copied: the grid failed or stops.
    reset_pool_locked();
  }
  call_sink(std::move(failed));
}

// ---- Runtime's snapshot API -----------------------------------------------------------------

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

Result<std::uint64_t> Runtime::snapshot_all(std::uint64_t epoch, bool full, SnapshotScope scope) {
  Impl& m = *impl_;
  if (!m.options.snapshots) return snapshots_disabled();
  // An app without a global region has none to snapshot.
  const bool global = scope != SnapshotScope::kActors && m.has_global_snapshots();
  const bool queued = scope == SnapshotScope::kWholeRun;
  const std::uint32_t images = m.options.num_actors + (global ? 1u : 0u) + (queued ? 1u : 0u);
  std::uint64_t id;
  std::uint32_t wave = 0, wave_last = 0;
  bool hold = false;
  {
    std::unique_lock<std::mutex> lock(m.mu);
    if (m.phase == RuntimePhase::kStopped) return Status(StatusCode::kFailedPrecondition, "runtime was shut down");
    if (!m.sticky.ok()) return Status(m.sticky.code(), "runtime failed earlier: " + m.sticky.message());
    m.wait_for_withdrawn_pool(lock);
    PKRT_RETURN_IF_ERROR(m.pool_refusal(/*whole=*/true, "snapshot_all"));
    id = kSnapshotRequestTag | m.next_snapshot++;
    static const host::NvtxName kRequestName("snapshot request (all actors, epoch)");
    host::nvtx_mark(kRequestName, epoch);
    Impl::SnapshotRequest& r = m.snapshot_requests[id];
    r.requested = std::chrono::steady_clock::now();
    r.outstanding = images;
    r.actor = kNoActor;
    r.arrived.assign(std::size_t{m.options.num_actors} + 2, false);
    r.with_global = global;
    r.with_queued = queued;
    r.queued_blocks_left = queued ? m.plan.blocks : 0;
    // The whole pool: the first wave is actors [0, slots); more actors than slots hold the
    // grid at the cut for the next waves (pool_image_copied).
    Impl::StagingPool& pool = m.pool;
    pool.free.clear();
    pool.all_request = id;
    pool.hold = m.options.num_actors > m.args.staging_slots;
    pool.wave_first = 0;
    pool.wave_last = std::min(m.options.num_actors, m.args.staging_slots);
    pool.wave_left = pool.wave_last;
    wave = ++pool.wave;
    hold = pool.hold;
    wave_last = pool.wave_last;
  }
  m.update_control([&] {
    // Release (all): pair with block 0's acquire loads in ControlView::refresh, which loads
    // the request first and the wave next.
    detail::store_release(m.control->host.snapshot_epoch, epoch);
    detail::store_release(m.control->host.snapshot_flags, (full ? kSnapshotAllFull : 0u) |
                                                             (global ? kSnapshotAllGlobal : 0u) |
                                                             (queued ? kSnapshotAllCommands : 0u) |
                                                             (hold ? kSnapshotAllHold : 0u));
    detail::store_release(m.control->host.snapshot_wave_first, std::uint32_t{0});
    detail::store_release(m.control->host.snapshot_wave_last, wave_last);
    detail::store_release(m.control->host.snapshot_wave, wave);
    detail::store_release(m.control->host.snapshot_request, id);
  });
  return id;
}

bool Runtime::cancel_snapshot(std::uint64_t request) {
  Impl& m = *impl_;
  bool withdrawn = false;
  m.update_control([&] {
    // Lock order control_mu (held here), then mu, as update_control itself: the check, the
    // withdrawal and the pool's bookkeeping are one step against the pump's
    // pool_image_copied, which takes mu, and its wave posts, which take control_mu.
    std::lock_guard<std::mutex> lock(m.mu);
    // Relaxed: control_mu is held, so no other host thread stores this word now.
    if (detail::load_relaxed(m.control->host.snapshot_request) != request) return;
    Impl::StagingPool& pool = m.pool;
    const bool holds_pool = pool.all_request == request;
    // An image of it already copied: the grid latched it; it cannot be withdrawn.
    if (holds_pool && (pool.wave_first != 0 || pool.wave_left != pool.wave_last - pool.wave_first)) return;
    // Relaxed: block 0's report; a latch after this read is caught by the pool's reclaim
    // (reclaim_withdrawn_locked), which waits for block 0 to act on this change.
    if (detail::load_relaxed(m.control->grid.latched_snapshot) == request) return;
    // Release: pairs with block 0's acquire load in ControlView::refresh.
    detail::store_release(m.control->host.snapshot_request, std::uint64_t{0});
    withdrawn = true;
    m.snapshot_requests.erase(request);
    // Block 0 may have latched it just before the withdrawal: its first wave (no later one:
    // the request word is gone, so the grid does not hold) then still arrives, and is
    // dropped rather than delivered for a request its owner withdrew.
    m.failed_snapshot_requests.insert(request);
    if (holds_pool) {
      // The pool stays the request's until block 0 has acted on the withdrawal without
      // latching it, or the first wave's images arrived. The generation this change is about
      // to store is the next one (update_control bumps it after this lambda, under mu).
      pool.withdrawn = request;
      pool.withdrawn_generation = m.generation + 1;
      pool.withdrawn_left = pool.wave_left;
      pool.all_request = 0;
      pool.hold = false;
      // Relaxed: a hint for the pump, which reads the pool under mu.
      m.pool_housekeeping_due.store(true, std::memory_order_relaxed);
    }
  });
  return withdrawn;
}

Result<std::uint64_t> Runtime::snapshot_actor(std::uint32_t actor, bool full, std::uint64_t apply_epoch) {
  Impl& m = *impl_;
  if (!m.options.snapshots) return snapshots_disabled();
  if (m.args.k2k_gated != 0 && m.args.k2k_delay > 1) return m.shard_single_actor_refusal("snapshot_actor");
  if (actor >= m.options.num_actors)
    return Status(StatusCode::kOutOfRange, "actor " + std::to_string(actor) + " is out of range (app has " +
                                               std::to_string(m.options.num_actors) + " actors)");
  std::uint64_t id;
  std::uint32_t slot = 0;
  {
    std::unique_lock<std::mutex> lock(m.mu);
    if (m.phase == RuntimePhase::kStopped) return Status(StatusCode::kFailedPrecondition, "runtime was shut down");
    m.wait_for_withdrawn_pool(lock);
    auto taken = m.take_pool_slot_locked("snapshot_actor");
    if (!taken.ok()) return taken.status();
    slot = taken.value();
    id = kSnapshotRequestTag | m.next_snapshot++;
    static const host::NvtxName kRequestName("snapshot request (actor)");
    host::nvtx_mark(kRequestName, actor);
    Impl::SnapshotRequest& r = m.snapshot_requests[id];
    r.requested = std::chrono::steady_clock::now();
    r.outstanding = 1;
    r.actor = actor;
    r.slot = slot;
  }
  const SnapshotRequestData req{full ? 1u : 0u, slot};
  Status st = m.publish_internal(m.block_of(actor), kOpSnapshotActor, actor,
                                 detail::make_envelope(apply_epoch, id, &req, sizeof req), /*wait=*/true);
  if (!st.ok()) {
    std::lock_guard<std::mutex> lock(m.mu);
    // Unless a failure of the runtime already reset the pool and forgot the request.
    if (m.snapshot_requests.erase(id) != 0) m.pool.free.push_back(slot);
    return st;
  }
  return id;
}

Status Runtime::restore_before_start(std::uint64_t epoch, const std::vector<std::vector<std::byte>>& images,
                                     std::span<const std::byte> global, std::span<const Command> queued) {
  Impl& m = *impl_;
  if (m.phase != RuntimePhase::kCreated)
    return Status(StatusCode::kFailedPrecondition, "restore_before_start() must come before start()");
  if (images.size() != m.options.num_actors) {
    return Status(StatusCode::kInvalidArgument,
                  std::to_string(images.size()) + " images for " + std::to_string(m.options.num_actors) +
                      " actors. Fix: restore every actor from the same checkpoint epoch");
  }
  const ImageLayout& img = m.image;
  {
    // Each block's ring must take its share before the launch: the kernel applies nothing
    // before the first epoch, so a ring that fills here would never drain.
    std::vector<std::uint64_t> per_block(m.plan.blocks, 0);
    for (const Command& c : queued) {
      if (c.actor >= m.options.num_actors || c.opcode < kUserOpcodeBase)
        return Status(StatusCode::kInvalidArgument,
                      "a queued command for actor " + std::to_string(c.actor) + " with opcode " +
                          std::to_string(c.opcode) + " cannot be restored (not a user command of this app's actors)");
      ++per_block[m.block_of(c.actor)];
    }
    for (std::uint32_t b = 0; b < m.plan.blocks; ++b) {
      if (per_block[b] > m.options.ring_capacity)
        return Status(StatusCode::kOutOfRange,
                      "block " + std::to_string(b) + " has " + std::to_string(per_block[b]) +
                          " queued commands to restore but its ring holds " + std::to_string(m.options.ring_capacity) +
                          ". Fix: restore with a ring capacity of at least " + std::to_string(per_block[b]) +
                          " (--ring-capacity, RuntimeOptions::ring_capacity)");
    }
  }
  if (global.size() != m.args.global_bytes) {
    return Status(StatusCode::kInvalidArgument,
                  "the global region's image has " + std::to_string(global.size()) + " bytes; this app's region has " +
                      std::to_string(m.args.global_bytes) +
                      ". Fix: pass the image of the region from the same checkpoint set (RestorePoint::global; "
                      "CheckpointManager snapshots it), and none for an app without a global region");
  }
  for (std::uint32_t a = 0; a < images.size(); ++a) {
    if (images[a].size() != img.image_bytes) {
      return Status(StatusCode::kInvalidArgument,
                    "image of actor " + std::to_string(a) + " has " + std::to_string(images[a].size()) +
                        " bytes; this runtime's actors need " + std::to_string(img.image_bytes) +
                        ". Fix: restore with the same app parameters, actor count and K2K delay as the checkpoint");
    }
    auto* arena = static_cast<std::byte*>(m.state_buf.device()) + m.state_stride * a;
    PKRT_RETURN_IF_ERROR(m.backend->copy_to_device(arena, images[a].data(), img.arena_bytes));
    // The inbox's D mailboxes, oldest first, back where the run left them (header epochs as
    // written: the run resumes at epoch + 1).
    const std::uint64_t mailbox = img.inbox_bytes / m.args.k2k_delay;
    for (std::uint32_t k = 0; mailbox > 0 && k < m.args.k2k_delay; ++k) {
      PKRT_RETURN_IF_ERROR(m.backend->copy_to_device(m.k2k_mailbox_device(detail::k2k_buffer_of(m.args, epoch + 2 + k), m.global_id(a)),
                                                     images[a].data() + img.arena_bytes + k * mailbox, mailbox));
    }
    if (m.options.snapshots) {
      m.mirror[a] = std::make_shared<Impl::MirrorImage>();
      m.mirror[a]->bytes = images[a];
    }
  }
  if (!global.empty()) {
    PKRT_RETURN_IF_ERROR(m.backend->copy_to_device(m.global_buf.device(), global.data(), global.size()));
    if (m.has_global_snapshots()) {
      auto& gm = m.mirror[m.options.num_actors];
      gm = std::make_shared<Impl::MirrorImage>();
      gm->bytes.assign(global.begin(), global.end());
    }
  }
  m.args.start_epoch = epoch;
  m.args.run_init = 0;
  // Plain stores: the kernel has not been launched; the launch orders them.
  m.control->grid.epoch = epoch;
  // Posted as the app sent them, in order, so they apply at the epochs and in the order they
  // would have; posted (not put in the deferred lists) so a replay log records them like any
  // other command and a replay re-injects them from the log.
  if (!queued.empty()) PKRT_RETURN_IF_ERROR(post_batch(queued));
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
  if (m.args.k2k_gated != 0 && m.args.k2k_delay > 1) return fail(m.shard_single_actor_refusal("restore_actor"));
  if (actor >= m.options.num_actors)
    return fail(Status(StatusCode::kOutOfRange, "actor " + std::to_string(actor) + " is out of range"));
  if (image.size() != m.image.image_bytes)
    return fail(Status(StatusCode::kInvalidArgument, "image of " + std::to_string(image.size()) +
                                                         " bytes; actors need " + std::to_string(m.image.image_bytes)));
  std::uint32_t slot = 0;
  std::uint64_t resets = 0;
  {
    // A restore takes one pool slot; a snapshot of the same actor in flight would race it on
    // the actor's state and its host mirror: one kind at a time.
    std::unique_lock<std::mutex> lock(m.mu);
    m.wait_for_withdrawn_pool(lock);
    if (!m.snapshot_requests.empty() || m.pending_release_count != 0)
      return fail(Status(StatusCode::kFailedPrecondition,
                         "a snapshot is in flight. Fix: wait for pending snapshots (CheckpointManager::flush) "
                         "before a live restore"));
    auto taken = m.take_pool_slot_locked("restore_actor");
    if (!taken.ok()) return fail(taken.status());
    slot = taken.value();
    resets = m.pool.resets;
    ++m.restores_in_flight;
  }
  // The kernel does not touch the slot until the restore command applies.
  Status st = m.backend->copy_to_device(static_cast<std::byte*>(m.staging_buf.device()) + m.args.staging_stride * slot,
                                        image.data(), image.size());
  if (!st.ok()) {
    std::lock_guard<std::mutex> lock(m.mu);
    --m.restores_in_flight;
    if (m.pool.resets == resets) m.pool.free.push_back(slot);
    return fail(st);
  }
  auto done = std::make_shared<std::promise<Reply>>();
  std::future<Reply> f = done->get_future();
  Impl* impl = impl_.get();
  const RestoreRequestData req{source_epoch, slot, 0};
  // Through send_one: the public send() refuses the runtime's own opcodes.
  ReplyCallback on_reply = [impl, done, slot, resets](const Reply& r) {
    {
      std::lock_guard<std::mutex> lock(impl->mu);
      --impl->restores_in_flight;
      // The acknowledgement comes when the command applies; the block copies the slot in that
      // epoch's step, after it. The slot is free once the grid completed the epoch (or at once
      // when the restore failed and nothing reads it).
      // Unless a pool reset (the runtime failed or stopped) already took the slot back.
      if (impl->pool.resets == resets) {
        if (r.status.ok()) {
          impl->restoring.push_back({slot, r.event.epoch});
          // Relaxed: a hint for the pump, which reads `restoring` under mu.
          impl->pool_housekeeping_due.store(true, std::memory_order_relaxed);
        } else {
          impl->pool.free.push_back(slot);
        }
      }
    }
    done->set_value(r);
  };
  (void)impl->send_one(actor, kOpRestoreActor, &req, sizeof req, apply_epoch, &on_reply, /*runtime_opcode=*/true);
  return f;
}

}  // namespace pkrt
