// host/cli/run_command.cpp: `pkrt run`: runs one of the built-in examples and prints a
// summary (table, or JSON with --json).
#include "examples/echo/echo.hpp"
#include "examples/heat2d/heat2d_host.hpp"
#include "examples/racy_sum/racy_sum.hpp"
#include "host/cli/cli_common.hpp"
#include "host/cli/commands.hpp"
#include "host/latency_histogram.hpp"

#include <pkrt/checkpoint_manager.hpp>
#include <pkrt/checkpoint_set.hpp>
#include <pkrt/crc32.hpp>
#include <pkrt/replay_log.hpp>
#include <pkrt/runtime.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <atomic>
#include <csignal>
#include <signal.h>
#include <array>
#include <filesystem>
#include <functional>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <limits>
#include <map>
#include <optional>
#include <mutex>
#include <random>
#include <vector>

namespace pkrt::cli {
namespace {

using Clock = std::chrono::steady_clock;

struct RunSummary {
  std::string app;
  std::string backend;
  std::string poll;  // the poll policy in force
  std::uint32_t actors = 0;
  std::uint32_t blocks = 0;
  std::uint64_t epochs = 0;
  double seconds = 0;
  RuntimeStats stats;
  std::uint32_t checksum = 0;
  std::vector<std::pair<std::string, std::string>> extra;  // app-specific rows
  nlohmann::json extra_json = nlohmann::json::object();
  bool check_failed = false;
  std::uint64_t restored_epoch = 0;
  std::string stopped;  // why the run stopped before its last epoch (empty: it did not)
};

// SIGINT/SIGTERM ask the run to stop cleanly: park, make in-flight checkpoints durable,
// close the replay log, print the summary, exit 128+signal. SA_RESETHAND: a second signal
// gets the default action, so a run that does not stop can still be killed with Ctrl-C.
std::atomic<int> g_stop_signal{0};  // relaxed: a flag with no data behind it, polled by the main thread

extern "C" void pkrt_on_stop_signal(int sig) { g_stop_signal.store(sig, std::memory_order_relaxed); }

class StopSignals {
 public:
  StopSignals() {
    g_stop_signal.store(0, std::memory_order_relaxed);  // relaxed: no handler is installed yet
    struct sigaction sa {};
    sa.sa_handler = pkrt_on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESETHAND | SA_RESTART;
    ::sigaction(SIGINT, &sa, &old_int_);
    ::sigaction(SIGTERM, &sa, &old_term_);
  }
  ~StopSignals() {
    ::sigaction(SIGINT, &old_int_, nullptr);
    ::sigaction(SIGTERM, &old_term_, nullptr);
  }
  StopSignals(const StopSignals&) = delete;
  StopSignals& operator=(const StopSignals&) = delete;

  static int received() { return g_stop_signal.load(std::memory_order_relaxed); }  // relaxed: see above

 private:
  struct sigaction old_int_ {};
  struct sigaction old_term_ {};
};

// Why the run should stop now (empty: it should not): a signal, or a failed checkpoint
// under --on-checkpoint-error=stop.
class StopCondition {
 public:
  explicit StopCondition(bool stop_on_checkpoint_error) : stop_on_checkpoint_error_(stop_on_checkpoint_error) {}
  void checkpoint_failed() { checkpoint_failed_.store(true, std::memory_order_relaxed); }  // relaxed: a flag
  std::string reason() const {
    const int sig = StopSignals::received();
    if (sig != 0) return std::string("interrupted by ") + (sig == SIGINT ? "SIGINT" : "SIGTERM");
    // relaxed: a flag; the failure's details travel through the manager's own lock
    if (stop_on_checkpoint_error_ && checkpoint_failed_.load(std::memory_order_relaxed))
      return "a checkpoint failed (--on-checkpoint-error=stop)";
    return std::string();
  }

 private:
  bool stop_on_checkpoint_error_;
  std::atomic<bool> checkpoint_failed_{false};
};

Result<std::pair<std::uint32_t, std::uint32_t>> parse_grid(const std::string& text) {
  const auto x = text.find('x');
  try {
    if (x != std::string::npos) {
      std::size_t used1 = 0, used2 = 0;
      const unsigned long w = std::stoul(text.substr(0, x), &used1);
      const unsigned long h = std::stoul(text.substr(x + 1), &used2);
      if (used1 == x && used2 == text.size() - x - 1 && w >= 1 && h >= 1 && w <= 65536 && h <= 65536)
        return std::make_pair(static_cast<std::uint32_t>(w), static_cast<std::uint32_t>(h));
    }
  } catch (const std::exception&) {
  }
  return Status(StatusCode::kInvalidArgument,
                "--grid '" + text + "' is not WIDTHxHEIGHT. Fix: e.g. --grid 256x256 (1..65536 each)");
}

// --replay-log: the writer every app's runtime records into, and its summary rows.
class ReplayLogSession {
 public:
  Status open(const RunOptions& o) {
    if (o.replay_log.empty()) {
      if (o.replay_log_capacity != kDefaultReplayLogCapacity || o.replay_log_sync_ms != 0 || o.replay_log_replace)
        return Status(StatusCode::kInvalidArgument,
                      "--replay-log-capacity, --replay-log-sync-ms and --replay-log-replace need --replay-log FILE");
      return Status();
    }
    ReplayLogOptions lo;
    lo.capacity_records = o.replay_log_capacity;
    lo.sync_interval = std::chrono::milliseconds(o.replay_log_sync_ms);
    lo.replace_existing = o.replay_log_replace;
    auto writer = ReplayLogWriter::create(o.replay_log, lo);
    if (!writer.ok()) return replay_log_refused(writer.status());
    writer_ = std::move(writer.value());
    return Status();
  }
  const std::shared_ptr<ReplayLogWriter>& writer() const { return writer_; }

  // Closes the log (a durability point) and adds its rows to the summary.
  Status finish(RunSummary& sum) {
    if (!writer_) return Status();
    const std::uint64_t written = writer_->written(), capacity = writer_->capacity();
    PKRT_RETURN_IF_ERROR(writer_->close());
    std::string row = std::to_string(written) + " records, " + writer_->path();
    if (written > capacity) row += " (wrapped: the oldest " + std::to_string(written - capacity) + " were overwritten)";
    sum.extra.push_back({"replay log", row});
    sum.extra_json["replay_log"] = {{"path", writer_->path()}, {"records", written}, {"capacity", capacity},
                                    {"wrapped", written > capacity}};
    return Status();
  }

 private:
  std::shared_ptr<ReplayLogWriter> writer_;
};

RuntimeOptions runtime_options(const RunOptions& o, BackendKind backend, const ReplayLogSession& log) {
  RuntimeOptions ro = run_runtime_options(o, backend);
  ro.replay_log = log.writer();
  ro.digest_period = log.writer() ? o.digest_every : 0;
  return ro;
}

}  // namespace

std::vector<examples::Heat2dScheduledInjection> heat2d_injection_schedule(const RunOptions& o,
                                                                        const examples::Heat2d::Params& p) {
  std::vector<examples::Heat2dScheduledInjection> injections;
  std::mt19937_64 rng(o.seed);
  for (std::uint32_t i = 0; i < o.injections; ++i) {
    examples::Heat2dScheduledInjection inj{};
    inj.epoch = 1 + rng() % std::max<std::uint64_t>(o.epochs, 1);
    inj.inject.x = static_cast<std::uint32_t>(rng() % p.width);
    inj.inject.y = static_cast<std::uint32_t>(rng() % p.height);
    inj.inject.amount = 1.0f + static_cast<float>(rng() % 1000) / 100.0f;
    injections.push_back(inj);
  }
  std::stable_sort(injections.begin(), injections.end(), [](const auto& a, const auto& b) { return a.epoch < b.epoch; });
  return injections;
}

Result<examples::Heat2d::Params> heat2d_params_from_flags(const RunOptions& o) {
  auto grid = parse_grid(o.grid);
  if (!grid.ok()) return grid.status();
  examples::Heat2d::Params p;
  p.width = grid->first;
  p.height = grid->second;
  p.seed = o.seed;
  p.stats_every = o.stats_every;
  examples::heat2d_choose_tiles(p, o.actors);
  if (p.tiles_x > p.width || p.tiles_y > p.height) {
    return Status(StatusCode::kInvalidArgument,
                  std::to_string(o.actors) + " actors cannot tile a " + o.grid +
                      " grid (tiles would be empty). Fix: use fewer --actors or a larger --grid");
  }
  return p;
}

RuntimeOptions run_runtime_options(const RunOptions& o, BackendKind backend) {
  RuntimeOptions ro;
  ro.chaos = o.chaos >= 0;
  ro.chaos_seed = o.chaos >= 0 ? static_cast<std::uint64_t>(o.chaos) : 0;
  ro.backend = backend;
  ro.num_actors = o.actors;
  ro.threads = o.threads;
  ro.ring_capacity = o.ring_capacity;
  // Checked by the option's validator: one of the names parse_poll_policy takes.
  const auto poll = parse_poll_policy(o.poll);
  ro.poll = poll.ok() ? poll.value() : PollPolicy::kAuto;
  ro.cuda_device = o.cuda_device;
  ro.cuda_blocks_per_sm = o.cuda_blocks_per_sm;
  ro.staging_bytes = o.staging_mib << 20;
  ro.watchdog_timeout = std::chrono::milliseconds(o.watchdog_ms);
  ro.k2k_delay = o.k2k_delay;
  return ro;
}

namespace {

// Runs to `target`, updating the progress line until the grid parks there. When `stop`
// gives a reason, parks the grid where it is and returns kAborted with that reason.
Status run_with_progress(Runtime& rt, std::uint64_t target, ProgressLine& progress,
                         const std::function<std::string()>& extra, const StopCondition& stop) {
  PKRT_RETURN_IF_ERROR(rt.set_target_epoch(target));
  const auto start = Clock::now();
  for (;;) {
    if (std::string why = stop.reason(); !why.empty()) {
      progress.finish();
      PKRT_RETURN_IF_ERROR(rt.pause());
      PKRT_RETURN_IF_ERROR(rt.wait_parked(std::chrono::minutes(1)));
      return Status(StatusCode::kAborted, why);
    }
    Status st = rt.run_until(target, std::chrono::milliseconds(100));
    if (st.ok()) break;
    if (st.code() != StatusCode::kTimeout) return st;
    const double secs = std::chrono::duration<double>(Clock::now() - start).count();
    const std::uint64_t e = rt.epoch();
    char buf[160];
    std::snprintf(buf, sizeof buf, "epoch %llu/%llu  %.0f epochs/s", static_cast<unsigned long long>(e),
                  static_cast<unsigned long long>(target), secs > 0 ? e / secs : 0.0);
    progress.update(buf + extra());
  }
  progress.finish();
  return Status();
}

// --checkpoint-dir, --checkpoint-every and --restore, shared by the apps.
class CheckpointSession {
 public:
  CheckpointSession(const RunOptions& o, StopCondition& stop, RunInputs inputs, ParamsDescriber describe_params)
      : o_(o), stop_(stop), inputs_(std::move(inputs)), describe_params_(std::move(describe_params)) {}

  static Status validate(const RunOptions& o) {
    if (o.checkpoint_every != 0 && o.checkpoint_dir.empty())
      return Status(StatusCode::kInvalidArgument, "--checkpoint-every needs --checkpoint-dir DIR");
    if (o.restore_epoch >= 0 && o.restore.empty())
      return Status(StatusCode::kInvalidArgument, "--restore-epoch needs --restore DIR");
    return Status();
  }

  // For apps that cannot checkpoint: the options are an error, never silently ignored.
  static Status refuse(const RunOptions& o) {
    if (!o.checkpoint_dir.empty() || !o.restore.empty() || o.checkpoint_every != 0 || o.restore_epoch >= 0)
      return Status(StatusCode::kInvalidArgument,
                    "--app " + o.app + " does not checkpoint or restore (its state is not meant to outlive a run). "
                    "Fix: drop --checkpoint-dir/--checkpoint-every/--restore/--restore-epoch, or use --app heat2d or racy_sum");
    return Status();
  }

  // Before start(): loads the restore point into the runtime and returns its epoch (0:
  // none); refuses one not before --epochs (the epoch to stop at: nothing would run).
  Result<std::uint64_t> restore(Runtime& rt) {
    auto epoch = load_restore_point(rt);
    if (epoch.ok() && epoch.value() != 0 && epoch.value() >= o_.epochs) {
      return Status(StatusCode::kInvalidArgument,
                    "the restore point is at epoch " + std::to_string(epoch.value()) + ", not before --epochs " +
                        std::to_string(o_.epochs) + ". Fix: pass a larger --epochs (the epoch to stop at)");
    }
    return epoch;
  }

  // Sets the first segment's target (run() sets each one; set before the launch too, so the
  // grid cannot run past it) and launches the grid.
  Status start(Runtime& rt, std::uint64_t restored_epoch) {
    PKRT_RETURN_IF_ERROR(rt.set_target_epoch(next_stop(restored_epoch, o_.epochs)));
    return rt.start();
  }

  // Where a run at epoch `e` parks next: the next multiple of --checkpoint-every when
  // checkpointing periodically, else `target`.
  std::uint64_t next_stop(std::uint64_t e, std::uint64_t target) const {
    return manager_ && o_.checkpoint_every != 0 ? std::min(target, (e / o_.checkpoint_every + 1) * o_.checkpoint_every)
                                                : target;
  }

  Status attach(Runtime& rt) {
    if (o_.checkpoint_dir.empty()) return Status();
    auto store = FileCheckpointStore::open(o_.checkpoint_dir);
    if (!store.ok()) return store.status();
    CheckpointPolicy policy;
    policy.keep_sets = o_.checkpoint_keep;
    policy.encode.zstd_level = o_.zstd_level;
    policy.inputs = inputs_;
    // Said when it happens, not at the end; the run loop then stops (or goes on).
    // The first few in full; a disk that stays full would otherwise print one per file.
    policy.on_failure = [this](const Status& st) {
      constexpr std::uint64_t kPrinted = 5;
      const std::uint64_t n = errors_printed_.fetch_add(1, std::memory_order_relaxed);  // relaxed: a counter
      if (n < kPrinted) std::fprintf(stderr, "\npkrt: checkpoint error: %s\n", st.to_string().c_str());
      if (n == kPrinted)
        std::fprintf(stderr, "\npkrt: further checkpoint errors are counted in the summary, not printed\n");
      stop_.checkpoint_failed();
    };
    auto manager = CheckpointManager::create(rt, std::move(store.value()), policy);
    if (!manager.ok()) return manager.status();
    manager_ = std::move(manager.value());
    staging_slots_ = rt.image_layout().staging_slots;
    staging_bytes_ = std::uint64_t{staging_slots_} * rt.image_layout().staging_slot_bytes;
    actors_ = o_.actors;
    return Status();
  }

  // Runs from `start` to `target`, checkpointing at every multiple of --checkpoint-every,
  // or only at `target` when it is 0. Each is taken on the parked epoch (one consistent
  // cut) and written by the manager's threads while the grid runs on.
  Status run(Runtime& rt, std::uint64_t start, std::uint64_t target, ProgressLine& progress,
             const std::function<std::string()>& extra) {
    std::uint64_t e = start;
    while (e < target) {
      const std::uint64_t next = next_stop(e, target);
      PKRT_RETURN_IF_ERROR(run_with_progress(rt, next, progress, extra, stop_));
      e = next;
      if (manager_ && (o_.checkpoint_every == 0 ? e == target : e % o_.checkpoint_every == 0)) {
        PKRT_RETURN_IF_ERROR(manager_->wait_served());
        auto id = manager_->checkpoint_at(e);
        if (!id.ok()) return id.status();
        PKRT_RETURN_IF_ERROR(manager_->wait_served());
      }
    }
    if (manager_) PKRT_RETURN_IF_ERROR(rt.wait_parked(std::chrono::minutes(10)));
    return Status();
  }

  Status finish() { return manager_ ? manager_->flush() : Status(); }

  // Whether the restored set held the commands queued at its epoch (they were posted again);
  // false for a set from a pkrt that did not capture them: the app sends them again itself.
  bool restored_queued() const { return restored_queued_; }
  std::size_t queued_count() const { return queued_count_; }

  void summarize(RunSummary& sum) const {
    // --restore: a run that could not load its checkpoint does not get here (maybe epoch 0).
    if (!o_.restore.empty()) sum.extra.push_back({"restored from", "epoch " + std::to_string(sum.restored_epoch)});
    if (!manager_) return;
    const CheckpointCounters c = manager_->counters();
    const auto stats = manager_->snapshot_stats();
    double stall = 0, latency = 0;
    std::size_t deltas = 0;
    for (const auto& s : stats) {
      stall += static_cast<double>(s.stall_ns) / 1e3;
      latency += s.request_to_durable_ms;
      deltas += s.delta ? 1 : 0;
    }
    const double n = stats.empty() ? 1.0 : static_cast<double>(stats.size());
    char buf[256];
    std::snprintf(buf, sizeof buf, "%llu sets committed, %llu failed; %llu files (%zu delta), %llu failed; "
                  "%llu deleted by retention; %s",
                  static_cast<unsigned long long>(c.sets_committed), static_cast<unsigned long long>(c.sets_failed),
                  static_cast<unsigned long long>(c.written), deltas, static_cast<unsigned long long>(c.failed),
                  static_cast<unsigned long long>(c.deleted), o_.checkpoint_dir.c_str());
    sum.extra.push_back({"checkpoints", buf});
    std::snprintf(buf, sizeof buf, "stall %.1f us, request-to-durable %.2f ms (means); copied %llu B, written %llu B",
                  stall / n, latency / n, static_cast<unsigned long long>(c.bytes_copied),
                  static_cast<unsigned long long>(c.bytes_written));
    sum.extra.push_back({"snapshot cost", buf});
    const std::uint32_t waves = (actors_ + staging_slots_ - 1) / std::max(staging_slots_, 1u);
    std::snprintf(buf, sizeof buf, "%u of %u actor images (%.2f MiB device), %u wave%s per checkpoint",
                  staging_slots_, actors_, static_cast<double>(staging_bytes_) / (1 << 20), waves,
                  waves == 1 ? "" : "s");
    sum.extra.push_back({"staging pool", buf});
    nlohmann::json snaps = nlohmann::json::array();
    for (const auto& s : stats) {
      const nlohmann::json who = s.actor == kGlobalRegionActor    ? nlohmann::json("global")
                                 : s.actor == kQueuedCommandsActor ? nlohmann::json("queued")
                                                                   : nlohmann::json(s.actor);
      snaps.push_back({{"actor", who},
                       {"epoch", s.epoch}, {"delta", s.delta}, {"ok", s.status.ok()},
                       {"stall_ns", s.stall_ns}, {"bytes_copied", s.bytes_copied}, {"bytes_written", s.bytes_written},
                       {"request_to_durable_ms", s.request_to_durable_ms}, {"file", s.file}});
    }
    sum.extra_json["checkpoints"] = {{"directory", o_.checkpoint_dir}, {"written", c.written},
                                     {"failed", c.failed}, {"sets_committed", c.sets_committed},
                                     {"sets_failed", c.sets_failed}, {"deleted", c.deleted}, {"bytes_copied", c.bytes_copied},
                                     {"bytes_written", c.bytes_written}, {"snapshots", snaps},
                                     {"staging_slots", staging_slots_}, {"staging_bytes", staging_bytes_}};
    if (c.failed != 0 || c.sets_failed != 0) sum.check_failed = true;
  }

 private:
  Result<std::uint64_t> load_restore_point(Runtime& rt) {
    if (o_.restore.empty()) return std::uint64_t{0};
    std::error_code ec;
    std::string dir = o_.restore;
    std::optional<std::uint64_t> epoch;
    if (o_.restore_epoch >= 0) epoch = static_cast<std::uint64_t>(o_.restore_epoch);
    if (std::filesystem::is_regular_file(o_.restore, ec)) {
      // A file (a member or a set manifest) names its directory and (unless
      // --restore-epoch says otherwise) the epoch of the set to restore.
      const std::filesystem::path file(o_.restore);
      dir = file.has_parent_path() ? file.parent_path().string() : ".";
      auto bytes = read_checkpoint_file(o_.restore);
      if (!bytes.ok()) return bytes.status();
      std::uint64_t file_epoch = 0;
      if (file.extension() == kCheckpointManifestSuffix) {
        auto parsed = parse_checkpoint_manifest(bytes.value(), o_.restore);
        if (!parsed.ok()) return parsed.status();
        file_epoch = parsed->epoch;
      } else {
        auto parsed = parse_checkpoint(bytes.value(), o_.restore);
        if (!parsed.ok()) return parsed.status();
        file_epoch = parsed->info.epoch;
      }
      if (epoch && *epoch != file_epoch) {
        return Status(StatusCode::kInvalidArgument,
                      "--restore '" + o_.restore + "' is a checkpoint of epoch " + std::to_string(file_epoch) +
                          ", but --restore-epoch asks for " + std::to_string(*epoch) +
                          ". Fix: give the directory with --restore-epoch, or the file alone");
      }
      epoch = file_epoch;
    } else if (!std::filesystem::is_directory(o_.restore, ec)) {
      return Status(StatusCode::kInvalidArgument,
                    "--restore '" + o_.restore + "' is neither a checkpoint file nor a directory");
    }
    auto store = FileCheckpointStore::open_existing(dir);
    if (!store.ok()) return store.status();
    RestoreQuery query;
    query.fingerprint = checkpoint_fingerprint(rt);
    query.inputs = inputs_;
    query.epoch = epoch;
    query.describe_params = describe_params_;
    auto point = find_restore_point(*store.value(), query);
    if (!point.ok()) return Status(point.status().code(), "--restore " + o_.restore + ": " + point.status().message());
    for (const std::string& skipped : point->skipped)
      std::fprintf(stderr, "pkrt: warning: passed over the %s\n", skipped.c_str());
    PKRT_RETURN_IF_ERROR(rt.restore_before_start(point->epoch, point->images, point->global, point->queued));
    restored_queued_ = point->has_queued;
    queued_count_ = point->queued.size();
    std::fprintf(stderr, "pkrt: restored %u actors%s%s from %s committed set, epoch %llu (%s)\n",
                 rt.options().num_actors, point->global.empty() ? "" : " and the global region",
                 point->has_queued ? (" with " + std::to_string(point->queued.size()) + " queued commands").c_str() : "",
                 epoch ? "the requested" : "the newest",
                 static_cast<unsigned long long>(point->epoch), store.value()->describe(point->manifest).c_str());
    return point->epoch;
  }

  const RunOptions& o_;
  StopCondition& stop_;
  RunInputs inputs_;
  ParamsDescriber describe_params_;
  std::atomic<std::uint64_t> errors_printed_{0};
  std::unique_ptr<CheckpointManager> manager_;
  std::uint32_t staging_slots_ = 0;  // the runtime's staging pool, for the summary
  std::uint64_t staging_bytes_ = 0;
  std::uint32_t actors_ = 0;
  bool restored_queued_ = false;
  std::size_t queued_count_ = 0;
};

// heat2d's Params as the options that set them, for a restore that finds other ones.
std::string describe_heat2d_params(std::span<const std::byte> bytes) {
  examples::Heat2d::Params p;
  if (bytes.size() != sizeof p) return std::to_string(bytes.size()) + " bytes of another program's params";
  std::memcpy(&p, bytes.data(), sizeof p);
  char buf[160];
  std::snprintf(buf, sizeof buf, "--grid %ux%u --actors %u --seed %llu --stats-every %u (alpha %g)", p.width, p.height,
                p.tiles_x * p.tiles_y, static_cast<unsigned long long>(p.seed), p.stats_every, static_cast<double>(p.alpha));
  return buf;
}

Status run_heat2d(const RunOptions& o, BackendKind backend, const ReplayLogSession& log, RunSummary& sum,
                  ProgressLine& progress, StopCondition& stop) {
  auto params = heat2d_params_from_flags(o);
  if (!params.ok()) return params.status();
  const examples::Heat2d::Params& p = params.value();
  if (o.injections > o.ring_capacity / 2) {
    return Status(StatusCode::kInvalidArgument,
                  "--injections " + std::to_string(o.injections) + " exceeds half the ring capacity (" +
                      std::to_string(o.ring_capacity) + "). Fix: raise --ring-capacity");
  }
  PKRT_RETURN_IF_ERROR(CheckpointSession::validate(o));
  // Declared before the runtime: its pump thread calls the event callback that uses them
  // until the runtime is destroyed.
  std::mutex mu;
  std::map<std::uint64_t, std::pair<double, std::uint32_t>> heat;  // epoch -> (sum, tiles)
  auto created = Runtime::create(examples::heat2d_program(), p, runtime_options(o, backend, log));
  if (!created.ok()) return created.status();
  Runtime& rt = *created.value();
  // Declared after the runtime: its manager must be destroyed first. The inputs are the
  // options outside Params that decide the history: the injection schedule is drawn from
  // --injections and --epochs (and the seed, which Params holds).
  RunInputs inputs = {{"--injections", std::to_string(o.injections)}};
  if (o.injections != 0) inputs.emplace_back("--epochs", std::to_string(o.epochs));
  CheckpointSession checkpoints(o, stop, std::move(inputs), describe_heat2d_params);
  std::fprintf(stderr, "pkrt: backend %s\n", rt.backend_description().c_str());
  auto restored = checkpoints.restore(rt);
  if (!restored.ok()) return restored.status();
  sum.restored_epoch = restored.value();
  PKRT_RETURN_IF_ERROR(checkpoints.attach(rt));
  rt.set_event_callback([&](const Event& ev) {
    if (ev.opcode != examples::kHeat2dStats) return;
    std::lock_guard<std::mutex> lock(mu);
    auto& [s, n] = heat[ev.epoch];
    s += ev.as<examples::Heat2dStatsData>().sum;
    ++n;
  });
  auto latest_heat = [&]() -> std::string {
    std::lock_guard<std::mutex> lock(mu);
    for (auto it = heat.rbegin(); it != heat.rend(); ++it) {
      if (it->second.second == o.actors) {
        char buf[64];
        std::snprintf(buf, sizeof buf, "  total heat %.6g", it->second.first);
        return buf;
      }
    }
    return "";
  };

  std::vector<examples::Heat2dScheduledInjection> injections = heat2d_injection_schedule(o, p);
  // A restored run already holds the injections up to its restore epoch in its state, and
  // the later ones in the commands its checkpoint set restored (a set from before pkrt
  // captured queued commands has none: those are sent again).
  std::erase_if(injections, [&](const auto& inj) {
    return !o.restore.empty() && (inj.epoch <= sum.restored_epoch || checkpoints.restored_queued());
  });

  // Commands before the launch: every injection is in its ring before its epoch comes.
  std::vector<ReplyFuture> acks;
  for (const auto& inj : injections)
    acks.push_back(rt.send(examples::Heat2d::actor_of(p, inj.inject.x, inj.inject.y),
                           examples::kHeat2dInject, inj.inject, inj.epoch));
  const auto t0 = Clock::now();
  PKRT_RETURN_IF_ERROR(checkpoints.start(rt, sum.restored_epoch));
  Status ran = checkpoints.run(rt, sum.restored_epoch, o.epochs, progress, latest_heat);
  // A stop (signal, failed checkpoint) parks the grid: the summary and checksum are of the
  // parked epoch.
  if (ran.code() == StatusCode::kAborted && !stop.reason().empty()) sum.stopped = ran.message();
  else PKRT_RETURN_IF_ERROR(ran);
  // Failures were reported as they happened and are counted in the summary.
  checkpoints.finish().ignore();
  sum.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  const std::uint64_t reached = rt.stats().epoch;
  std::uint64_t applied_late = 0;
  for (std::size_t i = 0; i < acks.size(); ++i) {
    if (injections[i].epoch > reached) continue;  // the run stopped before it was due
    Reply r = acks[i].get();
    if (!r.status.ok()) return r.status;
    if (r.event.epoch != injections[i].epoch) ++applied_late;
  }
  auto field = examples::heat2d_gather(rt, p);
  if (!field.ok()) return field.status();
  sum.checksum = examples::heat2d_checksum(field.value());
  sum.stats = rt.stats();
  PKRT_RETURN_IF_ERROR(rt.shutdown());
  sum.backend = rt.backend_description();
  sum.poll = poll_policy_name(rt.poll_policy());
  sum.blocks = sum.stats.blocks;
  double total = 0;
  for (float v : field.value()) total += v;
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.9g", total);
  sum.extra = {{"grid", std::to_string(p.width) + " x " + std::to_string(p.height) + " (" +
                            std::to_string(p.tiles_x) + " x " + std::to_string(p.tiles_y) + " tiles)"},
               {"injections", std::to_string(injections.size()) + " (" + std::to_string(applied_late) +
                                  " applied after their epoch)"},
               {"total heat", buf}};
  sum.check_failed = applied_late != 0;
  sum.extra_json = {{"grid", {p.width, p.height}},
                    {"tiles", {p.tiles_x, p.tiles_y}},
                    {"injections", injections.size()},
                    {"total_heat", total},
                    {"restored_epoch", sum.restored_epoch}};
  if (checkpoints.restored_queued()) {
    sum.extra.push_back({"restored commands", std::to_string(checkpoints.queued_count()) +
                                                  " queued at the restore epoch, posted again"});
    sum.extra_json["restored_queued_commands"] = checkpoints.queued_count();
  }
  checkpoints.summarize(sum);
  return Status();
}

Status run_echo(const RunOptions& o, BackendKind backend, const ReplayLogSession& log, RunSummary& sum,
                ProgressLine& progress, StopCondition& stop) {
  PKRT_RETURN_IF_ERROR(CheckpointSession::refuse(o));
  auto created = Runtime::create(examples::echo_program(), examples::Echo::Params{}, runtime_options(o, backend, log));
  if (!created.ok()) return created.status();
  Runtime& rt = *created.value();
  std::fprintf(stderr, "pkrt: backend %s\n", rt.backend_description().c_str());
  const auto t0 = Clock::now();
  PKRT_RETURN_IF_ERROR(rt.start());
  std::mt19937_64 rng(o.seed);
  // Constant memory however many round trips are asked for (up to 2^32).
  detail::LatencyHistogram rtt;
  std::uint64_t mismatches = 0;
  std::uint32_t crc = 0;
  for (std::uint64_t i = 0; i < o.messages; ++i) {
    if (std::string why = stop.reason(); !why.empty()) {
      sum.stopped = why + " after " + std::to_string(i) + " round trips";
      break;
    }
    std::array<std::uint64_t, 4> payload{rng(), rng(), rng(), i};
    const auto s = Clock::now();
    Reply r = rt.send(static_cast<std::uint32_t>(i % o.actors), examples::kEchoPing, payload).get();
    rtt.record(std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - s));
    if (!r.status.ok()) return r.status;
    if (std::memcmp(r.event.data.data(), payload.data(), sizeof payload) != 0) ++mismatches;
    crc = crc32(r.event.data.data(), r.event.data.size(), crc);
    if (i % 1000 == 0)
      progress.update("message " + std::to_string(i) + "/" + std::to_string(o.messages));
  }
  progress.finish();
  sum.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  sum.stats = rt.stats();
  PKRT_RETURN_IF_ERROR(rt.shutdown());
  sum.backend = rt.backend_description();
  sum.poll = poll_policy_name(rt.poll_policy());
  sum.blocks = sum.stats.blocks;
  sum.epochs = sum.stats.epoch;
  sum.checksum = crc;
  auto pct_us = [&](double p) { return rtt.percentile(p) / 1000.0; };
  char buf[128];
  std::snprintf(buf, sizeof buf, "p50 %.2f us, p99 %.2f us", pct_us(50), pct_us(99));
  sum.extra = {{"round trips", std::to_string(rtt.count()) + " (" + std::to_string(mismatches) + " mismatched)"},
               {"round trip", buf}};
  sum.extra_json = {{"round_trips", rtt.count()}, {"mismatches", mismatches},
                    {"rtt_p50_us", pct_us(50)}, {"rtt_p99_us", pct_us(99)}};
  sum.check_failed = mismatches != 0;
  return Status();
}

// racy_sum's Params as the options that set them.
std::string describe_racy_sum_params(std::span<const std::byte> bytes) {
  examples::RacySum::Params p;
  if (bytes.size() != sizeof p) return std::to_string(bytes.size()) + " bytes of another program's params";
  std::memcpy(&p, bytes.data(), sizeof p);
  return "--seed " + std::to_string(p.seed) + " (report every " + std::to_string(p.report_every) + ")";
}

// racy_sum checkpoints like heat2d: its accumulator lives in the global region, which every
// checkpoint set holds, so a restored run reports the total of its restore epoch correctly.
Status run_racy_sum(const RunOptions& o, BackendKind backend, const ReplayLogSession& log, RunSummary& sum,
                    ProgressLine& progress, StopCondition& stop) {
  PKRT_RETURN_IF_ERROR(CheckpointSession::validate(o));
  examples::RacySum::Params p;
  p.seed = o.seed;
  // Declared before the runtime, whose pump calls the callback that uses them.
  std::mutex mu;
  std::map<std::uint64_t, float> totals;
  auto created = Runtime::create(examples::racy_sum_program(), p, runtime_options(o, backend, log));
  if (!created.ok()) return created.status();
  Runtime& rt = *created.value();
  // Declared after the runtime: its manager must be destroyed first. --epochs does not
  // change racy_sum's history, so the run has no inputs beyond Params.
  CheckpointSession checkpoints(o, stop, RunInputs{}, describe_racy_sum_params);
  std::fprintf(stderr, "pkrt: backend %s\n", rt.backend_description().c_str());
  auto restored = checkpoints.restore(rt);
  if (!restored.ok()) return restored.status();
  sum.restored_epoch = restored.value();
  PKRT_RETURN_IF_ERROR(checkpoints.attach(rt));
  rt.set_event_callback([&](const Event& ev) {
    if (ev.opcode != examples::kRacySumTotal) return;
    const auto d = ev.as<examples::RacySumTotalData>();
    std::lock_guard<std::mutex> lock(mu);
    totals[d.epoch] = d.total;
  });
  const auto t0 = Clock::now();
  PKRT_RETURN_IF_ERROR(checkpoints.start(rt, sum.restored_epoch));
  Status ran = checkpoints.run(rt, sum.restored_epoch, o.epochs, progress, [] { return std::string(); });
  if (ran.code() == StatusCode::kAborted && !stop.reason().empty()) sum.stopped = ran.message();
  else PKRT_RETURN_IF_ERROR(ran);
  checkpoints.finish().ignore();
  sum.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  sum.stats = rt.stats();
  PKRT_RETURN_IF_ERROR(rt.shutdown());
  sum.backend = rt.backend_description();
  sum.poll = poll_policy_name(rt.poll_policy());
  sum.blocks = sum.stats.blocks;
  std::uint32_t crc = 0;
  float last = 0;
  for (const auto& [e, t] : totals) {
    crc = crc32(&t, sizeof t, crc);
    last = t;
  }
  sum.checksum = crc;
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.9g", last);
  sum.extra = {{"totals", std::to_string(totals.size()) + " epochs reported (checksum covers them)"},
               {"last total", buf}};
  sum.extra_json = {{"totals_reported", totals.size()}, {"last_total", last}, {"restored_epoch", sum.restored_epoch}};
  checkpoints.summarize(sum);
  return Status();
}

}  // namespace

void add_run_command(CLI::App& app, RunOptions& o) {
  CLI::App* run = app.add_subcommand("run", "Run a built-in example and print a summary");
  run->add_option("--app", o.app, "Example to run")->check(CLI::IsMember({"heat2d", "echo", "racy_sum"}))->capture_default_str();
  run->add_option("--backend", o.backend, "auto (CUDA when usable, else CPU), cpu, or cuda")
      ->check(CLI::IsMember({"auto", "cpu", "cuda"}))->capture_default_str();
  run->add_option("--actors", o.actors, "Number of actors (heat2d: tiles)")->check(CLI::Range(1u, 1u << 20))->capture_default_str();
  run->add_option("--threads", o.threads, "CPU backend worker threads (0: hardware concurrency)")->check(CLI::Range(0u, 1024u))->capture_default_str();
  run->add_option("--epochs", o.epochs, "Epoch to stop at (heat2d, racy_sum)")->check(CLI::Range(std::uint64_t{1}, std::uint64_t{1} << 40))->capture_default_str();
  run->add_option("--grid", o.grid, "heat2d grid size, WIDTHxHEIGHT")->capture_default_str();
  run->add_option("--seed", o.seed, "Seed for initial data and injections")->capture_default_str();
  run->add_option("--messages", o.messages, "echo: round trips to make")->check(CLI::Range(std::uint64_t{1}, std::uint64_t{1} << 32))->capture_default_str();
  run->add_option("--injections", o.injections, "heat2d: random heat injections at random epochs")->capture_default_str();
  run->add_option("--stats-every", o.stats_every, "heat2d: epochs between statistics events (0: none)")->capture_default_str();
  run->add_option("--watchdog-ms", o.watchdog_ms, "Heartbeat timeout before the run is stopped")->check(CLI::Range(10u, 3600000u))->capture_default_str();
  run->add_option("--ring-capacity", o.ring_capacity, "Slots per H2K/K2H ring (power of two)")->capture_default_str();
  run->add_option("--poll", o.poll,
                  "How idle pollers wait: latency (spin while a request is outstanding; CUDA default), "
                  "balanced (spin, yield, then sleeps of at most 50 us; CPU default), low_power, or auto")
      ->check(CLI::IsMember({"auto", "latency", "balanced", "low_power"}))
      ->capture_default_str();
  run->add_option("--cuda-device", o.cuda_device, "CUDA device index")->capture_default_str();
  run->add_option("--cuda-blocks-per-sm", o.cuda_blocks_per_sm,
                  "CUDA: resident blocks per SM at most (1 suits most apps; the grid leaves the rest of "
                  "the GPU free)")
      ->check(CLI::Range(1u, 32u))
      ->capture_default_str();
  run->add_option("--staging-mib", o.staging_mib,
                  "Device memory for snapshot staging, MiB (0: a quarter of the actors' state, at most 256, at "
                  "least 64 or the whole state; at least one actor's image). A smaller pool checkpoints in waves, "
                  "holding the grid longer")
      ->check(CLI::Range(std::uint64_t{0}, std::uint64_t{1} << 30))
      ->capture_default_str();
  run->add_option("--checkpoint-dir", o.checkpoint_dir, "heat2d, racy_sum: write checkpoint sets to this directory");
  run->add_option("--checkpoint-every", o.checkpoint_every, "Epochs between checkpoints (0: one at the end)")->capture_default_str();
  run->add_option("--on-checkpoint-error", o.on_checkpoint_error,
                  "stop: a failed checkpoint stops the run (summary, checksum, exit 1); continue: keep running "
                  "and exit 1 at the end")
      ->check(CLI::IsMember({"stop", "continue"}))
      ->capture_default_str();
  run->add_option("--checkpoint-keep", o.checkpoint_keep, "Newest committed checkpoint sets kept")->check(CLI::Range(1u, 1000000u))->capture_default_str();
  run->add_option("--zstd-level", o.zstd_level, "zstd level for checkpoint chunks (0: store raw)")->check(CLI::Range(0, 19))->capture_default_str();
  run->add_option("--restore", o.restore, "heat2d, racy_sum: start from a checkpoint FILE, or the newest complete one in a DIR");
  run->add_option("--restore-epoch", o.restore_epoch, "With --restore DIR: the epoch to restore")->check(CLI::Range(std::int64_t{0}, std::int64_t{1} << 40));
  run->add_option("--replay-log", o.replay_log, "Record every ring slot into this replay log (pkrt replay FILE checks it)");
  run->add_option("--replay-log-capacity", o.replay_log_capacity, "Records the log holds; a longer run keeps the newest")
      ->check(CLI::Range(std::uint64_t{16}, kReplayMaxCapacity))->capture_default_str();
  run->add_option("--replay-log-sync-ms", o.replay_log_sync_ms, "msync the log this often (0: only at the end)")->capture_default_str();
  run->add_flag("--replay-log-replace", o.replay_log_replace,
                "Replace a file already at --replay-log (only once the new log is ready); without it an existing "
                "file is refused");
  run->add_option("--digest-every", o.digest_every, "With --replay-log: actors report a CRC32 of their state every N epochs (0: never)")->capture_default_str();
  run->add_option("--chaos", o.chaos, "CPU chaos mode with this seed: seeded block order and worker delays")
      ->check(CLI::Range(std::int64_t{0}, std::numeric_limits<std::int64_t>::max()));
  run->add_option("--k2k-delay", o.k2k_delay,
                  "Epochs between an actor's K2K send and its read (heat2d halos; 1: the next epoch). Part of the "
                  "computation: a different delay is a different run. Under mpirun, D > 1 overlaps the ranks' "
                  "exchange with D - 1 epochs of compute")
      ->check(CLI::Range(1u, kMaxK2KDelay))
      ->capture_default_str();
  run->add_option("--partition", o.partition,
                  "Under mpirun: which rank runs which heat2d tile: tiles (rectangles of tiles, fewest halos "
                  "between ranks) or contiguous (equal blocks of actor ids)")
      ->check(CLI::IsMember({"tiles", "contiguous"}))
      ->capture_default_str();
  run->add_flag("--json", o.json, "Print the summary as JSON on stdout");
  run->add_flag("--quiet", o.quiet, "No progress line");
}

int run_command(const RunOptions& o) {
  // Under mpirun every rank runs one shard of the program (host/cli/run_mpi.cpp). A multi-rank
  // run's global checkpoints are restored the same way, here on one rank (MPI's singleton).
  if (launched_by_mpirun() || (!o.restore.empty() && holds_global_checkpoints(o.restore))) return run_mpi_command(o);
  auto backend = parse_backend(o.backend);
  if (!backend.ok()) return report_error("run", backend.status());
  ProgressLine progress(!o.quiet);
  RunSummary sum;
  sum.app = o.app;
  sum.actors = o.actors;
  sum.epochs = o.epochs;
  if (o.on_checkpoint_error != "stop" && o.on_checkpoint_error != "continue")
    return report_error("run", Status(StatusCode::kInvalidArgument, "--on-checkpoint-error must be stop or continue"));
  const StopSignals signals;
  StopCondition stop(o.on_checkpoint_error == "stop");
  ReplayLogSession log;
  Status st = log.open(o);
  if (st.ok()) {
    if (o.app == "heat2d") st = run_heat2d(o, backend.value(), log, sum, progress, stop);
    else if (o.app == "echo") st = run_echo(o, backend.value(), log, sum, progress, stop);
    else st = run_racy_sum(o, backend.value(), log, sum, progress, stop);
  }
  progress.finish();
  if (st.ok()) st = log.finish(sum);
  if (!st.ok()) return report_error("run", st);

  // A restored run only ran the epochs after its restore point.
  const double eps =
      sum.seconds > 0 ? static_cast<double>(sum.stats.epoch - std::min(sum.stats.epoch, sum.restored_epoch)) / sum.seconds
                      : 0.0;
  if (o.json) {
    nlohmann::json j = {
        {"app", sum.app},
        {"backend", sum.backend},
        {"actors", sum.actors},
        {"blocks", sum.blocks},
        {"threads_per_block", sum.stats.threads_per_block},
        {"epochs", sum.stats.epoch},
        {"seconds", sum.seconds},
        {"epochs_per_second", eps},
        {"poll", sum.poll},
        {"messages", {{"h2k", sum.stats.commands_sent}, {"k2h", sum.stats.events_received},
                      {"replies", sum.stats.replies}, {"errors", sum.stats.errors}, {"posts", sum.stats.posts}}},
        {"checksum", hex32(sum.checksum)},
        {"check_failed", sum.check_failed},
        {"stopped", sum.stopped.empty() ? nlohmann::json(nullptr) : nlohmann::json(sum.stopped)},
    };
    j.update(sum.extra_json);
    std::printf("%s\n", j.dump(2).c_str());
  } else {
    char rate[64], secs[64];
    std::snprintf(rate, sizeof rate, "%.1f", eps);
    std::snprintf(secs, sizeof secs, "%.3f s", sum.seconds);
    std::vector<std::pair<std::string, std::string>> rows = {
        {"app", sum.app},
        {"backend", sum.backend},
        {"poll policy", sum.poll},
        {"actors", std::to_string(sum.actors) + " on " + std::to_string(sum.blocks) + " block(s) x " +
                       std::to_string(sum.stats.threads_per_block) + " thread(s)"},
        {"epochs", std::to_string(sum.stats.epoch)},
        {"wall time", secs},
        {"epochs/s", rate},
        {"messages", "H2K " + std::to_string(sum.stats.commands_sent) + ", K2H " +
                         std::to_string(sum.stats.events_received) + " (replies " +
                         std::to_string(sum.stats.replies) + ", errors " + std::to_string(sum.stats.errors) + ")"},
    };
    rows.insert(rows.end(), sum.extra.begin(), sum.extra.end());
    if (!sum.stopped.empty()) rows.emplace_back("STOPPED", "at epoch " + std::to_string(sum.stats.epoch) + ": " + sum.stopped);
    rows.emplace_back(sum.app == "heat2d" ? "final field checksum" : "checksum", hex32(sum.checksum));
    print_table(stdout, "pkrt run summary", rows);
  }
  // 128 + the signal, as a shell reports a process the signal killed (130, 143).
  if (const int sig = StopSignals::received(); sig != 0) return 128 + sig;
  if (!sum.stopped.empty()) return kExitFailed;
  return sum.check_failed ? kExitFailed : kExitOk;
}

}  // namespace pkrt::cli
