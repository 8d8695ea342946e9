// tests/test_support.hpp: small helpers shared by the runtime test files.
#pragma once

#include <pkrt/runtime.hpp>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <mutex>
#include <vector>

namespace pkrt::testing {

// Options for a CPU-backend runtime with `actors` actors on `threads` worker threads.
inline RuntimeOptions cpu_runtime(std::uint32_t actors, std::uint32_t threads,
                                  std::uint32_t chunk_bytes = 64 * 1024) {
  RuntimeOptions o;
  o.backend = BackendKind::kCpu;
  o.num_actors = actors;
  o.threads = threads;
  o.chunk_bytes = chunk_bytes;
  return o;
}

// Collects snapshot images delivered on the pump thread (the runtime's snapshot sink).
// Detaches itself when destroyed, so a runtime that outlives it (and fails its open
// snapshots at shutdown) never calls into a dead collector.
class SnapshotCollector {
 public:
  explicit SnapshotCollector(Runtime& rt) : rt_(rt) {
    rt.set_snapshot_sink([this](SnapshotImage img) {
      std::lock_guard<std::mutex> lock(mu_);
      by_request_[img.request].push_back(std::move(img));
      cv_.notify_all();
    });
  }
  ~SnapshotCollector() { rt_.set_snapshot_sink(nullptr); }
  SnapshotCollector(const SnapshotCollector&) = delete;
  SnapshotCollector& operator=(const SnapshotCollector&) = delete;
  // The images of `request` once `count` have arrived (or after 30 s), by actor.
  std::vector<SnapshotImage> wait(std::uint64_t request, std::size_t count) {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait_for(lock, std::chrono::seconds(30), [&] { return by_request_[request].size() >= count; });
    auto out = by_request_[request];
    std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.actor < b.actor; });
    return out;
  }

 private:
  Runtime& rt_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::map<std::uint64_t, std::vector<SnapshotImage>> by_request_;
};

}  // namespace pkrt::testing
