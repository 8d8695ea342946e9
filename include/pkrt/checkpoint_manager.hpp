// pkrt/checkpoint_manager.hpp: CheckpointManager turns a Runtime's snapshots into durable,
// retained checkpoint files, on a schedule or on demand; and finds restore points.
//
// Contract
// - Scheduling: every N epochs (requested ahead of the grid, so they land on multiples of N)
//   and/or every T of wall time, plus
//   checkpoint_now() /
//   checkpoint_at(). One snapshot_all is in flight at a time; requests are counted
//   (requested, written, failed, cancelled, pending) and failures are reported to the
//   error callback and counted, never dropped silently. One request is in flight at a time
//   and the grid is not held for the schedule: a multiple the grid reached before it could be
//   requested is taken late, at the grid's epoch, and when the grid runs past several while a
//   checkpoint is in flight they become that one late checkpoint (counted in `late` and
//   `coalesced`). For every multiple exactly, park the grid at each (run_until, then
//   checkpoint_now(), as `pkrt run --checkpoint-every` does).
// - Each actor's images are written in order by one writer thread (off the pump thread):
//   a delta (only the chunks the device marked changed) when the actor's previous
//   checkpoint was written and the chain is shorter than max_delta_chain, else a full one.
// - Sets (pkrt/checkpoint_set.hpp): the images of one checkpoint request form a set: every
//   actor and, for an app with a global region, the region (snapshot_all with
//   SnapshotScope::kWholeRun; its files are named "-global-") and the commands sent and not yet
//   applied at the cut ("-queued-", always full). When
//   the last member is durable, the set's manifest is written (atomically, through the
//   store), which commits it; a set with any failed member is never committed.
// - Retention runs after each commit: it keeps the newest keep_sets committed sets, every
//   file a kept set's delta chains need, each actor's newest durable file (the parent of its
//   next delta) and the files of sets still being written; it removes the manifests of
//   older sets first (uncommitting them) and then the files nothing kept needs. A crash
//   between the two leaves only unreferenced files, which the next run's retention removes.
//   What an earlier run of the same configuration (app, params, actor count, layout, run
//   inputs) left in the directory counts too; another configuration's sets and files are
//   never counted or removed.
// - One writer per directory: create() calls store->lock_for_writing().
// - Backpressure: checkpoint_at()/checkpoint_now() (and the schedule) wait while
//   policy.max_pending_sets sets are still being written. Like wait_served(), they must not
//   be called from the runtime's callbacks (the pump thread delivers the images they wait on).
// - Failures (a failed snapshot, write or commit) are counted, returned by the next flush()
//   and passed at once to policy.on_failure, on the writer thread, as they happen.
// - Instrumentation per snapshot: actor stall (device), bytes copied device->host, bytes
//   written, request-to-durable latency.
// - Thread safety: all members may be called from any thread. The destructor flushes.
// - Lifetime: the manager keeps a reference to its Runtime; destroy it first.
#pragma once

#include <pkrt/checkpoint.hpp>
#include <pkrt/checkpoint_set.hpp>
#include <pkrt/checkpoint_store.hpp>
#include <pkrt/runtime.hpp>
#include <pkrt/status.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace pkrt {

struct CheckpointPolicy {
  std::uint64_t every_epochs = 0;            // 0: no epoch schedule
  std::chrono::milliseconds every_time{0};   // 0: no wall-time schedule
  std::uint32_t keep_sets = 3;               // newest committed sets kept (>= 1)
  std::uint32_t max_delta_chain = 8;         // deltas after a full before the next full
  std::uint32_t writer_threads = 2;
  // Sets requested and not yet committed (or failed) at most: a request waits while this
  // many are still being written, so a disk slower than the checkpoint rate slows the
  // requests instead of piling up host copies of the state. 0: no bound.
  std::uint32_t max_pending_sets = 2;
  CheckpointEncodeOptions encode;
  RunInputs inputs;  // recorded in every manifest; restore compares them
  // Name each set's manifest by epoch and sequence, so a later set at the same epoch never
  // replaces an earlier one (pkrt::mpi's ranks: a global checkpoint names its sets).
  bool unique_manifest_names = false;
  // Called on a writer thread as soon as a snapshot, write or commit fails (keep it short;
  // it must not call back into the manager).
  std::function<void(const Status&)> on_failure;
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
  std::uint64_t deleted = 0;     // files removed by retention (manifests included)
  std::uint64_t sets_committed = 0;
  std::uint64_t sets_failed = 0;  // requests with a failed member or commit
  std::uint64_t bytes_copied = 0;
  std::uint64_t bytes_written = 0;
  std::uint64_t late = 0;       // scheduled checkpoints taken after their multiple of every_epochs
  std::uint64_t coalesced = 0;  // multiples the grid ran past while a checkpoint was in flight (none taken)
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

  // Sets at these epochs are kept by retention whatever keep_sets says, until the next call
  // replaces the list (a rank of a multi-rank run pins the sets its committed global
  // checkpoints name: pkrt/global_checkpoint.hpp). Applies from the next retention pass.
  void pin_epochs(std::vector<std::uint64_t> epochs);
  // The manifest name and epoch of the newest committed set (highest sequence), if any.
  std::optional<std::pair<std::string, std::uint64_t>> newest_committed() const;

  CheckpointCounters counters() const;
  std::vector<SnapshotStats> snapshot_stats() const;
  const CheckpointStore& store() const;

  struct Impl;

 private:
  explicit CheckpointManager(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// What to restore a run from: every actor (and the global region) at one epoch, chains
// resolved, verified, and the commands then queued. Pass them all to
// Runtime::restore_before_start.
struct RestorePoint {
  std::uint64_t epoch = 0;
  std::uint64_t sequence = 0;   // of the set restored
  std::string manifest;         // its manifest's name
  std::vector<std::vector<std::byte>> images;  // by actor
  std::vector<std::byte> global;  // the app-wide region's image (empty when the app has none)
  // The commands sent and not applied at `epoch`, for restore_before_start to post again.
  // has_queued false: the set predates their capture (pkrt before manifest flag 1), and the
  // caller must send again whatever was due after `epoch`.
  std::vector<Command> queued;
  bool has_queued = false;
  // Sets passed over, and why: newer ones with a damaged member, and any whose manifest is
  // damaged (its epoch unreadable, so it may be older or newer).
  std::vector<std::string> skipped;
};

struct RestoreQuery {
  CheckpointFingerprint fingerprint;  // checkpoint_fingerprint(runtime)
  RunInputs inputs;
  bool match_layout = true;  // false: compare only app, actor count and params
  bool match_inputs = true;
  std::optional<std::uint64_t> epoch;      // exactly this epoch
  std::optional<std::uint64_t> max_epoch;  // else the newest set at or before this epoch
  ParamsDescriber describe_params;         // optional: names Params fields in a mismatch
};

// The newest committed set (or the one at `epoch`) matching the query, every member file
// verified through its delta chain. Without `epoch`, a damaged set, and a set of another
// configuration of the app (fingerprint or inputs differ: a directory two runs shared), are
// passed over for the next older one (listed in `skipped`); when no set of this
// configuration exists, the newest other one is refused, the message naming the field and
// both values (as is a set at `epoch` that differs). With no committed set, the error says
// so and lists the partial ones (epochs, and how many actors each has).
Result<RestorePoint> find_restore_point(const CheckpointStore& store, const RestoreQuery& query);

// The same, matching only app, actor count and params.
Result<RestorePoint> find_restore_point(const CheckpointStore& store, const std::string& app,
                                        std::span<const std::byte> params, std::uint32_t num_actors,
                                        std::optional<std::uint64_t> epoch);

}  // namespace pkrt
