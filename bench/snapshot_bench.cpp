// bench/snapshot_bench.cpp: snapshot latency against state size, through the product path
// (Runtime::snapshot_all on a parked grid -> device copy + chunk CRCs -> host copy of the
// changed chunks -> CheckpointManager writer -> zstd + shuffle -> temp file, fsync, rename,
// fsync of the directory), against the machine's floor measured in the same run.
//
//   BM_SnapshotLatency/<state_bytes>/full        every chunk changed since the last one; full file
//   BM_SnapshotLatency/<state_bytes>/delta       1% of chunks changed (at least one); delta file
//   BM_SnapshotLatency/<state_bytes>/floor       memcpy of the state + ISA-L CRC32 + write +
//                                                fsync of the same bytes (the durable floor)
//   BM_SnapshotLatency/<state_bytes>/stall_floor memcpy + ISA-L CRC32 of the state (the floor of
//                                                the actor stall on a CPU)
//   BM_SnapshotLatency/<state_bytes>/stall_fused  a candidate CPU-backend stall: per 64 KiB chunk,
//                                                memcpy then ISA-L CRC while it is in cache, then
//                                                crc32_combine_chunks (what serve_snapshot would
//                                                do with ISA-L in the kernels' host pass)
//   .../full_cuda, .../delta_cuda                the CUDA backend (skipped without a GPU)
// On the CPU backend, full and delta also run the floor after every snapshot (untimed) and
// report the ratios to it under the same load (counters ratio_vs_floor, stall_ratio_vs_floor).
// Time is request-to-durable (manual time), per snapshot. Counters: stall_ms (actor held on
// the device), durable_ms, bytes_copied (device -> host), bytes_written (file), state_bytes.
#include "bench/bench_util.hpp"
#include "bench/blob_actor.hpp"

#include <pkrt/checkpoint_manager.hpp>
#include <pkrt/checkpoint_store.hpp>
#include <pkrt/kernels/crc32.hpp>
#include <pkrt/runtime.hpp>

#include <benchmark/benchmark.h>
#include <isa-l/crc.h>

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

namespace pkrt::bench {
namespace {

constexpr std::uint32_t kChunkBytes = 64 * 1024;
constexpr std::uint32_t kDeltaStride = 100;  // 1% of chunks

enum class Mode { kFull, kDelta };

struct Setup {
  std::unique_ptr<Runtime> rt;
  std::unique_ptr<CheckpointManager> mgr;
  std::uint64_t epoch = 1;
  std::uint32_t salt = 0;
};

// Changes every `stride`-th chunk (the grid runs one epoch and parks again).
Status touch(Setup& s, std::uint32_t stride) {
  BlobTouchData d{stride, ++s.salt};
  auto reply = s.rt->send(0, kBlobTouch, d);
  PKRT_RETURN_IF_ERROR(s.rt->run_until(s.epoch + 1, std::chrono::minutes(2)));
  ++s.epoch;
  return reply.get().status;
}

Result<SnapshotStats> checkpoint(Setup& s) {
  auto id = s.mgr->checkpoint_at(s.epoch);
  if (!id.ok()) return id.status();
  PKRT_RETURN_IF_ERROR(s.mgr->flush(std::chrono::minutes(2)));
  const auto stats = s.mgr->snapshot_stats();
  if (stats.empty()) return Status(StatusCode::kInternal, "no snapshot statistics after a flush");
  if (!stats.back().status.ok()) return stats.back().status;
  return stats.back();
}

Result<Setup> make_setup(std::uint64_t state_bytes, Mode mode, BackendKind backend, const std::string& dir) {
  Blob::Params p;
  p.bytes = state_bytes;
  p.chunk_bytes = kChunkBytes;
  RuntimeOptions o;
  o.backend = backend;
  o.num_actors = 1;
  o.threads = 1;
  o.chunk_bytes = kChunkBytes;
  auto rt = Runtime::create(blob_program(), p, o);
  if (!rt.ok()) return rt.status();
  Setup s;
  s.rt = std::move(rt.value());
  PKRT_RETURN_IF_ERROR(s.rt->set_target_epoch(1));
  PKRT_RETURN_IF_ERROR(s.rt->start());
  PKRT_RETURN_IF_ERROR(s.rt->run_until(1, std::chrono::minutes(2)));
  auto store = FileCheckpointStore::open(dir);
  if (!store.ok()) return store.status();
  CheckpointPolicy policy;
  policy.keep_sets = 2;
  policy.max_delta_chain = mode == Mode::kFull ? 0 : 1u << 30;
  auto mgr = CheckpointManager::create(*s.rt, std::move(store.value()), policy);
  if (!mgr.ok()) return mgr.status();
  s.mgr = std::move(mgr.value());
  // The first checkpoint is the full base (and sizes the host mirror): not timed.
  auto base = checkpoint(s);
  if (!base.ok()) return base.status();
  return s;
}

enum class Floor { kDurable, kStall, kStallFused };

// The floor: what any durable snapshot of these bytes must at least do on this machine. Each
// durable run writes a new file and deletes the one from two runs back, as a checkpoint
// writer keeping two files does.
class FloorRunner {
 public:
  FloorRunner(std::uint64_t bytes, const std::string& dir)
      : bytes_(bytes), src_(bytes / sizeof(float)), dst_(bytes, 1),  // dst pre-faulted, like staging
        chunk_crcs_(crc::chunk_count(bytes, kChunkBytes)), dir_(dir) {
    for (std::size_t i = 0; i < src_.size(); ++i) src_[i] = Blob::value(i, 0);
  }

  // One run; stall_ms is the copy + CRC part. Returns false (with `error`) on an I/O failure.
  bool run(Floor kind, double& stall_ms, double& total_ms, std::string& error) {
    const auto t0 = std::chrono::steady_clock::now();
    if (kind == Floor::kStallFused) {
      const auto* from = reinterpret_cast<const unsigned char*>(src_.data());
      for (std::uint64_t c = 0, off = 0; off < bytes_; ++c, off += kChunkBytes) {
        const std::uint64_t n = std::min<std::uint64_t>(kChunkBytes, bytes_ - off);
        std::memcpy(dst_.data() + off, from + off, n);
        chunk_crcs_[c] = crc32_gzip_refl(0, dst_.data() + off, n);
      }
      benchmark::DoNotOptimize(crc::crc32_combine_chunks(chunk_crcs_.data(), bytes_, kChunkBytes));
    } else {
      std::memcpy(dst_.data(), src_.data(), bytes_);
      const std::uint32_t crc = crc32_gzip_refl(0, dst_.data(), bytes_);
      benchmark::DoNotOptimize(crc);
    }
    stall_ms = seconds_since(t0) * 1e3;
    if (kind == Floor::kDurable) {
      const std::string path = dir_ + "/floor." + std::to_string(files_++);
      const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL, 0644);
      if (fd < 0) {
        error = "cannot create " + path;
        return false;
      }
      std::size_t off = 0;
      while (off < bytes_) {
        const ssize_t n = ::write(fd, dst_.data() + off, bytes_ - off);
        if (n <= 0) break;
        off += static_cast<std::size_t>(n);
      }
      const bool ok = off == bytes_ && ::fsync(fd) == 0;
      ::close(fd);
      if (!ok) {
        error = "write/fsync failed on " + path;
        return false;
      }
    }
    total_ms = seconds_since(t0) * 1e3;
    if (kind == Floor::kDurable && files_ >= 3) ::unlink((dir_ + "/floor." + std::to_string(files_ - 3)).c_str());
    return true;
  }

 private:
  std::uint64_t bytes_;
  std::vector<float> src_;
  std::vector<unsigned char> dst_;
  std::vector<std::uint32_t> chunk_crcs_;
  std::string dir_;
  std::uint64_t files_ = 0;
};

void BM_SnapshotLatency(benchmark::State& state, std::uint64_t bytes, Mode mode, BackendKind backend) {
  if (backend == BackendKind::kCuda && skip_without_cuda(state)) return;
  const std::string dir = scratch_dir(std::string("snapshot-") + (mode == Mode::kFull ? "full" : "delta"));
  auto setup = make_setup(bytes, mode, backend, dir);
  if (!setup.ok()) {
    state.SkipWithError(setup.status().to_string().c_str());
    return;
  }
  Setup& s = setup.value();
  const std::uint32_t stride = mode == Mode::kFull ? 1 : kDeltaStride;
  // The CPU figures are compared with the floor under the same machine load: a floor run
  // (durable, then the stall floor) follows every snapshot, untimed.
  std::unique_ptr<FloorRunner> floor;
  if (backend == BackendKind::kCpu) floor = std::make_unique<FloorRunner>(bytes, scratch_dir("snapshot-paired-floor"));
  double stall = 0, durable = 0, copied = 0, written = 0, deltas = 0, floor_ms = 0, stall_floor_ms = 0;
  for (auto _ : state) {
    Status st = touch(s, stride);
    if (!st.ok()) {
      state.SkipWithError(st.to_string().c_str());
      break;
    }
    auto snap = checkpoint(s);
    if (!snap.ok()) {
      state.SkipWithError(snap.status().to_string().c_str());
      break;
    }
    const SnapshotStats& x = snap.value();
    state.SetIterationTime(x.request_to_durable_ms / 1e3);
    stall += static_cast<double>(x.stall_ns) / 1e6;
    durable += x.request_to_durable_ms;
    copied += static_cast<double>(x.bytes_copied);
    written += static_cast<double>(x.bytes_written);
    deltas += x.delta ? 1 : 0;
    if (floor) {
      double a = 0, b = 0;
      std::string error;
      if (!floor->run(Floor::kDurable, a, b, error)) {
        state.SkipWithError(error.c_str());
        break;
      }
      floor_ms += b;
      if (!floor->run(Floor::kStall, a, b, error)) {
        state.SkipWithError(error.c_str());
        break;
      }
      stall_floor_ms += b;
    }
  }
  const double n = std::max<double>(1, static_cast<double>(state.iterations()));
  if (floor && floor_ms > 0 && stall_floor_ms > 0) {
    state.counters["paired_floor_ms"] = floor_ms / n;
    state.counters["paired_stall_floor_ms"] = stall_floor_ms / n;
    state.counters["ratio_vs_floor"] = durable / floor_ms;
    state.counters["stall_ratio_vs_floor"] = stall / stall_floor_ms;
  }
  state.counters["stall_ms"] = stall / n;
  state.counters["durable_ms"] = durable / n;
  state.counters["bytes_copied"] = copied / n;
  state.counters["bytes_written"] = written / n;
  state.counters["delta_fraction"] = deltas / n;
  state.counters["state_bytes"] = static_cast<double>(s.rt->image_layout().image_bytes);
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) *
                          static_cast<std::int64_t>(s.rt->image_layout().image_bytes));
  s.mgr.reset();
  s.rt->shutdown().ignore();
}

void BM_SnapshotFloor(benchmark::State& state, std::uint64_t bytes, Floor kind) {
  FloorRunner floor(bytes, scratch_dir("snapshot-floor"));
  double stall = 0, total = 0;
  for (auto _ : state) {
    double st_ms = 0, t_ms = 0;
    std::string error;
    if (!floor.run(kind, st_ms, t_ms, error)) {
      state.SkipWithError(error.c_str());
      break;
    }
    state.SetIterationTime(t_ms / 1e3);
    stall += st_ms;
    total += t_ms;
  }
  const double n = std::max<double>(1, static_cast<double>(state.iterations()));
  state.counters["stall_ms"] = stall / n;
  state.counters["durable_ms"] = total / n;
  state.counters["state_bytes"] = static_cast<double>(bytes);
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * static_cast<std::int64_t>(bytes));
}

int iterations_for(std::uint64_t bytes) {
  if (short_level() == 2) return 2;
  // Short mode trims the sizes, not the iterations: these are the noisiest figures.
  return bytes <= (1u << 20) ? 30 : bytes <= (16u << 20) ? 10 : bytes <= (64u << 20) ? 6 : 3;
}

void register_all() {
  std::vector<std::uint64_t> sizes = {4u << 10, 64u << 10, 1u << 20, 16u << 20, 64u << 20, 256u << 20};
  if (short_level() == 1) sizes = {4u << 10, 256u << 10, 4u << 20, 64u << 20, 256u << 20};
  if (short_level() == 2) sizes = {256u << 10};
  for (std::uint64_t bytes : sizes) {
    const std::string base = "BM_SnapshotLatency/" + std::to_string(bytes) + "/";
    const int iters = iterations_for(bytes);
    benchmark::RegisterBenchmark((base + "floor").c_str(), BM_SnapshotFloor, bytes, Floor::kDurable)
        ->UseManualTime()->Iterations(iters)->Unit(benchmark::kMillisecond);
    benchmark::RegisterBenchmark((base + "stall_floor").c_str(), BM_SnapshotFloor, bytes, Floor::kStall)
        ->UseManualTime()->Iterations(iters)->Unit(benchmark::kMillisecond);
    benchmark::RegisterBenchmark((base + "stall_fused").c_str(), BM_SnapshotFloor, bytes, Floor::kStallFused)
        ->UseManualTime()->Iterations(iters)->Unit(benchmark::kMillisecond);
    for (BackendKind b : {BackendKind::kCpu, BackendKind::kCuda}) {
      const std::string sfx = b == BackendKind::kCuda ? "_cuda" : "";
      benchmark::RegisterBenchmark((base + "full" + sfx).c_str(), BM_SnapshotLatency, bytes, Mode::kFull, b)
          ->UseManualTime()->Iterations(iters)->Unit(benchmark::kMillisecond);
      benchmark::RegisterBenchmark((base + "delta" + sfx).c_str(), BM_SnapshotLatency, bytes, Mode::kDelta, b)
          ->UseManualTime()->Iterations(iters)->Unit(benchmark::kMillisecond);
    }
  }
}

const bool registered = (register_all(), true);

}  // namespace
}  // namespace pkrt::bench
