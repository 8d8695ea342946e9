// bench/staging_pool_bench.cpp: what a smaller staging pool (RuntimeOptions::staging_bytes)
// costs a snapshot_all, against the one-pass snapshot of a pool that holds every actor,
// measured in the same run. heat2d, 2048 x 2048 cells in 16 tiles (16 images of ~1 MiB) on
// the CPU backend, 2 worker threads; every snapshot full, so each copies the whole state.
//   BM_SnapshotAllPooled/slots:16   one pass (the pool holds every image: the old layout)
//   BM_SnapshotAllPooled/slots:4    a quarter of the images (the default rule above 256 MiB): 4 waves
//   BM_SnapshotAllPooled/slots:1    one image at a time: 16 waves
// Each timed pooled snapshot alternates with an untimed one-pass snapshot of a second
// runtime, so ratio_vs_one_pass compares the two under the same machine load.
// Time (manual) is request to the last image on the host. Counters: hold_ms (first image
// copied to the last: a pooled snapshot holds the grid at the cut at least that long; a
// one-pass one does not hold it at all), stall_ms (device work summed over the images),
// staging_MiB and staging_fraction (device staging memory against the actors' state).
#include "bench/bench_util.hpp"
#include "examples/heat2d/heat2d_host.hpp"

#include <pkrt/runtime.hpp>

#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <vector>

namespace pkrt::bench {
namespace {

using examples::Heat2d;

constexpr std::uint32_t kActors = 16;

struct Timing {
  double total_s = 0;  // request to the last image
  double hold_s = 0;   // first image copied to the last
  double stall_s = 0;  // device stall summed over the images
};

// A parked heat2d grid with a sink that counts one request's images.
class PooledRun {
 public:
  static Result<std::unique_ptr<PooledRun>> create(std::uint32_t slots) {
    Heat2d::Params p;
    p.width = 2048;
    p.height = 2048;
    p.seed = 5;
    p.stats_every = 0;
    examples::heat2d_choose_tiles(p, kActors);
    RuntimeOptions o;
    o.backend = BackendKind::kCpu;
    o.num_actors = kActors;
    o.threads = 2;
    auto sizing = Runtime::create(examples::heat2d_program(), p, o);
    if (!sizing.ok()) return sizing.status();
    o.staging_bytes = std::uint64_t{slots} * sizing.value()->image_layout().staging_slot_bytes;
    sizing.value().reset();
    auto rt = Runtime::create(examples::heat2d_program(), p, o);
    if (!rt.ok()) return rt.status();
    auto run = std::unique_ptr<PooledRun>(new PooledRun(std::move(rt.value())));
    PKRT_RETURN_IF_ERROR(run->rt_->set_target_epoch(1));
    PKRT_RETURN_IF_ERROR(run->rt_->start());
    PKRT_RETURN_IF_ERROR(run->rt_->run_until(1, std::chrono::minutes(2)));
    return run;
  }

  // One more epoch, then a full snapshot_all of it; waits for every image.
  Result<Timing> snapshot() {
    PKRT_RETURN_IF_ERROR(rt_->run_until(++epoch_, std::chrono::minutes(2)));
    {
      std::lock_guard<std::mutex> lock(mu_);
      images_.clear();
    }
    const auto t0 = std::chrono::steady_clock::now();
    auto id = rt_->snapshot_all(epoch_, /*full=*/true);
    if (!id.ok()) return id.status();
    std::unique_lock<std::mutex> lock(mu_);
    if (!cv_.wait_for(lock, std::chrono::minutes(2), [&] { return images_.size() == kActors; }))
      return Status(StatusCode::kTimeout, "snapshot_all images did not arrive");
    Timing t;
    auto first = images_.front().copied, last = images_.front().copied;
    for (const SnapshotImage& img : images_) {
      if (!img.status.ok()) return img.status;
      first = std::min(first, img.copied);
      last = std::max(last, img.copied);
      t.stall_s += static_cast<double>(img.stall_ns) / 1e9;
    }
    t.total_s = std::chrono::duration<double>(last - t0).count();
    t.hold_s = std::chrono::duration<double>(last - first).count();
    return t;
  }

  const ImageLayout& layout() const { return rt_->image_layout(); }

 private:
  explicit PooledRun(std::unique_ptr<Runtime> rt) : rt_(std::move(rt)) {
    rt_->set_snapshot_sink([this](SnapshotImage img) {
      std::lock_guard<std::mutex> lock(mu_);
      images_.push_back(std::move(img));
      cv_.notify_all();
    });
  }

  std::unique_ptr<Runtime> rt_;
  std::uint64_t epoch_ = 1;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<SnapshotImage> images_;
};

void BM_SnapshotAllPooled(benchmark::State& state) {
  const auto slots = static_cast<std::uint32_t>(state.range(0));
  auto pooled = PooledRun::create(slots);
  auto one_pass = PooledRun::create(kActors);
  if (!pooled.ok() || !one_pass.ok()) {
    state.SkipWithError((pooled.ok() ? one_pass.status() : pooled.status()).to_string().c_str());
    return;
  }
  Timing sum, base;
  std::uint64_t n = 0;
  for (auto _ : state) {
    auto b = one_pass.value()->snapshot();  // untimed baseline under the same load
    auto t = pooled.value()->snapshot();
    if (!b.ok() || !t.ok()) {
      state.SkipWithError((t.ok() ? b.status() : t.status()).to_string().c_str());
      return;
    }
    state.SetIterationTime(t->total_s);
    sum.total_s += t->total_s;
    sum.hold_s += t->hold_s;
    sum.stall_s += t->stall_s;
    base.total_s += b->total_s;
    ++n;
  }
  const ImageLayout& l = pooled.value()->layout();
  const double state_bytes = static_cast<double>(l.image_bytes) * kActors;
  const double staging_bytes = static_cast<double>(l.staging_slot_bytes) * l.staging_slots;
  state.SetBytesProcessed(static_cast<std::int64_t>(state_bytes * static_cast<double>(n)));
  const double iters = n == 0 ? 1.0 : static_cast<double>(n);
  state.counters["hold_ms"] = sum.hold_s / iters * 1e3;
  state.counters["stall_ms"] = sum.stall_s / iters * 1e3;
  state.counters["ratio_vs_one_pass"] = base.total_s > 0 ? sum.total_s / base.total_s : 0;
  state.counters["staging_MiB"] = staging_bytes / (1 << 20);
  state.counters["state_MiB"] = state_bytes / (1 << 20);
  state.counters["staging_fraction"] = staging_bytes / state_bytes;
  state.counters["waves"] = (kActors + l.staging_slots - 1) / l.staging_slots;
}
BENCHMARK(BM_SnapshotAllPooled)
    ->ArgName("slots")
    ->Arg(16)
    ->Arg(4)
    ->Arg(1)
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond)
    ->Iterations(short_level() >= 2 ? 2 : 20);

}  // namespace
}  // namespace pkrt::bench
