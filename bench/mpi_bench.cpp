// bench/mpi_bench.cpp: pkrt::mpi scale-out, run under `mpirun -np 4` (bench/report.sh does):
//   BM_Heat2dOverRanks/<ranks>/<delay>   heat2d epochs per second on the first `ranks` ranks
//       of the job (the others wait), 512 x 512 cells in 16 tiles, tiles partition; counters:
//       k2k_bytes_per_epoch and k2k_messages_per_epoch crossing ranks (all ranks together),
//       mpi_messages_per_epoch (point-to-point messages that carried them, all ranks; the
//       per-epoch all-reduce not counted), exchange_share (slowest rank's time in exchanges / wall time). /1/1 is the in-run
//       baseline the report divides by.
//   BM_GlobalCheckpoint/<ranks>           one coordinated checkpoint (every rank's set durable,
//       then the global manifest) of the same state; bytes_per_second over the state's bytes.
// Every rank runs every benchmark with fixed iterations (Google Benchmark's own iteration
// choice would differ between ranks and break the collectives); only world rank 0 reports.
// On a machine with fewer cores than ranks the ranks share cores: figures above 2 ranks on
// the 2-core development machine measure oversubscription, not scaling (docs/scale-out.md).
// PKRT_BENCH_SHORT=smoke (ctest's Bench.MpiSmokeRunsEveryBenchmarkOnce) runs 128 x 128 cells
// and 5 epochs per iteration: it checks that every benchmark runs, not how fast.
#include "bench/bench_util.hpp"
#include "examples/heat2d/heat2d_host.hpp"

#include <pkrt/mpi.hpp>

#include <benchmark/benchmark.h>

#include <chrono>
#include <filesystem>
#include <thread>

namespace pkrt::bench {
namespace {

using examples::Heat2d;

constexpr std::uint32_t kTiles = 16;

std::uint64_t epochs_per_iteration() { return short_level() >= 2 ? 5 : 50; }

int world_rank() {
  int r = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &r);
  return r;
}

int world_size() {
  int s = 0;
  MPI_Comm_size(MPI_COMM_WORLD, &s);
  return s;
}

// A barrier that sleeps while it waits: ranks outside a benchmark's group must not busy-poll
// (MPI_Barrier does) on the cores the group's ranks need.
void polite_barrier() {
  MPI_Request request = MPI_REQUEST_NULL;
  MPI_Ibarrier(MPI_COMM_WORLD, &request);
  for (int done = 0;;) {
    MPI_Test(&request, &done, MPI_STATUS_IGNORE);
    if (done != 0) return;
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
}

Heat2d::Params params() {
  Heat2d::Params p;
  p.width = short_level() >= 2 ? 128 : 512;
  p.height = p.width;
  p.stats_every = 0;
  examples::heat2d_choose_tiles(p, kTiles);
  return p;
}

// The first `ranks` ranks of the job as one heat2d program; null on the others.
struct Group {
  MPI_Comm comm = MPI_COMM_NULL;
  std::unique_ptr<mpi::ShardedRuntime> shard;
  std::uint64_t epoch = 0;

  Group(int ranks, std::uint32_t delay) {
    MPI_Comm_split(MPI_COMM_WORLD, world_rank() < ranks ? 0 : MPI_UNDEFINED, world_rank(), &comm);
    if (comm == MPI_COMM_NULL) return;
    const Heat2d::Params p = params();
    mpi::ShardOptions o;
    o.runtime.backend = BackendKind::kCpu;
    o.runtime.num_actors = kTiles;
    o.runtime.threads = 1;
    o.runtime.k2k_delay = delay;
    auto tiles = ActorPartition::tiles_2d(p.tiles_x, p.tiles_y, static_cast<std::uint32_t>(ranks));
    if (tiles.ok()) o.partition = std::move(tiles.value());
    auto created = mpi::ShardedRuntime::create(comm, examples::heat2d_program(), p, o);
    if (!created.ok() || !created.value()->start().ok()) return;
    shard = std::move(created.value());
  }
  ~Group() {
    shard.reset();
    if (comm != MPI_COMM_NULL) MPI_Comm_free(&comm);
  }
  bool member() const { return comm != MPI_COMM_NULL; }
};

void report_failure(benchmark::State& state, const char* what) {
  state.SkipWithError(what);
}

void BM_Heat2dOverRanks(benchmark::State& state) {
  const int ranks = static_cast<int>(state.range(0));
  const auto delay = static_cast<std::uint32_t>(state.range(1));
  if (ranks > world_size()) {
    state.SkipWithError("needs more ranks: run under mpirun -np 4");
    return;
  }
  Group g(ranks, delay);
  if (g.member() && !g.shard) {
    report_failure(state, "the group could not start");
    return;
  }
  if (g.member() && !g.shard->run_until(g.epoch += 10).ok()) report_failure(state, "warm-up failed");  // warm-up
  const mpi::ExchangeStats before = g.member() ? g.shard->exchange_stats() : mpi::ExchangeStats{};
  double wall = 0;
  std::uint64_t epochs = 0;
  for (auto _ : state) {
    // Timed on each rank around its run_until (the members return together: it ends with an
    // agreement); rank 0's figure is reported.
    const auto t0 = std::chrono::steady_clock::now();
    if (g.member() && !g.shard->run_until(g.epoch += epochs_per_iteration()).ok()) {
      report_failure(state, "run_until failed");
      break;
    }
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    state.SetIterationTime(seconds);
    wall += seconds;
    epochs += epochs_per_iteration();
    polite_barrier();  // the next iteration starts together
  }
  const mpi::ExchangeStats after = g.member() ? g.shard->exchange_stats() : mpi::ExchangeStats{};
  double mine[4] = {static_cast<double>(after.bytes_sent - before.bytes_sent),
                    static_cast<double>(after.messages_sent - before.messages_sent),
                    static_cast<double>(after.peer_messages - before.peer_messages),
                    after.seconds_in_exchange - before.seconds_in_exchange};
  double sums[4] = {};
  MPI_Reduce(mine, sums, 3, MPI_DOUBLE, MPI_SUM, 0, MPI_COMM_WORLD);
  MPI_Reduce(&mine[3], &sums[3], 1, MPI_DOUBLE, MPI_MAX, 0, MPI_COMM_WORLD);
  state.SetItemsProcessed(static_cast<std::int64_t>(epochs));
  state.counters["ranks"] = ranks;
  state.counters["k2k_delay"] = delay;
  state.counters["k2k_bytes_per_epoch"] = epochs > 0 ? sums[0] / static_cast<double>(epochs) : 0;
  state.counters["k2k_messages_per_epoch"] = epochs > 0 ? sums[1] / static_cast<double>(epochs) : 0;
  state.counters["mpi_messages_per_epoch"] = epochs > 0 ? sums[2] / static_cast<double>(epochs) : 0;
  state.counters["exchange_share"] = wall > 0 ? sums[3] / wall : 0;
}
BENCHMARK(BM_Heat2dOverRanks)
    ->Args({1, 1})->Args({2, 1})->Args({4, 1})->Args({2, 2})->Args({4, 2})
    ->Iterations(10)->Unit(benchmark::kMillisecond)->UseManualTime();

void BM_GlobalCheckpoint(benchmark::State& state) {
  const int ranks = static_cast<int>(state.range(0));
  if (ranks > world_size()) {
    state.SkipWithError("needs more ranks: run under mpirun -np 4");
    return;
  }
  Group g(ranks, 1);
  // Rank 0 names the directory for everyone (a fresh one per benchmark).
  std::string dir = (std::filesystem::temp_directory_path() / ("pkrt_mpi_bench_" + std::to_string(ranks))).string();
  if (world_rank() == 0) {
    std::filesystem::remove_all(dir);
    std::filesystem::create_directories(dir);
  }
  polite_barrier();
  if (g.member()) {
    mpi::GlobalCheckpointOptions co;
    co.directory = dir;
    co.keep = 2;
    if (!g.shard || !g.shard->enable_checkpoints(co).ok()) report_failure(state, "checkpoints could not be enabled");
  }
  std::uint64_t bytes = 0;
  for (auto _ : state) {
    if (g.member()) (void)g.shard->run_until(g.epoch += 5);  // new state to save
    polite_barrier();
    const auto t0 = std::chrono::steady_clock::now();
    if (g.member()) {
      auto taken = g.shard->checkpoint();
      if (!taken.ok()) {
        report_failure(state, "checkpoint failed");
        break;
      }
    }
    // Rank 0 writes the global manifest last: its time is the checkpoint's.
    state.SetIterationTime(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    polite_barrier();
    bytes += std::uint64_t{kTiles} * (g.member() ? g.shard->local().image_layout().image_bytes : 0);
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(bytes));
  state.counters["ranks"] = ranks;
  g.shard.reset();
  polite_barrier();
  if (world_rank() == 0) std::filesystem::remove_all(dir);
}
BENCHMARK(BM_GlobalCheckpoint)->Arg(1)->Arg(2)->Arg(4)->Iterations(8)->Unit(benchmark::kMillisecond)->UseManualTime();

}  // namespace
}  // namespace pkrt::bench

int main(int argc, char** argv) {
  int provided = 0;
  MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided);
  // Only rank 0 writes --benchmark_out: the others would open (and truncate) the same file.
  std::vector<char*> args(argv, argv + argc);
  if (pkrt::bench::world_rank() != 0)
    std::erase_if(args, [](const char* a) { return std::string(a).rfind("--benchmark_out", 0) == 0; });
  int count = static_cast<int>(args.size());
  args.push_back(nullptr);
  benchmark::Initialize(&count, args.data());
  if (pkrt::bench::world_rank() == 0) {
    benchmark::RunSpecifiedBenchmarks();
  } else {
    // The other ranks run the same benchmarks (they are collective) and report nothing.
    struct Silent : benchmark::BenchmarkReporter {
      bool ReportContext(const Context&) override { return true; }
      void ReportRuns(const std::vector<Run>&) override {}
    } silent;
    benchmark::RunSpecifiedBenchmarks(&silent);
  }
  benchmark::Shutdown();
  MPI_Finalize();
  return 0;
}
