// host/cli/run_mpi.cpp: `mpirun -np R pkrt run --app heat2d ...`: every rank runs the tiles
// the partition gives it (pkrt/mpi.hpp), halos cross ranks through the K2K exchange, and
// rank 0 prints one summary whose field checksum equals the single-process run's.
// Built only with MPI (PKRT_HAVE_MPI); without it an mpirun launch is refused, since every
// rank would otherwise run the whole program on its own.
#include "examples/heat2d/heat2d_host.hpp"
#include "host/cli/cli_common.hpp"
#include "host/cli/commands.hpp"

#include <pkrt/crc32.hpp>
#include <pkrt/k2k_log.hpp>
#include <pkrt/replay_log.hpp>
#include <pkrt/runtime.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <exception>
#include <random>
#include <string>
#include <vector>

#if PKRT_HAVE_MPI
#include <pkrt/mpi.hpp>
#endif

namespace pkrt::cli {

bool holds_global_checkpoints(const std::string& directory) {
  std::error_code ec;
  if (!std::filesystem::is_directory(directory, ec)) return false;
  for (const auto& entry : std::filesystem::directory_iterator(directory, ec))
    if (entry.path().extension() == ".pkglobal") return true;
  return false;
}

bool launched_by_mpirun() {
  // Open MPI's launcher sets OMPI_COMM_WORLD_SIZE; PMI_SIZE covers Slurm/PMI launches.
  for (const char* name : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE"}) {
    const char* v = std::getenv(name);
    if (v != nullptr && std::atoi(v) > 1) return true;
  }
  return false;
}

#if !PKRT_HAVE_MPI

Status built_without_mpi() {
  if (!launched_by_mpirun()) {
    return Status(StatusCode::kUnsupported,
                  "--restore names the global checkpoints of a multi-rank run, which only a pkrt built with MPI "
                  "restores. Fix: apt-get install libopenmpi-dev openmpi-bin and rebuild (PKRT_ENABLE_MPI=AUTO finds it)");
  }
  return Status(StatusCode::kUnsupported,
                "launched by mpirun, but this pkrt was built without MPI: every rank would do the whole job alone. "
                "Fix: apt-get install libopenmpi-dev openmpi-bin and rebuild (PKRT_ENABLE_MPI=AUTO finds it), or run "
                "without mpirun");
}

int run_mpi_command(const RunOptions&) { return report_error("run", built_without_mpi()); }
int replay_mpi_command(const ReplayOptions&) { return report_error("replay", built_without_mpi()); }

#else

namespace {

// What rank 0 reports.
struct MpiRunSummary {
  std::uint32_t checksum = 0;
  double total_heat = 0;
  double seconds = 0;
  std::uint64_t epoch = 0;
  std::uint64_t injections = 0;
  std::uint64_t applied_late = 0;
  std::uint64_t restored_epoch = 0;
  std::uint64_t checkpoints = 0;  // global checkpoints committed
  std::uint64_t messages = 0;  // K2K messages between ranks, all ranks
  std::uint64_t bytes = 0;
  double exchange_seconds = 0;  // the largest rank's time in exchanges
  std::string backend;
  std::string exchange_path;  // ShardedRuntime::exchange_path (rank 0's)
  RuntimeStats stats;  // every rank's counters summed
  std::uint64_t log_records = 0;  // this rank's replay log (rank 0's is printed)
};

// Statuses that must agree on every rank become one: the first failing rank's, named;
// `first_failed` is that rank (-1: none); `same_as_rank0`: rank 0 failed with this very error
// (a bad launch fails every rank alike, and one copy of the message is enough).
Status agree(MPI_Comm comm, const Status& mine, int& first_failed, bool* same_as_rank0 = nullptr) {
  first_failed = -1;
  int rank = 0, size = 1;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &size);
  const std::uint32_t text_crc = crc32(mine.message().data(), mine.message().size());
  const std::uint32_t code_and_text[2] = {static_cast<std::uint32_t>(mine.code()), text_crc};
  std::vector<std::uint32_t> all(2 * static_cast<std::size_t>(size));
  MPI_Allgather(code_and_text, 2, MPI_UINT32_T, all.data(), 2, MPI_UINT32_T, comm);
  if (same_as_rank0 != nullptr) *same_as_rank0 = !mine.ok() && all[0] == code_and_text[0] && all[1] == text_crc;
  for (int r = 0; r < size; ++r) {
    const std::uint32_t code = all[2 * static_cast<std::size_t>(r)];
    if (code == 0) continue;
    first_failed = r;
    if (r == rank) return mine;
    return Status(static_cast<StatusCode>(code), "rank " + std::to_string(r) + " failed; its output says why");
  }
  return Status();
}

Status run_heat2d_ranks(const RunOptions& o, MpiRunSummary& sum, int rank, int size, ProgressLine& progress) {
  if (o.app != "heat2d") {
    return Status(StatusCode::kUnsupported, "under mpirun only --app heat2d runs over ranks for now. Fix: run " + o.app +
                                                " without mpirun");
  }
  if (o.chaos >= 0) {
    return Status(StatusCode::kUnsupported,
                  "--chaos perturbs one process's worker threads; it does not run over ranks. Fix: drop it, or run "
                  "without mpirun");
  }
  auto backend = parse_backend(o.backend);
  if (!backend.ok()) return backend.status();
  if (static_cast<std::uint32_t>(size) > o.actors) {
    return Status(StatusCode::kInvalidArgument, std::to_string(size) + " ranks for " + std::to_string(o.actors) +
                                                    " actors would leave ranks without actors. Fix: run with mpirun -np " +
                                                    std::to_string(o.actors) + " or fewer, or more --actors");
  }
  auto params = heat2d_params_from_flags(o);
  if (!params.ok()) return params.status();
  examples::Heat2d::Params p = params.value();
  p.stats_every = 0;  // statistics events would surface on each rank alone
  mpi::ShardOptions so;
  so.runtime = run_runtime_options(o, backend.value());
  // --replay-log FILE: each rank records FILE.rank<r> and, beside it, the K2K it receives
  // (FILE.rank<r>.k2k), so `pkrt replay FILE.rank<r>` replays that rank alone.
  std::shared_ptr<ReplayLogWriter> log;
  if (!o.replay_log.empty()) {
    ReplayLogOptions lo;
    lo.capacity_records = o.replay_log_capacity;
    lo.sync_interval = std::chrono::milliseconds(o.replay_log_sync_ms);
    lo.replace_existing = o.replay_log_replace;
    const std::string path = o.replay_log + ".rank" + std::to_string(rank);
    auto writer = ReplayLogWriter::create(path, lo);
    if (!writer.ok()) return replay_log_refused(writer.status());
    log = std::move(writer.value());
    so.runtime.replay_log = log;
    so.runtime.digest_period = o.digest_every;
    so.k2k_log = k2k_log_path(path);
  }
  so.exchange_timeout = std::chrono::milliseconds(std::max<std::uint32_t>(o.watchdog_ms, 1000) * 3);
  if (o.partition == "tiles") {
    auto tiles = ActorPartition::tiles_2d(p.tiles_x, p.tiles_y, static_cast<std::uint32_t>(size));
    if (!tiles.ok()) return tiles.status();
    so.partition = std::move(tiles.value());
  }
  auto created = mpi::ShardedRuntime::create(MPI_COMM_WORLD, examples::heat2d_program(), p, so);
  if (!created.ok()) return created.status();
  mpi::ShardedRuntime& shard = *created.value();
  if (rank == 0)
    std::fprintf(stderr, "pkrt: %d ranks, partition %s, K2K delay %u, backend %s\n", size,
                 shard.partition().description().c_str(), o.k2k_delay, shard.local().backend_description().c_str());
  // As in the single-process run: the options outside Params that decide the history.
  RunInputs inputs = {{"--injections", std::to_string(o.injections)}};
  if (o.injections != 0) inputs.emplace_back("--epochs", std::to_string(o.epochs));
  if (!o.restore.empty()) {
    std::vector<std::string> skipped;
    auto restored = shard.restore(o.restore, o.restore_epoch >= 0 ? std::optional<std::uint64_t>(o.restore_epoch) : std::nullopt,
                                  inputs, &skipped);
    for (const std::string& s : skipped) std::fprintf(stderr, "pkrt: warning: passed over the %s\n", s.c_str());
    if (!restored.ok()) return restored.status();
    sum.restored_epoch = restored.value();
    if (rank == 0)
      std::fprintf(stderr, "pkrt: restored %u actors from the global checkpoint of epoch %llu in %s\n", o.actors,
                   static_cast<unsigned long long>(sum.restored_epoch), o.restore.c_str());
  }
  if (!o.checkpoint_dir.empty()) {
    mpi::GlobalCheckpointOptions co;
    co.directory = o.checkpoint_dir;
    co.keep = o.checkpoint_keep;
    co.encode.zstd_level = o.zstd_level;
    co.inputs = inputs;
    PKRT_RETURN_IF_ERROR(shard.enable_checkpoints(co));
  }

  // The single-process run's injection schedule; each rank sends those for its own tiles.
  const std::vector<examples::Heat2dScheduledInjection> injections = heat2d_injection_schedule(o, p);
  std::vector<std::pair<std::uint64_t, ReplyFuture>> acks;
  for (const auto& inj : injections) {
    // A restored run holds the earlier ones in its state and the later ones in the commands
    // its checkpoint restored.
    if (!o.restore.empty()) break;
    const std::uint32_t actor = examples::Heat2d::actor_of(p, inj.inject.x, inj.inject.y);
    if (!shard.owns(actor)) continue;
    acks.emplace_back(inj.epoch, shard.local().send(shard.local_index(actor), examples::kHeat2dInject, inj.inject, inj.epoch));
  }
  const auto t0 = std::chrono::steady_clock::now();
  PKRT_RETURN_IF_ERROR(shard.start());
  // Runs in steps (progress), stopping at every checkpoint epoch too; --checkpoint-every 0
  // checkpoints once, at the end.
  const std::uint64_t step = std::max<std::uint64_t>(1, o.epochs / 50);
  const std::uint64_t every = o.checkpoint_every;
  std::uint64_t e = sum.restored_epoch;
  if (e >= o.epochs) PKRT_RETURN_IF_ERROR(shard.run_until(e));  // park where the checkpoint left it
  while (e < o.epochs) {
    std::uint64_t next = std::min(e + step, o.epochs);
    if (every != 0 && !o.checkpoint_dir.empty()) next = std::min(next, (e / every + 1) * every);
    PKRT_RETURN_IF_ERROR(shard.run_until(next));
    e = next;
    const bool checkpoint_now = !o.checkpoint_dir.empty() && (every != 0 ? e % every == 0 : e == o.epochs);
    if (checkpoint_now) {
      auto taken = shard.checkpoint();
      if (!taken.ok()) return taken.status();
      ++sum.checkpoints;
    }
    if (rank == 0) progress.update("epoch " + std::to_string(e) + "/" + std::to_string(o.epochs));
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::uint64_t late = 0;
  Status local;
  for (auto& [epoch, ack] : acks) {
    Reply r = ack.get();
    if (!r.status.ok() && local.ok()) local = r.status;
    if (r.event.epoch != epoch) ++late;
  }
  // Each rank's tiles into an otherwise zero field; OR-ing the bit patterns on rank 0 puts
  // every tile in place exactly (tiles do not overlap).
  std::vector<float> field(std::uint64_t{p.width} * p.height, 0.0f);
  if (local.ok()) local = examples::heat2d_gather_into(shard.local(), p, field);
  // Every rank takes part in the reductions below, or none does.
  int first_failed = -1;
  PKRT_RETURN_IF_ERROR(agree(MPI_COMM_WORLD, local, first_failed));
  std::vector<float> whole(rank == 0 ? field.size() : 0);
  MPI_Reduce(field.data(), rank == 0 ? whole.data() : nullptr, static_cast<int>(field.size()), MPI_UINT32_T, MPI_BOR, 0,
             MPI_COMM_WORLD);
  auto totals = shard.totals();
  if (!totals.ok()) return totals.status();
  // What only this command knows: its injections, and the slowest rank's wall time.
  std::uint64_t mine[2] = {acks.size(), late}, total[2] = {};
  double slowest = 0;
  MPI_Reduce(mine, total, 2, MPI_UINT64_T, MPI_SUM, 0, MPI_COMM_WORLD);
  MPI_Reduce(&seconds, &slowest, 1, MPI_DOUBLE, MPI_MAX, 0, MPI_COMM_WORLD);
  sum.backend = shard.local().backend_description();
  sum.exchange_path = shard.exchange_path();
  sum.epoch = totals->runtime.epoch;
  sum.stats = totals->runtime;
  PKRT_RETURN_IF_ERROR(shard.shutdown());
  if (log) {
    sum.log_records = log->written();
    PKRT_RETURN_IF_ERROR(log->close());
  }
  if (rank == 0) {
    sum.checksum = examples::heat2d_checksum(whole);
    for (float v : whole) sum.total_heat += v;
    sum.messages = totals->exchange.messages_sent;
    sum.bytes = totals->exchange.bytes_sent;
    sum.injections = total[0];
    sum.applied_late = total[1];
    sum.seconds = slowest;
    sum.exchange_seconds = totals->exchange.seconds_in_exchange;
  }
  return Status();
}

}  // namespace

int replay_mpi_command(const ReplayOptions& o) {
  int provided = 0;
  if (MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS)
    return report_error("replay", Status(StatusCode::kUnsupported, "MPI_Init_thread failed. Fix: check the MPI installation"));
  int rank = 0, size = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  // A rank's errors go to stderr only: rank 0 prints the one JSON document (the verdicts).
  json_errors() = false;
  // Each rank replays its own rank's log alone (its inbound K2K from the .k2k beside it, what
  // it sends checked against the other ranks' .k2k files): the ranks need no MPI between
  // them, only the gathering of verdicts at the end.
  ReplayOptions mine = o;
  mine.log = o.log + ".rank" + std::to_string(rank);
  mine.json = false;
  if (!o.record_to.empty()) mine.record_to = o.record_to + ".rank" + std::to_string(rank);
  ReplayVerdict v;
  int rc = kExitUsage;
  // The recording must be of this many ranks: a launch with fewer would leave ranks unchecked.
  auto inbound = read_k2k_log(k2k_log_path(mine.log));
  if (inbound.ok() && (inbound->shard.rank != static_cast<std::uint32_t>(rank) ||
                       inbound->shard.ranks != static_cast<std::uint32_t>(size))) {
    report_error("replay", Status(StatusCode::kInvalidArgument,
                                  mine.log + " was recorded by rank " + std::to_string(inbound->shard.rank) + " of " +
                                      std::to_string(inbound->shard.ranks) + ", but this is rank " + std::to_string(rank) +
                                      " of " + std::to_string(size) + ". Fix: mpirun -np " +
                                      std::to_string(inbound->shard.ranks)));
  } else {
    // Every rank must reach the gather below, whatever the replay does.
    try {
      rc = replay_one(mine, false, v);
    } catch (const std::exception& e) {
      report_error("replay", Status(StatusCode::kInternal, mine.log + ": " + e.what()));
    }
  }
  const std::uint64_t row[6] = {static_cast<std::uint64_t>(rc), v.identical ? 1u : 0u, v.end_epoch, v.epoch, v.actor,
                               v.log_damaged ? 1u : 0u};
  std::vector<std::uint64_t> all(6 * static_cast<std::size_t>(size));
  MPI_Gather(row, 6, MPI_UINT64_T, all.data(), 6, MPI_UINT64_T, 0, MPI_COMM_WORLD);
  int worst = kExitOk;
  if (rank == 0) {
    std::vector<std::pair<std::string, std::string>> rows;
    nlohmann::json ranks_json = nlohmann::json::array();
    int first = -1;
    for (int r = 0; r < size; ++r) {
      const std::uint64_t* a = all.data() + 6 * static_cast<std::size_t>(r);
      const int code = static_cast<int>(a[0]);
      worst = std::max(worst, code == kExitUsage ? 3 : code);  // "cannot replay" outranks "diverged"
      std::string text;
      if (code == kExitUsage) {
        text = "cannot be replayed (its error above)";
      } else if (a[1] != 0) {
        text = "identical through epoch " + std::to_string(a[2]) +
               (a[5] != 0 ? ", but its log is damaged after that (its note above)" : "");
      } else {
        text = "DIVERGED at epoch " + std::to_string(a[3]) + ", actor " + std::to_string(a[4]);
        const std::uint64_t* f = first < 0 ? nullptr : all.data() + 6 * static_cast<std::size_t>(first);
        if (f == nullptr || a[3] < f[3]) first = r;
      }
      const std::string rank_log = mine.log.substr(0, mine.log.rfind(".rank")) + ".rank" + std::to_string(r);
      rows.emplace_back("rank " + std::to_string(r) + " (" + rank_log + ")", text);
      ranks_json.push_back({{"rank", r},
                            {"log", rank_log},
                            {"verdict", code == kExitUsage ? "error" : a[1] != 0 ? "identical" : "diverged"},
                            {"log_damaged", a[5] != 0},
                            {"end_epoch", a[2]},
                            {"divergence", code != kExitUsage && a[1] == 0
                                               ? nlohmann::json{{"epoch", a[3]}, {"actor", a[4]}}
                                               : nlohmann::json(nullptr)}});
    }
    if (first >= 0) {
      const std::uint64_t* f = all.data() + 6 * static_cast<std::size_t>(first);
      rows.emplace_back("first divergence", "rank " + std::to_string(first) + ", actor " + std::to_string(f[4]) +
                                                ", epoch " + std::to_string(f[3]) +
                                                ". Fix: pkrt replay " + o.log + ".rank" + std::to_string(first) +
                                                " for its full report");
    }
    if (o.json) {
      const char* verdict = worst == 3       ? "error"
                            : first >= 0         ? "diverged"
                            : worst == kExitOk   ? "identical"
                                                 : "identical_log_damaged";
      const nlohmann::json j = {{"verdict", verdict}, {"log", o.log}, {"ranks", ranks_json},
                                {"first_divergence", first >= 0 ? ranks_json[static_cast<std::size_t>(first)]["divergence"]
                                                                : nlohmann::json(nullptr)}};
      std::printf("%s\n", j.dump(2).c_str());
    } else {
      print_table(stdout,
                  "pkrt replay (mpirun, " + std::to_string(size) +
                      " ranks, each replayed alone; the K2K each sends checked against its receivers' logs)",
                  rows);
    }
  }
  MPI_Bcast(&worst, 1, MPI_INT, 0, MPI_COMM_WORLD);
  MPI_Finalize();
  return worst == 3 ? kExitUsage : worst;
}

int run_mpi_command(const RunOptions& o) {
  int provided = 0;
  // Funneled: pkrt calls MPI only from this thread (pkrt/mpi.hpp).
  if (MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS)
    return report_error("run", Status(StatusCode::kUnsupported, "MPI_Init_thread failed. Fix: check the MPI installation"));
  int rank = 0, size = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  // Only rank 0's stdout carries JSON (one document, its summary or its error).
  json_errors() = json_errors() && rank == 0;
  ProgressLine progress(!o.quiet && rank == 0);
  MpiRunSummary sum;
  Status st = run_heat2d_ranks(o, sum, rank, size, progress);
  progress.finish();
  // Every rank learns the outcome. A rank prints its own error; a notice that another rank
  // failed (kAborted, "rank...", from an agreement) only rank 0 prints, and only when it has
  // no error of its own. A bad launch fails every rank alike: rank 0 alone says so.
  int first_failed = -1;
  bool same_as_rank0 = false;
  const Status all = agree(MPI_COMM_WORLD, st, first_failed, &same_as_rank0);
  const bool notice = st.code() == StatusCode::kAborted && st.message().rfind("rank", 0) == 0;
  if (!st.ok() && !notice && (rank == 0 || !same_as_rank0)) {
    report_error(("run (rank " + std::to_string(rank) + ")").c_str(), st);
  } else if (rank == 0 && !all.ok()) {
    report_error("run", all);
  }
  if (all.ok() && rank == 0) {
    const double eps =
        sum.seconds > 0 ? static_cast<double>(sum.epoch - std::min(sum.epoch, sum.restored_epoch)) / sum.seconds : 0.0;
    if (o.json) {
      const nlohmann::json j = {{"app", "heat2d"},
                                {"backend", sum.backend},
                                {"ranks", size},
                                {"partition", o.partition},
                                {"k2k_delay", o.k2k_delay},
                                {"actors", o.actors},
                                {"epochs", sum.epoch},
                                {"messages", {{"h2k", sum.stats.commands_sent}, {"k2h", sum.stats.events_received},
                                              {"replies", sum.stats.replies}, {"errors", sum.stats.errors}}},
                                {"seconds", sum.seconds},
                                {"epochs_per_second", eps},
                                {"k2k_between_ranks", {{"messages", sum.messages}, {"bytes", sum.bytes}}},
                                {"exchange_path", sum.exchange_path},
                                {"exchange_seconds_max", sum.exchange_seconds},
                                {"injections", sum.injections},
                                {"applied_late", sum.applied_late},
                                {"total_heat", sum.total_heat},
                                {"restored_epoch", sum.restored_epoch},
                                {"global_checkpoints", sum.checkpoints},
                                {"checksum", hex32(sum.checksum)},
                                {"check_failed", sum.applied_late != 0}};
      std::printf("%s\n", j.dump(2).c_str());
    } else {
      char rate[64], secs[64], heat[64], exch[128];
      std::snprintf(rate, sizeof rate, "%.1f", eps);
      std::snprintf(secs, sizeof secs, "%.3f s", sum.seconds);
      std::snprintf(heat, sizeof heat, "%.9g", sum.total_heat);
      std::snprintf(exch, sizeof exch, "%llu messages, %llu bytes (%.1f per epoch); slowest rank %.3f s in exchanges",
                    static_cast<unsigned long long>(sum.messages), static_cast<unsigned long long>(sum.bytes),
                    sum.epoch > sum.restored_epoch
                        ? static_cast<double>(sum.messages) / static_cast<double>(sum.epoch - sum.restored_epoch)
                        : 0.0,
                    sum.exchange_seconds);
      print_table(stdout, "pkrt run summary (mpirun)",
                  {{"app", "heat2d"},
                   {"ranks", std::to_string(size) + " (partition " + o.partition + ")"},
                   {"backend", sum.backend + " per rank"},
                   {"actors", std::to_string(o.actors)},
                   {"K2K delay", std::to_string(o.k2k_delay) + " epoch(s)"},
                   {"epochs", std::to_string(sum.epoch)},
                   {"blocks", std::to_string(sum.stats.blocks) + " in all x " + std::to_string(sum.stats.threads_per_block) +
                                  " thread(s)"},
                   {"messages", "H2K " + std::to_string(sum.stats.commands_sent) + ", K2H " +
                                    std::to_string(sum.stats.events_received) + " (replies " +
                                    std::to_string(sum.stats.replies) + ", errors " + std::to_string(sum.stats.errors) + ")"},
                   {"wall time", secs},
                   {"epochs/s", rate},
                   {"K2K between ranks", exch},
                   {"exchange path", sum.exchange_path},
                   {"injections", std::to_string(sum.injections) + " (" + std::to_string(sum.applied_late) +
                                      " applied after their epoch)"},
                   {"total heat", heat},
                   {"checkpoints", o.checkpoint_dir.empty() ? std::string("none")
                                                             : std::to_string(sum.checkpoints) + " global, in " + o.checkpoint_dir},
                   {"restored from", o.restore.empty() ? std::string("-")
                                                             : "epoch " + std::to_string(sum.restored_epoch) + " of " + o.restore},
                   {"replay logs", o.replay_log.empty() ? std::string("none")
                                                        : o.replay_log + ".rank0 .. .rank" + std::to_string(size - 1) +
                                                              " (+ .k2k each; rank 0: " + std::to_string(sum.log_records) +
                                                              " records). Replay one rank alone: pkrt replay " +
                                                              o.replay_log + ".rank<r>"},
                   {"final field checksum", hex32(sum.checksum)}});
    }
  }
  MPI_Finalize();
  if (!all.ok()) return exit_code_for(all);
  return sum.applied_late != 0 ? kExitFailed : kExitOk;
}

#endif

}  // namespace pkrt::cli
