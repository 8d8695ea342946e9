// bench/heat2d_bench.cpp: heat2d epochs per second with each optional feature on, to show
// what each costs. 512 x 512 cells in 4 tiles on 2 CPU worker threads, statistics events
// every 10 epochs (so there is K2H traffic to record).
//   BM_Heat2dEpochs/none               no replay log, no checkpoints (the baseline)
//   BM_Heat2dEpochs/replay             every slot mirrored into a replay log
//   BM_Heat2dEpochs/replay_digest      the same plus state digests every 10 epochs
//   BM_Heat2dEpochs/checkpoint_100     CheckpointManager, every 100 epochs, to disk
//   BM_Heat2dEpochs/none_cuda, replay_cuda   on the CUDA backend (skipped without a GPU)
// Each feature run alternates with a plain run of its own (100 epochs each, the plain one
// untimed), so the counter ratio_vs_none compares the two under the same machine load.
// items_per_second is epochs per second. Five repetitions; the report uses the medians.
#include "bench/bench_util.hpp"
#include "examples/heat2d/heat2d_host.hpp"

#include <pkrt/checkpoint_manager.hpp>
#include <pkrt/checkpoint_store.hpp>
#include <pkrt/replay_log.hpp>
#include <pkrt/runtime.hpp>

#include <benchmark/benchmark.h>

#include <chrono>
#include <memory>
#include <string>

namespace pkrt::bench {
namespace {

using examples::Heat2d;

constexpr std::uint64_t kEpochsPerIteration = 100;

enum class Feature { kNone, kReplay, kReplayDigest, kCheckpoint };

// One heat2d runtime with a feature on, parked at `epoch` between runs.
struct Heat2dRun {
  std::unique_ptr<Runtime> rt;
  std::shared_ptr<ReplayLogWriter> log;
  std::unique_ptr<CheckpointManager> mgr;
  std::uint64_t epoch = 0;
  double seconds = 0;  // time spent in timed run_until calls
  std::uint64_t epochs = 0;

  ~Heat2dRun() {
    mgr.reset();  // before the runtime it refers to
    if (rt) rt->shutdown().ignore();
  }

  Status run(std::uint64_t n) {
    const auto t0 = std::chrono::steady_clock::now();
    epoch += n;
    Status st = rt->run_until(epoch, std::chrono::minutes(2));
    seconds += seconds_since(t0);
    epochs += n;
    return st;
  }
};

Result<std::unique_ptr<Heat2dRun>> make_run(Feature feature, BackendKind backend, const std::string& name) {
  Heat2d::Params p;
  p.width = 512;
  p.height = 512;
  p.stats_every = 10;
  examples::heat2d_choose_tiles(p, 4);
  RuntimeOptions o;
  o.backend = backend;
  o.num_actors = 4;
  o.threads = 2;
  const auto dir = scratch_dir("heat2d-" + name);
  auto run = std::make_unique<Heat2dRun>();
  if (feature == Feature::kReplay || feature == Feature::kReplayDigest) {
    ReplayLogOptions lo;
    lo.capacity_records = 1u << 20;
    auto log = ReplayLogWriter::create((dir / "run.pkrl").string(), lo);
    if (!log.ok()) return log.status();
    run->log = std::move(log.value());
    o.replay_log = run->log;
    if (feature == Feature::kReplayDigest) o.digest_period = 10;
  }
  auto created = Runtime::create(examples::heat2d_program(), p, o);
  if (!created.ok()) return created.status();
  run->rt = std::move(created.value());
  if (feature == Feature::kCheckpoint) {
    auto store = FileCheckpointStore::open((dir / "checkpoints").string());
    if (!store.ok()) return store.status();
    CheckpointPolicy policy;
    policy.every_epochs = 100;
    policy.keep_sets = 2;
    auto m = CheckpointManager::create(*run->rt, std::move(store.value()), policy);
    if (!m.ok()) return m.status();
    run->mgr = std::move(m.value());
  }
  run->epoch = 20;  // warm-up
  PKRT_RETURN_IF_ERROR(run->rt->set_target_epoch(run->epoch));
  PKRT_RETURN_IF_ERROR(run->rt->start());
  PKRT_RETURN_IF_ERROR(run->rt->run_until(run->epoch, std::chrono::minutes(2)));
  return run;
}

// The feature's runtime and a plain one (same app, same parameters) take turns, 100 epochs
// each, so that the load of a shared machine drifting during the run hits both alike. The
// time reported is the feature's; the counters hold both rates and their ratio.
void BM_Heat2dEpochs(benchmark::State& state, Feature feature, BackendKind backend) {
  if (backend == BackendKind::kCuda && skip_without_cuda(state)) return;
  auto with = make_run(feature, backend, "feature");
  if (!with.ok()) {
    state.SkipWithError(with.status().to_string().c_str());
    return;
  }
  std::unique_ptr<Heat2dRun> base;
  if (feature != Feature::kNone) {
    auto b = make_run(Feature::kNone, backend, "baseline");
    if (!b.ok()) {
      state.SkipWithError(b.status().to_string().c_str());
      return;
    }
    base = std::move(b.value());
  }
  Heat2dRun& f = *with.value();
  Status st;
  for (auto _ : state) {
    state.PauseTiming();
    if (base) st = base->run(kEpochsPerIteration);
    state.ResumeTiming();
    if (st.ok()) st = f.run(kEpochsPerIteration);
    if (!st.ok()) break;
  }
  if (st.ok() && f.mgr) st = f.mgr->flush();
  if (!st.ok()) state.SkipWithError(st.to_string().c_str());
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()) * kEpochsPerIteration);
  const double rate = f.seconds > 0 ? static_cast<double>(f.epochs) / f.seconds : 0.0;
  state.counters["epochs_per_s"] = rate;
  if (base && base->seconds > 0) {
    const double base_rate = static_cast<double>(base->epochs) / base->seconds;
    state.counters["baseline_epochs_per_s"] = base_rate;
    state.counters["ratio_vs_none"] = base_rate > 0 ? rate / base_rate : 0.0;
  }
  if (f.mgr) state.counters["checkpoints"] = static_cast<double>(f.mgr->counters().written);
  if (f.log) state.counters["records"] = static_cast<double>(f.log->written());
}

void register_all() {
  const int reps = short_level() == 2 ? 1 : 5;
  auto reg = [&](const char* name, Feature f, BackendKind b) {
    auto* bm = benchmark::RegisterBenchmark(name, BM_Heat2dEpochs, f, b)->Unit(benchmark::kMillisecond)->UseRealTime();
    if (short_level() == 2) bm->Iterations(2);
    // A CUDA variant without a GPU is skipped once, not once per repetition.
    const bool runs = b == BackendKind::kCpu || cuda_unavailable_reason().ok();
    if (reps > 1 && runs) bm->Repetitions(reps)->ReportAggregatesOnly(true);
  };
  reg("BM_Heat2dEpochs/none", Feature::kNone, BackendKind::kCpu);
  reg("BM_Heat2dEpochs/replay", Feature::kReplay, BackendKind::kCpu);
  reg("BM_Heat2dEpochs/replay_digest", Feature::kReplayDigest, BackendKind::kCpu);
  reg("BM_Heat2dEpochs/checkpoint_100", Feature::kCheckpoint, BackendKind::kCpu);
  reg("BM_Heat2dEpochs/none_cuda", Feature::kNone, BackendKind::kCuda);
  reg("BM_Heat2dEpochs/replay_cuda", Feature::kReplay, BackendKind::kCuda);
}

const bool registered = (register_all(), true);

}  // namespace
}  // namespace pkrt::bench
