// checkpoint/checkpoint_manager.cpp: scheduling, per-actor writer threads, delta decisions,
// retention, instrumentation; restore-point search.
#include <pkrt/checkpoint_manager.hpp>

#include "host/nvtx.hpp"

#include <algorithm>
#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <thread>

namespace pkrt {

namespace {

// Per actor (and the global region), touched only by its writer thread.
struct ActorChain {
  std::uint64_t last_digest = 0;  // digest of the last durable checkpoint (0: next is full)
  std::uint64_t last_epoch = 0;   // its epoch
  std::uint32_t chain = 0;        // deltas since the last full
};

// A checkpoint file of this app in the store, as retention sees it.
struct CatalogFile {
  std::uint32_t actor = 0;
  std::uint64_t epoch = 0;
  std::uint64_t digest = 0;
  std::uint64_t parent = 0;  // 0 for a full checkpoint
};

// A set requested and not finished: members arrive from the writer threads.
struct PendingSet {
  std::uint64_t epoch = 0;
  std::uint64_t sequence = 0;
  std::uint32_t finished = 0;  // members durable or failed
  bool failed = false;
  std::vector<std::optional<CheckpointSetMember>> members;  // by member slot, once durable
  std::vector<bool> finished_actor;                        // durable or failed
};

struct CommittedSet {
  std::uint64_t sequence = 0;
  std::uint64_t epoch = 0;
  std::string manifest;
  std::vector<std::string> members;
};

}  // namespace

struct CheckpointManager::Impl {
  Runtime& rt;
  std::unique_ptr<CheckpointStore> store;
  CheckpointPolicy policy;
  std::vector<std::byte> params;

  mutable std::mutex mu;
  std::condition_variable cv;
  CheckpointCounters counters;
  std::vector<SnapshotStats> stats;
  Status first_failure;
  std::uint64_t in_flight = 0;        // snapshot_all request id, 0 when none
  std::uint64_t in_flight_epoch = 0;  // its epoch
  std::uint32_t in_flight_left = 0;   // images of it still to arrive
  std::uint32_t sets_open = 0;        // sets requested and not yet committed, failed or cancelled
  std::vector<std::deque<SnapshotImage>> queues;  // per writer thread
  std::uint64_t writing = 0;          // jobs popped and not finished
  bool stopping = false;
  std::vector<std::thread> writers;
  std::thread scheduler;
  std::vector<ActorChain> chains;     // per member slot; each touched only by its writer thread
  CheckpointFingerprint fingerprint;
  // A set's members: one per actor, then the global region's when the app has one, then the
  // queued commands.
  std::uint32_t member_slots = 0;
  std::size_t slot_of(std::uint32_t actor) const {
    const std::size_t n = rt.options().num_actors;
    if (actor == kGlobalRegionActor) return n;
    if (actor == kQueuedCommandsActor) return n + (fingerprint.global_bytes > 0 ? 1 : 0);
    return actor;
  }

  // The store's catalogue and the sets in flight. Held across a commit and retention (file
  // I/O) by one writer thread at a time. Lock order: catalog_mu, then mu; nothing holding mu
  // waits for catalog_mu, so the pump thread (accept(), mu only) never waits on an fsync.
  std::mutex catalog_mu;
  std::vector<std::uint64_t> pinned;  // guarded by catalog_mu: epochs whose sets retention keeps
  std::map<std::string, CatalogFile> files;     // by name
  std::map<std::uint64_t, PendingSet> pending;  // by request id
  std::vector<CommittedSet> committed;          // by sequence, oldest first
  std::vector<std::string> newest_durable;      // per member slot: parent of its next delta
  // Members of sets whose manifest write failed: the manifest may still be in place (the
  // rename took, the directory fsync failed), so they are never removed by this run.
  std::set<std::string> uncertain;
  std::uint64_t next_sequence = 1;

  Impl(Runtime& r, std::unique_ptr<CheckpointStore> s, const CheckpointPolicy& p)
      : rt(r), store(std::move(s)), policy(p) {}

  void report_failure(const Status& st) {
    if (policy.on_failure) policy.on_failure(st);
  }

  // ---- requests --------------------------------------------------------------------------

  Result<std::uint64_t> request(std::uint64_t epoch) {
    // Backpressure: wait (holding neither lock, so the writers can finish) while too many
    // sets are still being written.
    std::unique_lock<std::mutex> catalog(catalog_mu, std::defer_lock);
    std::unique_lock<std::mutex> lock(mu);
    for (;;) {
      cv.wait(lock, [&] { return stopping || policy.max_pending_sets == 0 || sets_open < policy.max_pending_sets; });
      lock.unlock();
      // Lock order catalog_mu, then mu. The set is registered before any of its images can
      // reach a writer (they need `mu`).
      catalog.lock();
      lock.lock();
      if (stopping || policy.max_pending_sets == 0 || sets_open < policy.max_pending_sets) break;
      catalog.unlock();  // another request took the room meanwhile
    }
    if (in_flight != 0) {
      return Status(StatusCode::kFailedPrecondition,
                    "checkpoint request " + std::to_string(in_flight) + " is still in flight. Fix: flush() "
                    "or cancel() it first");
    }
    auto id = rt.snapshot_all(epoch, false, SnapshotScope::kWholeRun);
    if (!id.ok()) return id.status();
    PendingSet& set = pending[id.value()];
    set.epoch = epoch;
    set.sequence = next_sequence++;
    set.members.resize(member_slots);
    set.finished_actor.resize(member_slots);
    in_flight = id.value();
    in_flight_epoch = epoch;
    in_flight_left = member_slots;
    ++sets_open;
    ++counters.requested;
    counters.pending += member_slots;
    return id.value();
  }

  // Pump thread: an image (or a failure) arrived; queue it for its actor's writer.
  void accept(SnapshotImage img) {
    std::lock_guard<std::mutex> lock(mu);
    if (img.request == in_flight && in_flight_left > 0 && --in_flight_left == 0) in_flight = 0;
    queues[img.actor % queues.size()].push_back(std::move(img));
    cv.notify_all();
  }

  // ---- writers ---------------------------------------------------------------------------

  void writer_loop(std::size_t index) {
    for (;;) {
      SnapshotImage img;
      {
        std::unique_lock<std::mutex> lock(mu);
        cv.wait(lock, [&] { return stopping || !queues[index].empty(); });
        if (queues[index].empty()) return;  // stopping and drained
        img = std::move(queues[index].front());
        queues[index].pop_front();
        ++writing;
      }
      SnapshotStats st = write(img);
      if (!st.status.ok()) report_failure(st.status);
      {
        std::lock_guard<std::mutex> lock(mu);
        --writing;
        if (counters.pending > 0) --counters.pending;
        if (st.status.ok()) {
          ++counters.written;
          counters.bytes_written += st.bytes_written;
        } else {
          ++counters.failed;
          if (first_failure.ok()) first_failure = st.status;
        }
        counters.bytes_copied += st.bytes_copied;
        stats.push_back(std::move(st));
        cv.notify_all();
      }
    }
  }

  SnapshotStats write(const SnapshotImage& img) {
    SnapshotStats st;
    st.actor = img.actor;
    st.epoch = img.epoch;
    st.stall_ns = img.stall_ns;
    st.bytes_copied = img.bytes_copied;
    if (slot_of(img.actor) >= chains.size()) {
      st.status = Status(StatusCode::kInternal, "snapshot image of actor " + std::to_string(img.actor) +
                                                    ", which this runtime does not have");
      return st;
    }
    ActorChain& chain = chains[slot_of(img.actor)];
    if (!img.status.ok()) {
      st.status = img.status;
      chain.last_digest = 0;  // the device's next delta would be relative to a lost image
      finish_member(img.request, img.actor, std::nullopt);
      return st;
    }
    const ImageLayout& layout = rt.image_layout();
    const bool global = img.actor == kGlobalRegionActor;
    const bool queued = img.actor == kQueuedCommandsActor;
    CheckpointInfo info;
    info.app = rt.program().name;
    info.params = params;
    if (global) {
      info.regions.push_back({"global", 0, layout.global_bytes});
      info.state_bytes = layout.global_bytes;
    } else if (queued) {
      info.regions.push_back({"queued_commands", 0, img.image->size()});
      info.state_bytes = img.image->size();
    } else {
      for (const auto& r : layout.regions) info.regions.push_back({r.name, r.offset, r.bytes});
      info.state_bytes = layout.image_bytes;
    }
    const auto chunk_count = static_cast<std::uint32_t>((info.state_bytes + layout.chunk_bytes - 1) / layout.chunk_bytes);
    info.epoch = img.epoch;
    info.actor = img.actor;
    info.num_actors = rt.options().num_actors;
    info.chunk_bytes = layout.chunk_bytes;
    info.state_crc = img.crc;
    // A second image at the epoch of the last one (a checkpoint repeated on a parked grid) is
    // full: a delta's parent must be older, and that set replaces the one at this epoch,
    // whose files retention may then remove.
    // The queued commands are a list, not a state that changes in place: always full.
    info.delta = !queued && chain.last_digest != 0 && img.epoch > chain.last_epoch &&
                 chain.chain < policy.max_delta_chain && img.changed.size() < chunk_count;
    info.parent_digest = info.delta ? chain.last_digest : 0;
    std::vector<std::uint32_t> chunks;
    if (info.delta) {
      chunks = img.changed;
    } else {
      chunks.resize(chunk_count);
      for (std::uint32_t c = 0; c < chunk_count; ++c) chunks[c] = c;
    }
    st.delta = info.delta;
    static const host::NvtxName kCompressName("checkpoint compress");
    std::optional<host::NvtxRange> compressing(std::in_place, kCompressName);
    auto file = encode_checkpoint(info, *img.image, chunks, policy.encode);
    compressing.reset();
    if (!file.ok()) {
      st.status = file.status();
      chain.last_digest = 0;
      finish_member(img.request, img.actor, std::nullopt);
      return st;
    }
    std::uint64_t sequence = 0;  // images of requests that are not sets (snapshot_actor)
    {
      std::lock_guard<std::mutex> catalog(catalog_mu);
      auto it = pending.find(img.request);
      if (it != pending.end()) sequence = it->second.sequence;
    }
    st.file = checkpoint_member_name(info, sequence);
    st.status = store->put(st.file, file.value());
    if (!st.status.ok()) {
      chain.last_digest = 0;
      finish_member(img.request, img.actor, std::nullopt);
      return st;
    }
    st.bytes_written = file->size();
    // Unknown when the request was withdrawn after the grid had latched it.
    if (img.requested != std::chrono::steady_clock::time_point{})
      st.request_to_durable_ms =
          std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - img.requested).count();
    chain.last_digest = checkpoint_digest(info);
    chain.last_epoch = img.epoch;
    chain.chain = info.delta ? chain.chain + 1 : 0;
    CheckpointSetMember member;
    member.actor = img.actor;
    member.file = st.file;
    member.digest = chain.last_digest;
    member.file_bytes = st.bytes_written;
    member.state_crc = img.crc;
    member.delta = info.delta;
    {
      std::lock_guard<std::mutex> catalog(catalog_mu);
      files[st.file] = {img.actor, img.epoch, chain.last_digest, info.parent_digest};
      newest_durable[slot_of(img.actor)] = st.file;
      // The epoch the grid served, which for a request it had outrun is later than asked.
      if (auto it = pending.find(img.request); it != pending.end()) it->second.epoch = img.epoch;
    }
    finish_member(img.request, img.actor, std::move(member));
    return st;
  }

  // A member of request `request` is durable (`member`) or failed (nullopt). The last one
  // commits the set, or counts it failed.
  void finish_member(std::uint64_t request, std::uint32_t actor, std::optional<CheckpointSetMember> member) {
    Status commit_failure;
    bool committed_now = false, failed_now = false;
    std::uint64_t deleted = 0;
    Status retention_failure;
    {
      std::lock_guard<std::mutex> catalog(catalog_mu);
      auto it = pending.find(request);
      if (it == pending.end()) return;
      PendingSet& set = it->second;
      // One result per member counts (a late image of an actor already failed is ignored).
      const std::size_t slot = slot_of(actor);
      if (slot >= set.members.size() || set.finished_actor[slot]) return;
      set.finished_actor[slot] = true;
      set.failed = set.failed || !member.has_value();
      set.members[slot] = std::move(member);
      if (++set.finished < set.members.size()) return;
      if (set.failed) {
        failed_now = true;
      } else {
        commit_failure = commit(set);
        committed_now = commit_failure.ok();
        failed_now = !committed_now;
        if (committed_now) retention_failure = retain(deleted);
      }
      pending.erase(it);
    }
    if (!commit_failure.ok()) report_failure(commit_failure);
    if (!retention_failure.ok()) report_failure(retention_failure);
    std::lock_guard<std::mutex> lock(mu);
    counters.sets_committed += committed_now ? 1 : 0;
    counters.sets_failed += failed_now ? 1 : 0;
    if (sets_open > 0) --sets_open;  // this set is finished either way
    cv.notify_all();
    counters.deleted += deleted;
    if (first_failure.ok() && !commit_failure.ok()) first_failure = commit_failure;
    if (first_failure.ok() && !retention_failure.ok()) first_failure = retention_failure;
  }

  // Writes the set's manifest (catalog_mu held). Every member is durable: the store's put
  // fsyncs each file and its directory entry before returning.
  Status commit(const PendingSet& set) {
    CheckpointManifest m;
    m.epoch = set.epoch;
    m.sequence = set.sequence;
    m.fingerprint = fingerprint;
    m.inputs = policy.inputs;
    for (const auto& mem : set.members) m.members.push_back(*mem);
    const std::string name = policy.unique_manifest_names ? checkpoint_manifest_name(fingerprint.app, m.epoch, m.sequence)
                                                          : checkpoint_manifest_name(fingerprint.app, m.epoch);
    static const host::NvtxName kManifestName("checkpoint set commit (manifest)");
    const host::NvtxRange committing(kManifestName);
    Status st = store->put(name, encode_checkpoint_manifest(m));
    if (!st.ok()) {
      for (const auto& mem : m.members) uncertain.insert(mem.file);
      return Status(st.code(), "checkpoint set at epoch " + std::to_string(m.epoch) +
                                   " was not committed (its files are kept but it cannot be restored): " +
                                   st.message());
    }
    // A set at the same epoch committed earlier (an earlier run) was just replaced.
    std::erase_if(committed, [&](const CommittedSet& c) { return c.manifest == name; });
    CommittedSet c{m.sequence, m.epoch, name, {}};
    for (const auto& mem : m.members) c.members.push_back(mem.file);
    committed.push_back(std::move(c));
    std::sort(committed.begin(), committed.end(),
              [](const CommittedSet& a, const CommittedSet& b) { return a.sequence < b.sequence; });
    return Status();
  }

  // Keeps the newest keep_sets committed sets and everything the contract lists; removes
  // the older manifests first, then unneeded files (catalog_mu held).
  Status retain(std::uint64_t& deleted) {
    const std::size_t keep = std::max<std::uint32_t>(policy.keep_sets, 1);
    const std::size_t older = committed.size() > keep ? committed.size() - keep : 0;
    // The older sets go, except those at a pinned epoch (pin_epochs).
    std::vector<bool> dropped(committed.size(), false);
    for (std::size_t i = 0; i < older; ++i)
      dropped[i] = std::find(pinned.begin(), pinned.end(), committed[i].epoch) == pinned.end();
    std::set<std::string> roots;
    for (std::size_t i = 0; i < committed.size(); ++i)
      if (!dropped[i]) roots.insert(committed[i].members.begin(), committed[i].members.end());
    for (const auto& name : newest_durable)
      if (!name.empty()) roots.insert(name);
    roots.insert(uncertain.begin(), uncertain.end());
    for (const auto& [id, set] : pending)
      for (const auto& mem : set.members)
        if (mem) roots.insert(mem->file);
    // Follow every root's delta chain down to its full base.
    std::set<std::string> needed;
    std::vector<std::string> todo(roots.begin(), roots.end());
    while (!todo.empty()) {
      const std::string name = std::move(todo.back());
      todo.pop_back();
      if (!needed.insert(name).second) continue;
      auto it = files.find(name);
      if (it == files.end() || it->second.parent == 0) continue;
      for (const auto& [other, f] : files)
        if (f.actor == it->second.actor && f.digest == it->second.parent && f.epoch < it->second.epoch)
          todo.push_back(other);
    }
    Status failure;
    // Uncommit first: a crash after this leaves files nothing refers to, never a manifest
    // whose members are gone.
    for (std::size_t i = 0; i < committed.size(); ++i) {
      if (!dropped[i]) continue;
      Status st = store->remove(committed[i].manifest);
      if (!st.ok()) {
        failure = st;
        continue;
      }
      ++deleted;
    }
    if (!failure.ok()) return failure;  // keep every file while an old manifest may still name it
    std::vector<CommittedSet> kept;
    for (std::size_t i = 0; i < committed.size(); ++i)
      if (!dropped[i]) kept.push_back(std::move(committed[i]));
    committed = std::move(kept);
    for (auto it = files.begin(); it != files.end();) {
      if (needed.count(it->first) != 0) {
        ++it;
        continue;
      }
      Status st = store->remove(it->first);
      if (!st.ok()) {
        failure = st;
        ++it;
        continue;
      }
      ++deleted;
      it = files.erase(it);
    }
    return failure;
  }

  // ---- scheduling ------------------------------------------------------------------------

  // Requests the next multiple of every_epochs ahead of the grid, so it lands exactly; one
  // the grid has already reached (parked there, or ran past while the previous checkpoint
  // was in flight) is requested at the grid's epoch, late, and the multiples it ran past
  // before that one are counted as coalesced into it.
  void scheduler_loop() {
    std::uint64_t next_epoch = policy.every_epochs;
    auto last_time = std::chrono::steady_clock::now();
    std::unique_lock<std::mutex> lock(mu);
    while (!stopping) {
      cv.wait_for(lock, std::chrono::milliseconds(2));
      if (stopping || in_flight != 0) continue;
      const std::uint64_t now_epoch = rt.epoch();
      lock.unlock();
      if (policy.every_epochs != 0) {
        const std::uint64_t at = std::max(next_epoch, now_epoch);
        if (request(at).ok()) {
          if (at > next_epoch) {
            std::lock_guard<std::mutex> count_lock(mu);
            ++counters.late;
            counters.coalesced += (at - next_epoch) / policy.every_epochs;
          }
          next_epoch = (at / policy.every_epochs + 1) * policy.every_epochs;
        }
      } else if (policy.every_time.count() > 0 &&
                 std::chrono::steady_clock::now() - last_time >= policy.every_time) {
        last_time = std::chrono::steady_clock::now();
        (void)request(now_epoch).ok();
      }
      lock.lock();
    }
  }
};

CheckpointFingerprint checkpoint_fingerprint(const Runtime& runtime) {
  CheckpointFingerprint f;
  f.app = runtime.program().name;
  f.program_version = runtime.program().version;
  f.num_actors = runtime.options().num_actors;
  const ImageLayout& layout = runtime.image_layout();
  f.image_bytes = layout.image_bytes;
  f.chunk_bytes = layout.chunk_bytes;
  for (const auto& r : layout.regions) f.regions.push_back({r.name, r.offset, r.bytes});
  f.params = runtime.params();
  f.global_bytes = layout.global_bytes;
  return f;
}

CheckpointManager::CheckpointManager(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Result<std::unique_ptr<CheckpointManager>> CheckpointManager::create(Runtime& runtime,
                                                                     std::unique_ptr<CheckpointStore> store,
                                                                     const CheckpointPolicy& policy) {
  if (store == nullptr) return Status(StatusCode::kInvalidArgument, "CheckpointManager needs a store");
  if (!runtime.options().snapshots) {
    return Status(StatusCode::kInvalidArgument,
                  "the runtime was created with snapshots disabled. Fix: RuntimeOptions::snapshots = true");
  }
  // The manifest's limits, checked here so no set is committed that restore cannot read.
  if (policy.inputs.size() > kMaxRunInputs)
    return Status(StatusCode::kInvalidArgument, "CheckpointPolicy::inputs has " + std::to_string(policy.inputs.size()) +
                                                    " entries; a manifest holds at most " + std::to_string(kMaxRunInputs));
  for (const auto& [k, v] : policy.inputs)
    if (k.size() > kMaxRunInputText || v.size() > kMaxRunInputText)
      return Status(StatusCode::kInvalidArgument, "CheckpointPolicy::inputs entry '" + k.substr(0, 64) +
                                                      "' is longer than " + std::to_string(kMaxRunInputText) +
                                                      " bytes. Fix: record a hash of long values instead");
  PKRT_RETURN_IF_ERROR(store->lock_for_writing());
  auto impl = std::make_unique<Impl>(runtime, std::move(store), policy);
  impl->params = runtime.params();
  impl->fingerprint = checkpoint_fingerprint(runtime);
  impl->member_slots = runtime.options().num_actors + (impl->fingerprint.global_bytes > 0 ? 1 : 0) + 1;
  impl->chains.resize(impl->member_slots);
  impl->newest_durable.resize(impl->member_slots);
  // What an earlier run left: its committed sets count for retention (by sequence, so this
  // run's sets are the newest), its other files are removed by the first retention pass
  // unless a kept set needs them. Delta chains start fresh (full checkpoints first).
  auto history = scan_checkpoints(*impl->store);
  if (!history.ok()) return history.status();
  auto sets = scan_checkpoint_sets(*impl->store);
  if (!sets.ok()) return sets.status();
  const std::string& app = impl->fingerprint.app;
  // Only this configuration's: sets and files of the same app with other params, actor count,
  // layout or run inputs are another run's history, which this run can never restore from; they
  // are left as they are (never counted, kept or removed by this run's retention).
  auto same_run_files = [&](const CheckpointInfo& info) {
    return info.app == app && info.num_actors == impl->fingerprint.num_actors && info.params == impl->params;
  };
  // Sequences go on past every run's of the app, whatever its configuration: member names
  // carry them, so no file of another run is ever written over.
  for (const auto& rec : history.value()) {
    if (!rec.status.ok() || rec.info.app != app) continue;
    impl->next_sequence = std::max(impl->next_sequence, checkpoint_member_sequence(rec.name) + 1);
    if (!same_run_files(rec.info)) continue;
    impl->files[rec.name] = {rec.info.actor, rec.info.epoch, rec.info.digest, rec.info.delta ? rec.info.parent_digest : 0};
  }
  for (const auto& set : sets.value()) {
    if (!set.status.ok() || set.manifest.fingerprint.app != app) continue;
    impl->next_sequence = std::max(impl->next_sequence, set.manifest.sequence + 1);
    if (!compare_fingerprints(set.manifest.fingerprint, impl->fingerprint, set.name).ok() ||
        !compare_run_inputs(set.manifest.inputs, policy.inputs, set.name).ok()) {
      // Manifests are named by epoch: one of this run at an epoch the other run checkpointed
      // would replace that set's. Named by epoch and sequence instead, both stay.
      impl->policy.unique_manifest_names = true;
      // Its members and the delta chains they rest on stay too, whatever their headers say.
      for (const auto& mem : set.manifest.members) {
        std::string name = mem.file;
        for (std::size_t guard = 0; guard <= history->size(); ++guard) {
          impl->files.erase(name);
          const CheckpointRecord* rec = nullptr;
          for (const auto& h : history.value())
            if (h.name == name && h.status.ok()) rec = &h;
          if (rec == nullptr || !rec->info.delta) break;
          const CheckpointRecord* parent = nullptr;
          for (const auto& h : history.value())
            if (h.status.ok() && h.info.actor == rec->info.actor && h.info.digest == rec->info.parent_digest &&
                h.info.epoch < rec->info.epoch)
              parent = &h;
          if (parent == nullptr) break;
          name = parent->name;
        }
      }
      continue;
    }
    CommittedSet c{set.manifest.sequence, set.manifest.epoch, set.name, {}};
    for (const auto& mem : set.manifest.members) c.members.push_back(mem.file);
    impl->committed.push_back(std::move(c));
  }
  const std::size_t threads = std::max<std::uint32_t>(1, policy.writer_threads);
  impl->queues.resize(threads);
  Impl* m = impl.get();
  runtime.set_snapshot_sink([m](SnapshotImage img) { m->accept(std::move(img)); });
  for (std::size_t i = 0; i < threads; ++i) impl->writers.emplace_back([m, i] { m->writer_loop(i); });
  if (policy.every_epochs != 0 || policy.every_time.count() > 0)
    impl->scheduler = std::thread([m] { m->scheduler_loop(); });
  return std::unique_ptr<CheckpointManager>(new CheckpointManager(std::move(impl)));
}

CheckpointManager::~CheckpointManager() {
  // Stop scheduling first, so no new request races the teardown.
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    impl_->stopping = true;
  }
  impl_->cv.notify_all();
  if (impl_->scheduler.joinable()) impl_->scheduler.join();
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    impl_->stopping = false;  // writers keep draining until the flush below
  }
  (void)flush(std::chrono::minutes(1)).ok();
  std::uint64_t left;
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    left = impl_->in_flight;
  }
  if (left != 0) (void)cancel(left);  // a scheduled request the grid never reached
  // Waits for a sink call in progress: after this no image reaches accept().
  impl_->rt.set_snapshot_sink(nullptr);
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    impl_->stopping = true;
  }
  impl_->cv.notify_all();
  for (auto& t : impl_->writers) t.join();
}

Result<std::uint64_t> CheckpointManager::checkpoint_at(std::uint64_t epoch) { return impl_->request(epoch); }

Result<std::uint64_t> CheckpointManager::checkpoint_now() { return impl_->request(impl_->rt.epoch()); }

bool CheckpointManager::cancel(std::uint64_t request) {
  Impl& m = *impl_;
  if (!m.rt.cancel_snapshot(request)) return false;
  bool erased;
  {
    std::lock_guard<std::mutex> catalog(m.catalog_mu);
    erased = m.pending.erase(request) != 0;
  }
  std::lock_guard<std::mutex> lock(m.mu);
  if (erased && m.sets_open > 0) --m.sets_open;
  if (m.in_flight == request) {
    m.counters.pending -= std::min<std::uint64_t>(m.counters.pending, m.in_flight_left);
    m.in_flight = 0;
    m.in_flight_left = 0;
  }
  ++m.counters.cancelled;
  m.cv.notify_all();
  return true;
}

Status CheckpointManager::wait_served(std::chrono::milliseconds timeout) {
  Impl& m = *impl_;
  std::unique_lock<std::mutex> lock(m.mu);
  if (!m.cv.wait_for(lock, timeout, [&] { return m.in_flight == 0; })) {
    return Status(StatusCode::kTimeout, "checkpoint request " + std::to_string(m.in_flight) +
                                            " not served by the grid within " + std::to_string(timeout.count()) +
                                            " ms. Fix: make sure the grid runs to (or is parked at) its epoch");
  }
  return Status();
}

Status CheckpointManager::flush(std::chrono::milliseconds timeout) {
  Impl& m = *impl_;
  std::unique_lock<std::mutex> lock(m.mu);
  const bool done = m.cv.wait_for(lock, timeout, [&] {
    bool queued = false;
    for (const auto& q : m.queues) queued = queued || !q.empty();
    // A request for an epoch the grid has not reached is not waited for: a parked grid
    // would never serve it.
    const bool due = m.in_flight != 0 && m.in_flight_epoch <= m.rt.epoch();
    return !due && !queued && m.writing == 0;
  });
  if (!done) {
    return Status(StatusCode::kTimeout, "checkpoints still pending after " + std::to_string(timeout.count()) +
                                            " ms (" + std::to_string(m.counters.pending) +
                                            " images). Fix: check the grid is running and the disk is not stalled");
  }
  Status failure = m.first_failure;
  m.first_failure = Status();
  return failure;
}

CheckpointCounters CheckpointManager::counters() const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  return impl_->counters;
}

std::vector<SnapshotStats> CheckpointManager::snapshot_stats() const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  return impl_->stats;
}

const CheckpointStore& CheckpointManager::store() const { return *impl_->store; }

std::optional<std::pair<std::string, std::uint64_t>> CheckpointManager::newest_committed() const {
  std::lock_guard<std::mutex> catalog(impl_->catalog_mu);
  if (impl_->committed.empty()) return std::nullopt;
  return std::make_pair(impl_->committed.back().manifest, impl_->committed.back().epoch);
}

void CheckpointManager::pin_epochs(std::vector<std::uint64_t> epochs) {
  std::lock_guard<std::mutex> catalog(impl_->catalog_mu);
  impl_->pinned = std::move(epochs);
}

namespace {

// Queued commands a set may hold: far more than any ring and deferred list hold (2 x 2^20
// slots per block of 64 bytes at most), so only a crafted file reaches it.
constexpr std::uint64_t kMaxQueuedCommandBytes = std::uint64_t{1} << 32;

// "epoch 40 (3 of 4 actors), ..." for files of `app` that no committed set covers.
std::string partial_sets(const std::vector<CheckpointRecord>& history, const std::string& app,
                         std::uint32_t num_actors) {
  // By (epoch, sequence): two unfinished sets at one epoch (two crashed runs) are two.
  std::map<std::pair<std::uint64_t, std::uint64_t>, std::set<std::uint32_t>> actors_at;
  for (const auto& rec : history)
    if (rec.status.ok() && rec.info.app == app && rec.info.actor < num_actors)  // actors only
      actors_at[{rec.info.epoch, checkpoint_member_sequence(rec.name)}].insert(rec.info.actor);
  std::string out;
  std::size_t listed = 0;
  for (auto it = actors_at.rbegin(); it != actors_at.rend() && listed < 8; ++it, ++listed) {
    if (!out.empty()) out += ", ";
    out += "epoch " + std::to_string(it->first.first) + " (" + std::to_string(it->second.size()) + " of " +
           std::to_string(num_actors) + " actors" + (it->second.size() >= num_actors ? ", never committed" : "") + ")";
  }
  if (actors_at.size() > listed) out += ", and " + std::to_string(actors_at.size() - listed) + " older";
  return out.empty() ? "none" : out;
}

Status compare_partial(const CheckpointFingerprint& saved, const CheckpointFingerprint& now, const std::string& where,
                       const ParamsDescriber& describe) {
  CheckpointFingerprint a = now;
  a.program_version = saved.program_version;
  a.image_bytes = saved.image_bytes;
  a.chunk_bytes = saved.chunk_bytes;
  a.regions = saved.regions;
  a.global_bytes = saved.global_bytes;
  return compare_fingerprints(saved, a, where, describe);
}

}  // namespace

Result<RestorePoint> find_restore_point(const CheckpointStore& store, const RestoreQuery& q) {
  auto sets = scan_checkpoint_sets(store);
  if (!sets.ok()) return sets.status();
  auto history = scan_checkpoints(store);
  if (!history.ok()) return history.status();
  const CheckpointFingerprint& want = q.fingerprint;
  std::vector<const CheckpointSetRecord*> candidates;  // newest first
  std::string damaged;
  std::vector<std::string> skipped;  // sets passed over: damaged manifests first (their epochs are unknown)
  for (auto it = sets->rbegin(); it != sets->rend(); ++it) {
    if (!it->status.ok()) {
      damaged += (damaged.empty() ? "" : "; ") + it->status.message();
      skipped.push_back("set whose manifest '" + store.describe(it->name) + "' is damaged (" + it->status.message() + ")");
      continue;
    }
    const CheckpointManifest& m = it->manifest;
    if (m.fingerprint.app != want.app) continue;
    if (q.epoch && m.epoch != *q.epoch) continue;
    if (q.max_epoch && m.epoch > *q.max_epoch) continue;
    candidates.push_back(&*it);
  }
  if (candidates.empty()) {
    std::string committed;
    for (const auto& s : sets.value())
      if (s.status.ok() && s.manifest.fingerprint.app == want.app)
        committed += (committed.empty() ? "" : ", ") + std::to_string(s.manifest.epoch);
    std::string msg;
    if (committed.empty())
      msg = "no checkpoint set of app '" + want.app + "' is complete (committed by a manifest); partial sets: " +
            partial_sets(history.value(), want.app, want.num_actors) +
            ". Fix: restore from a directory where a run finished a checkpoint";
    else if (q.epoch)
      msg = "no committed checkpoint set at epoch " + std::to_string(*q.epoch) + "; committed sets are at epochs " +
            committed + ". Fix: pick one of those with --restore-epoch";
    else
      msg = "no committed checkpoint set at or before epoch " + std::to_string(q.max_epoch.value_or(0)) +
            "; committed sets are at epochs " + committed + ". Fix: keep older checkpoints (--checkpoint-keep)";
    if (!damaged.empty()) msg += " (damaged manifests: " + damaged + ")";
    return Status(StatusCode::kInvalidArgument, msg);
  }
  Status mismatch;  // the newest candidate of another configuration, if nothing else restores
  for (const CheckpointSetRecord* rec : candidates) {
    const CheckpointManifest& m = rec->manifest;
    const std::string where = store.describe(rec->name);
    Status matches = q.match_layout ? compare_fingerprints(m.fingerprint, want, where, q.describe_params)
                                    : compare_partial(m.fingerprint, want, where, q.describe_params);
    if (matches.ok() && q.match_inputs) matches = compare_run_inputs(m.inputs, q.inputs, where);
    if (!matches.ok()) {
      // Asked for by epoch, or the only kind there is: refused, naming what differs. Else
      // another configuration's set (a directory two runs shared) is passed over.
      if (q.epoch) return matches;
      if (mismatch.ok()) mismatch = matches;
      skipped.push_back("set at epoch " + std::to_string(m.epoch) + " of another configuration (" + matches.message() + ")");
      continue;
    }
    RestorePoint point;
    point.epoch = m.epoch;
    point.sequence = m.sequence;
    point.manifest = rec->name;
    Status failed;
    for (const CheckpointSetMember& mem : m.members) {
      // The member must be the very file the manifest committed.
      const CheckpointRecord* file = nullptr;
      for (const auto& h : history.value())
        if (h.name == mem.file) file = &h;
      if (file != nullptr && file->status.ok() &&
          (file->info.digest != mem.digest || file->info.actor != mem.actor || file->info.epoch != m.epoch)) {
        failed = Status(StatusCode::kCorruptData, "member '" + store.describe(mem.file) + "' is not the file set '" +
                                                      where + "' committed (digest, actor or epoch differ)");
        break;
      }
      const bool global = mem.actor == kGlobalRegionActor;
      const bool queued = mem.actor == kQueuedCommandsActor;
      std::uint64_t expected = global ? m.fingerprint.global_bytes : m.fingerprint.image_bytes;
      if (queued) {
        // A list of any length: its file says how long, bounded before anything is read.
        expected = file != nullptr && file->status.ok() ? file->info.state_bytes : 0;
        if (expected > kMaxQueuedCommandBytes) {
          failed = Status(StatusCode::kCorruptData, "member '" + store.describe(mem.file) + "' declares " +
                                                        std::to_string(expected) + " bytes of queued commands");
          break;
        }
      }
      auto state = load_checkpoint_state(store, history.value(), mem.file, expected);
      if (!state.ok()) {
        failed = state.status();
        break;
      }
      if (queued) {
        auto commands = decode_queued_commands(state.value(), m.fingerprint.num_actors, store.describe(mem.file));
        if (!commands.ok()) {
          failed = commands.status();
          break;
        }
        point.queued = std::move(commands.value());
        point.has_queued = true;
      } else if (global) {
        point.global = std::move(state.value());
      } else {
        point.images.push_back(std::move(state.value()));
      }
    }
    if (failed.ok()) {
      point.skipped = std::move(skipped);
      return point;
    }
    if (q.epoch) return Status(failed.code(), "checkpoint set at epoch " + std::to_string(m.epoch) + " cannot be restored: " + failed.message());
    skipped.push_back("set at epoch " + std::to_string(m.epoch) + " (" + failed.message() + ")");
  }
  // Nothing of this configuration restores: a mismatch says what differs (the likely mistake).
  bool damaged_seen = false;
  for (const auto& s : skipped) damaged_seen = damaged_seen || s.find(" of another configuration (") == std::string::npos;
  if (!mismatch.ok() && !damaged_seen) return mismatch;
  std::string why;
  for (const auto& s : skipped) why += (why.empty() ? "" : "; ") + s;
  return Status(StatusCode::kCorruptData, "no committed checkpoint set of this run's configuration can be restored: " + why +
                                              ". Fix: restore from a copy of the directory, or start from scratch");
}

Result<RestorePoint> find_restore_point(const CheckpointStore& store, const std::string& app,
                                        std::span<const std::byte> params, std::uint32_t num_actors,
                                        std::optional<std::uint64_t> epoch) {
  RestoreQuery q;
  q.fingerprint.app = app;
  q.fingerprint.num_actors = num_actors;
  q.fingerprint.params.assign(params.begin(), params.end());
  q.match_layout = false;
  q.match_inputs = false;
  q.epoch = epoch;
  return find_restore_point(store, q);
}

}  // namespace pkrt
