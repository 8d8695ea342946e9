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

struct ActorChain {
  std::uint64_t last_digest = 0;  // digest of the last durable checkpoint (0: next is full)
  std::uint32_t chain = 0;        // deltas since the last full
  struct File {
    std::string name;
    std::uint64_t epoch;
    std::uint64_t digest;
    std::uint64_t parent;  // 0 for a full checkpoint
  };
  std::vector<File> files;  // sorted by epoch
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
  std::vector<std::deque<SnapshotImage>> queues;  // per writer thread
  std::uint64_t writing = 0;          // jobs popped and not finished
  bool stopping = false;
  std::vector<std::thread> writers;
  std::thread scheduler;
  std::vector<ActorChain> chains;     // per actor; each touched only by its writer thread

  Impl(Runtime& r, std::unique_ptr<CheckpointStore> s, const CheckpointPolicy& p)
      : rt(r), store(std::move(s)), policy(p) {}

  // ---- requests --------------------------------------------------------------------------

  Result<std::uint64_t> request(std::uint64_t epoch) {
    std::lock_guard<std::mutex> lock(mu);
    if (in_flight != 0) {
      return Status(StatusCode::kFailedPrecondition,
                    "checkpoint request " + std::to_string(in_flight) + " is still in flight. Fix: flush() "
                    "or cancel() it first");
    }
    auto id = rt.snapshot_all(epoch);
    if (!id.ok()) return id.status();
    in_flight = id.value();
    in_flight_epoch = epoch;
    in_flight_left = rt.options().num_actors;
    ++counters.requested;
    counters.pending += rt.options().num_actors;
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
    ActorChain& chain = chains[img.actor];
    if (!img.status.ok()) {
      st.status = img.status;
      chain.last_digest = 0;  // the device's next delta would be relative to a lost image
      return st;
    }
    const ImageLayout& layout = rt.image_layout();
    CheckpointInfo info;
    info.app = rt.program().name;
    info.params = params;
    for (const auto& r : layout.regions) info.regions.push_back({r.name, r.offset, r.bytes});
    info.epoch = img.epoch;
    info.actor = img.actor;
    info.num_actors = rt.options().num_actors;
    info.state_bytes = layout.image_bytes;
    info.chunk_bytes = layout.chunk_bytes;
    info.state_crc = img.crc;
    info.delta = chain.last_digest != 0 && chain.chain < policy.max_delta_chain &&
                 img.changed.size() < layout.chunks;
    info.parent_digest = info.delta ? chain.last_digest : 0;
    std::vector<std::uint32_t> chunks;
    if (info.delta) {
      chunks = img.changed;
    } else {
      chunks.resize(layout.chunks);
      for (std::uint32_t c = 0; c < layout.chunks; ++c) chunks[c] = c;
    }
    st.delta = info.delta;
    static const host::NvtxName kCompressName("checkpoint compress");
    std::optional<host::NvtxRange> compressing(std::in_place, kCompressName);
    auto file = encode_checkpoint(info, *img.image, chunks, policy.encode);
    compressing.reset();
    if (!file.ok()) {
      st.status = file.status();
      chain.last_digest = 0;
      return st;
    }
    st.file = checkpoint_file_name(info);
    st.status = store->put(st.file, file.value());
    if (!st.status.ok()) {
      chain.last_digest = 0;
      return st;
    }
    st.bytes_written = file->size();
    // Unknown when the request was withdrawn after the grid had latched it.
    if (img.requested != std::chrono::steady_clock::time_point{})
      st.request_to_durable_ms =
          std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - img.requested).count();
    chain.last_digest = checkpoint_digest(info);
    chain.chain = info.delta ? chain.chain + 1 : 0;
    // A file of the same name (an earlier run that reached this epoch) was just replaced.
    std::erase_if(chain.files, [&](const auto& f) { return f.name == st.file; });
    chain.files.push_back({st.file, info.epoch, chain.last_digest, info.parent_digest});
    retain(chain);
    return st;
  }

  // Keeps the newest keep_per_actor files and every ancestor a kept delta needs.
  void retain(ActorChain& chain) {
    std::sort(chain.files.begin(), chain.files.end(),
              [](const auto& a, const auto& b) { return a.epoch < b.epoch; });
    const std::size_t keep = std::max<std::uint32_t>(policy.keep_per_actor, 1);
    if (chain.files.size() <= keep) return;
    std::set<std::string> needed;  // by name
    for (std::size_t i = chain.files.size() - keep; i < chain.files.size(); ++i) {
      // Follow parents: every file on the way to the full base stays.
      const ActorChain::File* f = &chain.files[i];
      for (std::size_t guard = 0; f != nullptr && guard <= chain.files.size(); ++guard) {
        if (!needed.insert(f->name).second) break;
        const std::uint64_t parent = f->parent;
        f = nullptr;
        // The parent is the newest earlier file with that digest.
        for (const auto& g : chain.files)
          if (parent != 0 && g.digest == parent && g.epoch < chain.files[i].epoch) f = &g;
      }
    }
    std::vector<ActorChain::File> kept;
    for (auto& f : chain.files) {
      if (needed.count(f.name) != 0) {
        kept.push_back(f);
        continue;
      }
      Status removed = store->remove(f.name);
      std::lock_guard<std::mutex> lock(mu);
      if (removed.ok()) {
        ++counters.deleted;
      } else if (first_failure.ok()) {
        first_failure = removed;
      }
    }
    chain.files = std::move(kept);
  }

  // ---- scheduling ------------------------------------------------------------------------

  // Requests the next multiple of every_epochs ahead of the grid, so it lands exactly; one
  // the grid has already reached (parked there, or ran past while the previous checkpoint
  // was in flight) is requested at the grid's epoch: late, never skipped.
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
        if (request(at).ok()) next_epoch = (at / policy.every_epochs + 1) * policy.every_epochs;
      } else if (policy.every_time.count() > 0 &&
                 std::chrono::steady_clock::now() - last_time >= policy.every_time) {
        last_time = std::chrono::steady_clock::now();
        (void)request(now_epoch).ok();
      }
      lock.lock();
    }
  }
};

CheckpointManager::CheckpointManager(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Result<std::unique_ptr<CheckpointManager>> CheckpointManager::create(Runtime& runtime,
                                                                     std::unique_ptr<CheckpointStore> store,
                                                                     const CheckpointPolicy& policy) {
  if (store == nullptr) return Status(StatusCode::kInvalidArgument, "CheckpointManager needs a store");
  if (!runtime.options().snapshots) {
    return Status(StatusCode::kInvalidArgument,
                  "the runtime was created with snapshots disabled. Fix: RuntimeOptions::snapshots = true");
  }
  auto impl = std::make_unique<Impl>(runtime, std::move(store), policy);
  impl->params = runtime.params();
  impl->chains.resize(runtime.options().num_actors);
  // Files already there (an earlier run): retention must see them; chains start fresh.
  // Files past the runtime's current epoch (a restore into the directory it came from) are
  // neither counted as newest nor deleted: this run will write its own for those epochs.
  auto history = scan_checkpoints(*impl->store);
  if (!history.ok()) return history.status();
  const std::uint64_t now = runtime.epoch();
  for (const auto& rec : history.value()) {
    if (!rec.status.ok() || rec.info.app != runtime.program().name || rec.info.actor >= impl->chains.size() ||
        rec.info.epoch > now)
      continue;
    impl->chains[rec.info.actor].files.push_back(
        {rec.name, rec.info.epoch, rec.info.digest, rec.info.delta ? rec.info.parent_digest : 0});
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
  std::lock_guard<std::mutex> lock(m.mu);
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

Result<RestorePoint> find_restore_point(const CheckpointStore& store, const std::string& app,
                                        std::span<const std::byte> params, std::uint32_t num_actors,
                                        std::optional<std::uint64_t> epoch) {
  auto history = scan_checkpoints(store);
  if (!history.ok()) return history.status();
  std::map<std::uint64_t, std::set<std::uint32_t>> actors_at;  // epoch -> actors present
  bool other_app = false, other_params = false;
  for (const auto& rec : history.value()) {
    if (!rec.status.ok()) continue;
    if (rec.info.app != app || rec.info.num_actors != num_actors) {
      other_app = true;
      continue;
    }
    if (!std::equal(rec.info.params.begin(), rec.info.params.end(), params.begin(), params.end())) {
      other_params = true;
      continue;
    }
    actors_at[rec.info.epoch].insert(rec.info.actor);
  }
  Status last_error(StatusCode::kInvalidArgument,
                    "no complete checkpoint of app '" + app + "' with " + std::to_string(num_actors) +
                        " actors and these parameters" +
                        (other_app ? " (there are checkpoints of another app or actor count)" : "") +
                        (other_params ? " (there are checkpoints with other parameters)" : "") +
                        ". Fix: restore with the app, --actors and parameters of the run that wrote them");
  for (auto it = actors_at.rbegin(); it != actors_at.rend(); ++it) {
    if (epoch.has_value() && it->first != *epoch) continue;
    if (it->second.size() != num_actors) {
      last_error = Status(StatusCode::kInvalidArgument,
                          "epoch " + std::to_string(it->first) + " has checkpoints of only " +
                              std::to_string(it->second.size()) + " of " + std::to_string(num_actors) +
                              " actors. Fix: pick an epoch where every actor was checkpointed");
      continue;
    }
    RestorePoint point;
    point.epoch = it->first;
    Status failed;
    for (std::uint32_t a = 0; a < num_actors && failed.ok(); ++a) {
      auto state = load_actor_state(store, history.value(), a, it->first);
      if (state.ok()) point.images.push_back(std::move(state.value()));
      else failed = state.status();
    }
    if (failed.ok()) return point;
    last_error = failed;
  }
  if (epoch.has_value() && actors_at.count(*epoch) == 0 && last_error.code() == StatusCode::kInvalidArgument &&
      !actors_at.empty()) {
    last_error = Status(StatusCode::kInvalidArgument,
                        "no checkpoint at epoch " + std::to_string(*epoch) + "; the newest complete one is at epoch " +
                            std::to_string(actors_at.rbegin()->first) + ". Fix: pick an epoch `pkrt checkpoint list` shows");
  }
  return last_error;
}

}  // namespace pkrt
