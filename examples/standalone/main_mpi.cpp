// main_mpi.cpp: the same counters over MPI ranks (pkrt::mpi), built when the installed pkrt
// has it; run with `mpirun -np 2 counter_mpi` (any rank count up to 8). Each rank runs the
// counters the partition gives it; running totals pass to the next counter over K2K, across
// ranks where the ring crosses them. Rank 0 asks every counter for its value (a send with a
// reply: forwarded to the owner rank and answered with the exchange of its epoch), then all
// ranks take a coordinated checkpoint and rank 0 prints the run's totals.
#include "counter.hpp"

#include <pkrt/mpi.hpp>

#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

namespace {

constexpr std::uint32_t kCounters = 8;

int run() {
  pkrt::mpi::ShardOptions options;
  options.runtime.num_actors = kCounters;
  options.runtime.threads = 1;
  Counter::Params params;
  params.step = 3;
  // Collective calls fail on every rank alike, so every rank leaves through the same check.
  auto failed = [](const char* what, const pkrt::Status& st) {
    std::fprintf(stderr, "counter_mpi: %s: %s\n", what, st.to_string().c_str());
    return 1;
  };
  auto created = pkrt::mpi::ShardedRuntime::create(MPI_COMM_WORLD, counter_program(), params, options);
  if (!created.ok()) return failed("create", created.status());
  pkrt::mpi::ShardedRuntime& shard = *created.value();
  const bool root = shard.context().rank == 0;

  // Rank 0 names a fresh directory for the run's global checkpoints.
  const std::string dir = (std::filesystem::temp_directory_path() / "counter_mpi_checkpoints").string();
  if (root) {
    std::filesystem::remove_all(dir);
    std::filesystem::create_directories(dir);
  }
  MPI_Barrier(MPI_COMM_WORLD);
  pkrt::mpi::GlobalCheckpointOptions checkpoints;
  checkpoints.directory = dir;
  checkpoints.keep = 1;
  if (pkrt::Status st = shard.enable_checkpoints(checkpoints); !st.ok()) return failed("enable_checkpoints", st);
  if (pkrt::Status st = shard.start(); !st.ok()) return failed("start", st);
  if (pkrt::Status st = shard.run_until(100); !st.ok()) return failed("run_until", st);

  // Applied at the same epoch on every owner: the earliest a command sent now can reach a
  // counter on another rank. Before its step, a counter holds 3 x (epoch - 1).
  const std::uint64_t asked_at = shard.earliest_remote_apply_epoch();
  std::vector<pkrt::ReplyFuture> replies;
  if (root)
    for (std::uint32_t a = 0; a < kCounters; ++a) replies.push_back(shard.send(a, kCounterGet, std::uint64_t{0}, asked_at));
  if (pkrt::Status st = shard.run_until(asked_at); !st.ok()) return failed("run_until", st);
  int failures = 0;
  for (std::uint32_t a = 0; a < replies.size(); ++a) {
    // Ready: run_until ran the epoch they applied in (the driving thread carried them back).
    const pkrt::Reply r = replies[a].get();
    const auto report = r.event.as<CounterReport>();
    if (!r.status.ok() || r.event.actor != a || report.value != 3 * (asked_at - 1) || report.neighbour_mismatches != 0) {
      std::fprintf(stderr, "counter_mpi: counter %u (on rank %u): value %llu, mismatches %llu, %s\n", a,
                   shard.partition().owner(a), static_cast<unsigned long long>(report.value),
                   static_cast<unsigned long long>(report.neighbour_mismatches), r.status.to_string().c_str());
      ++failures;
    }
  }
  auto saved = shard.checkpoint();
  if (!saved.ok()) return failed("checkpoint", saved.status());
  auto totals = shard.totals();
  if (!totals.ok()) return failed("totals", totals.status());
  int all_failures = 0;
  MPI_Allreduce(&failures, &all_failures, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
  if (root) {
    std::printf("counter_mpi: %d ranks, %u counters at %llu after epoch %llu: %s; K2K across ranks: %llu messages; "
                "global checkpoint at epoch %llu\n",
                totals->ranks, kCounters, static_cast<unsigned long long>(3 * (asked_at - 1)),
                static_cast<unsigned long long>(asked_at - 1), all_failures == 0 ? "ok" : "FAILED",
                static_cast<unsigned long long>(totals->exchange.messages_sent),
                static_cast<unsigned long long>(saved.value()));
    std::filesystem::remove_all(dir);
  }
  return all_failures == 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  int provided = 0;
  MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided);
  const int rc = run();  // the ShardedRuntime is gone before MPI_Finalize
  MPI_Finalize();
  return rc;
}
