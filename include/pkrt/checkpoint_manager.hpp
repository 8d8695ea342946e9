// pkrt/checkpoint_manager.hpp: CheckpointManager turns a Runtime's snapshots into durable,
// retained checkpoint files, on a schedule or on demand; and finds restore points.
//
// Contract
// - Scheduling: every N epochs (requested ahead of the grid, so they land on multiples of N;
//   one the grid outran is taken late, never skipped) and/or every T of wall time, plus
//   checkpoint_now() /
//   checkpoint_at(). One snapshot_all is in flight at a time; requests are counted
//   (requested, written, failed, cancelled, pending) and failures are reported to the
//   error callback and counted, never dropped silently.
// - Each actor's images are written in order by one writer thread (off the pump thread):
//   a delta (only the chunks the device marked changed) when the actor's previous
//   checkpoint was written and the chain is shorter than max_delta_chain, else a full one.
// - Retention keeps the newest keep_per_actor checkpoints of each actor and every base or
//   intermediate delta that a kept delta needs; nothing else is deleted.
// - Instrumentation per snapshot: actor stall (device), bytes copied device->host, bytes
//   written, request-to-durable latency.
// - Thread safety: all members may be called from any thread. The destructor flushes.
// - Lifetime: the manager keeps a reference to its Runtime; destroy it first.
#pragma once

#include <pkrt/checkpoint.hpp>
#include <pkrt/checkpoint_store.hpp>
#include <pkrt/runtime.hpp>
#include <pkrt/status.hpp>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace pkrt {

struct CheckpointPolicy {
  std::uint64_t every_epochs = 0;            // 0: no epoch schedule
  std::chrono::milliseconds every_time{0};   // 0: no wall-time schedule
  std::uint32_t keep_per_actor = 3;          // newest checkpoints kept per actor (>= 1)
  std::uint32_t max_delta_chain = 8;         // deltas after a full before the next full
  std::uint32_t writer_threads = 2;
  CheckpointEncodeOptions encode;
};

struct SnapshotStats {
  Status status;
  std::uint32_t actor = 0;
  std::uint64_t epoch = 0;
  bool delta = false;
  std::uint64_t stall_ns = 0;       // actor held on the device
  std::uint64_t bytes_copied = 0;   // device -> host
  std::uint64_t bytes_written = 0;  // file size
  double request_to_durable_ms = 0; // request call to fsync'ed rename
  std::string file;
};

struct CheckpointCounters {
  std::uint64_t requested = 0;   // snapshot_all requests issued
  std::uint64_t cancelled = 0;
  std::uint64_t written = 0;     // checkpoint files made durable
  std::uint64_t failed = 0;      // snapshots or writes that failed
  std::uint64_t pending = 0;     // images not yet durable (in flight or queued)
  std::uint64_t deleted = 0;     // removed by retention
  std::uint64_t bytes_copied = 0;
  std::uint64_t bytes_written = 0;
};

class CheckpointManager {
 public:
  // Attaches to `runtime` as its snapshot sink; rebuilds the history from `store`.
  static Result<std::unique_ptr<CheckpointManager>> create(Runtime& runtime,
                                                           std::unique_ptr<CheckpointStore> store,
                                                           const CheckpointPolicy& policy);
  ~CheckpointManager();
  CheckpointManager(const CheckpointManager&) = delete;
  CheckpointManager& operator=(const CheckpointManager&) = delete;

  // Every actor at the end of `epoch` (see Runtime::snapshot_all). kFailedPrecondition
  // while another checkpoint is in flight.
  Result<std::uint64_t> checkpoint_at(std::uint64_t epoch);
  // As soon as possible: the parked epoch, or the next one.
  Result<std::uint64_t> checkpoint_now();
  // Withdraws a request the grid has not served yet; false if it was already served.
  bool cancel(std::uint64_t request);
  // Waits until the grid has served the request in flight (its images are on the host; they
  // may still be being written).
  Status wait_served(std::chrono::milliseconds timeout = std::chrono::minutes(10));
  // Waits until every image received so far is durable (or failed), and no request for an
  // epoch the grid has reached is still in flight. Returns the first failure since the
  // last flush, else ok.
  Status flush(std::chrono::milliseconds timeout = std::chrono::minutes(10));

  CheckpointCounters counters() const;
  std::vector<SnapshotStats> snapshot_stats() const;
  const CheckpointStore& store() const;

  struct Impl;

 private:
  explicit CheckpointManager(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// The images to restore a run from: every actor at one epoch, chains resolved, verified.
struct RestorePoint {
  std::uint64_t epoch = 0;
  std::vector<std::vector<std::byte>> images;  // by actor
};

// The newest epoch (or `epoch`) at which every actor 0..num_actors-1 of `app` with exactly
// `params` has an intact, restorable checkpoint in `store`.
Result<RestorePoint> find_restore_point(const CheckpointStore& store, const std::string& app,
                                        std::span<const std::byte> params, std::uint32_t num_actors,
                                        std::optional<std::uint64_t> epoch);

}  // namespace pkrt
