// mpi/coordinated_checkpoint.cpp: global checkpoints of a ShardedRuntime (pkrt/mpi.hpp,
// pkrt/global_checkpoint.hpp).
//
// checkpoint(), every rank parked at epoch e:
//   1. agree on e (every rank parked at the same epoch);
//   2. phase 1: each rank's CheckpointManager snapshots its actors and commits its own set
//      (files, then the set manifest, each durable); the rank sends rank 0 {status, CRC of its
//      set manifest, actor count};
//   3. phase 2, rank 0 only: if every rank is durable, write the global manifest (temp file,
//      fsync, rename, directory fsync: FileCheckpointStore::put), then uncommit the global
//      manifests beyond `keep`, oldest first;
//   4. rank 0 broadcasts the outcome and the epochs the kept global checkpoints name; every
//      rank pins those epochs in its manager, whose retention then keeps their sets (and
//      prunes its other sets at its next commit).
// A crash or kill anywhere before step 3's rename leaves no global manifest for e: the
// previous one is still the newest committed, and its sets are pinned on every rank.
#include <pkrt/checkpoint_store.hpp>
#include <pkrt/crc32.hpp>
#include <pkrt/mpi.hpp>

#include "checkpoint/byte_io.hpp"
#include "mpi/commit_fault.hpp"
#include "mpi/mpi_support.hpp"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <map>

namespace pkrt::mpi {
namespace {

using detail::rank_list;

// What a rank reports to rank 0 after phase 1.
struct SetReport {
  std::uint32_t code = 0;  // StatusCode
  std::uint32_t manifest_crc = 0;
  std::uint32_t actors = 0;
  std::uint32_t name_length = 0;
  char name[240] = {};  // the set manifest's name in the rank's directory
};

}  // namespace

Status ShardedRuntime::broadcast_status(const Status& at_root, std::chrono::milliseconds timeout) {
  // [u32 code][message, at most 4 KiB], rank 0's.
  std::vector<std::byte> bytes;
  if (context_.rank == 0) {
    const std::string text = at_root.message().substr(0, 4096);
    pkrt::detail::ByteWriter w(bytes);
    w.put(static_cast<std::uint32_t>(at_root.code()));
    w.bytes(text.data(), text.size());
  }
  PKRT_RETURN_IF_ERROR(broadcast(bytes, timeout, "hearing rank 0's outcome"));
  pkrt::detail::ByteReader r(bytes);
  const auto code = r.get<std::uint32_t>();
  const auto text = r.take(bytes.size() - r.pos());
  if (r.failed()) return Status(StatusCode::kInternal, "rank 0 broadcast an outcome of " + std::to_string(bytes.size()) + " bytes");
  if (code == 0) return Status();
  const std::string message(reinterpret_cast<const char*>(text.data()), text.size());
  return Status(static_cast<StatusCode>(code), context_.rank == 0 ? message : "rank 0: " + message);
}

Status ShardedRuntime::share_pins(std::chrono::milliseconds timeout) {
  // [u64 next global sequence][u64 pinned epochs...], rank 0's.
  std::vector<std::byte> bytes;
  pkrt::detail::ByteWriter w(bytes);
  w.put(next_global_sequence_);
  w.bytes(pins_.data(), pins_.size() * sizeof(std::uint64_t));
  PKRT_RETURN_IF_ERROR(broadcast(bytes, timeout, "hearing rank 0's pinned checkpoints"));
  if (bytes.empty() || bytes.size() % sizeof(std::uint64_t) != 0)
    return Status(StatusCode::kInternal, "rank 0 broadcast " + std::to_string(bytes.size()) + " bytes of pins");
  pkrt::detail::ByteReader r(bytes);
  next_global_sequence_ = r.get<std::uint64_t>();
  pins_.resize(bytes.size() / sizeof(std::uint64_t) - 1);
  for (std::uint64_t& pin : pins_) pin = r.get<std::uint64_t>();
  if (manager_) manager_->pin_epochs(pins_);
  return Status();
}

Status ShardedRuntime::enable_checkpoints(const GlobalCheckpointOptions& options) {
  PKRT_RETURN_IF_ERROR(failed_);
  PKRT_RETURN_IF_ERROR(lost_);
  // Told apart from a failed call: a second call leaves the enabled checkpoints (and rank 0's
  // lock of their directory) as they are. Every rank that keeps the contract refuses alike.
  if (manager_) return Status(StatusCode::kFailedPrecondition, "checkpoints are already enabled on this ShardedRuntime");
  detail::check_commit_kill(context_.rank, context_.size);
  Status st;
  if (options.directory.empty()) {
    st = Status(StatusCode::kInvalidArgument, "no checkpoint directory. Fix: set GlobalCheckpointOptions::directory");
  } else if (local_->layout().global_bytes > 0) {
    st = Status(StatusCode::kUnsupported,
                std::string("app '") + local_->program().name + "' has a global region, which is per rank in a multi-rank run: "
                "coordinated checkpoints of it are not built yet. Fix: run it on one rank to checkpoint it");
  }
  // Rank 0 reads the committed global checkpoints once: their epochs are pinned on every
  // rank (their sets stay, whatever each rank's policy says) and the sequence goes on past them.
  Status scanned;
  if (st.ok() && context_.rank == 0) {
    // One job writes a directory's global checkpoints: another one (another rank count, say)
    // would retire this job's by sequence. Rank 0 holds the directory's writer lock
    // (FileCheckpointStore::lock_for_writing) for as long as checkpoints are enabled.
    auto top = FileCheckpointStore::open(options.directory);
    if (top.ok()) {
      scanned = top.value()->lock_for_writing();
      if (scanned.ok()) global_store_ = std::move(top.value());
    } else {
      scanned = top.status();
    }
  }
  if (st.ok() && scanned.ok() && context_.rank == 0) {
    auto globals = list_global_checkpoints(options.directory, local_->program().name);
    if (!globals.ok()) {
      scanned = globals.status();
    } else {
      pins_.clear();
      for (const auto& [name, g] : globals.value()) {
        pins_.push_back(g.epoch);
        next_global_sequence_ = std::max(next_global_sequence_, g.sequence + 1);
      }
    }
  }
  // Rank 0 read every global manifest: the I/O deadline (here and below, where every rank's
  // manager scans its own directory).
  const Status heard = broadcast_status(scanned, io_timeout());
  PKRT_RETURN_IF_ERROR(lost_);
  if (st.ok()) st = heard;
  if (st.ok()) {
    const auto ids = partition_.actors_of(static_cast<std::uint32_t>(context_.rank));
    const std::string dir = options.directory + "/" +
                            rank_checkpoint_dir(static_cast<std::uint32_t>(context_.rank),
                                                static_cast<std::uint32_t>(context_.size), ids);
    auto store = FileCheckpointStore::open(dir);
    if (!store.ok()) {
      st = store.status();
    } else {
      CheckpointPolicy policy;
      policy.keep_sets = 1;  // this rank's newest set; the global checkpoints' sets are pinned
      policy.encode = options.encode;
      policy.inputs = options.inputs;
      policy.unique_manifest_names = true;  // a global checkpoint names the very set it committed
      auto manager = CheckpointManager::create(*local_, std::move(store.value()), policy);
      if (!manager.ok()) {
        st = manager.status();
      } else {
        manager_ = std::move(manager.value());
        checkpoint_dir_ = options.directory;
        keep_globals_ = std::max<std::uint32_t>(options.keep, 1);
      }
    }
  }
  // Before any commit: a rank's first retention already keeps them.
  const Status pinned = share_pins(io_timeout());
  PKRT_RETURN_IF_ERROR(lost_);
  if (st.ok()) st = pinned;
  st = agree(st, "enable_checkpoints", io_timeout());
  if (!st.ok()) {
    // Every rank alike: none checkpoints (a later checkpoint() is refused on all of them).
    manager_.reset();
    global_store_.reset();
    checkpoint_dir_.clear();
  }
  return st;
}

Result<std::uint64_t> ShardedRuntime::checkpoint() {
  PKRT_RETURN_IF_ERROR(failed_);
  PKRT_RETURN_IF_ERROR(lost_);
  Status ready;
  if (!manager_) {
    ready = Status(StatusCode::kFailedPrecondition,
                   "checkpoint() before enable_checkpoints(). Fix: enable checkpoints on every rank first");
  } else if (shut_down_) {
    ready = after_shutdown("checkpoint()");
  } else if (!started_) {
    ready = Status(StatusCode::kFailedPrecondition,
                   "checkpoint() before start(): no grid runs yet to take it. Fix: start() (then run_until(epoch)) on "
                   "every rank first");
  }
  // Agreed: a rank that cannot take part would leave the others waiting in the collectives below.
  PKRT_RETURN_IF_ERROR(agree(ready, "checkpoint()"));
  ++checkpoints_begun_;
  // Right after start() the grids are parked at their start epoch before its exchange: the K2K
  // of that epoch is with no rank yet, so it would be in no image, and the gated grids cannot
  // serve the snapshot. That exchange comes first (the grids stay parked at the same epoch).
  if (exchanges_ && next_exchange_ <= parked_at_) {
    const Status exchanged = run_until(parked_at_);
    if (!exchanged.ok()) return exchanged;
  }
  // 1. Every rank parked at one epoch. One maximum: the lowest epoch as the largest
  //    complement, and whether any rank holds host commands for other ranks' actors.
  const std::uint64_t epoch = local_->stats().epoch;
  auto most = allreduce({epoch, ~epoch, queued_.size()}, MPI_MAX, timeout_, "comparing the ranks' parked epochs");
  if (!most.ok()) return most.status();
  const std::uint64_t hi = most.value()[0], lo = ~most.value()[1], queued = most.value()[2];
  if (lo != hi) {
    return Status(StatusCode::kFailedPrecondition,
                  "ranks are parked at epochs " + std::to_string(lo) + " to " + std::to_string(hi) +
                      ". Fix: call run_until(epoch) on every rank before checkpoint()");
  }
  if (queued != 0) {
    // Handed to their owners first, so that they are in the owners' queued commands at the
    // cut (a restore posts them again, on whichever rank then runs their actors).
    Status handed = hand_over_commands(Status());
    handed = agree(handed, "handing over host commands before checkpoint()");
    if (!handed.ok()) {
      // A command may now be on no rank: the run cannot go on as written.
      fail(handed);
      local_->shutdown().ignore();
      return handed;
    }
  }
  // 2. Phase 1: this rank's set, durable.
  Status mine;
  // Heap buffers of the gather below: a lost peer leaves it pending on them.
  auto buffers = std::make_shared<std::pair<SetReport, std::vector<SetReport>>>();
  auto& [report, reports] = *buffers;
  {
    auto request = manager_->checkpoint_now();
    mine = request.ok() ? manager_->flush() : request.status();
    const auto newest = manager_->newest_committed();
    if (mine.ok() && (!newest || newest->second != epoch))
      mine = Status(StatusCode::kInternal, "rank " + std::to_string(context_.rank) + " flushed its checkpoint of epoch " +
                                               std::to_string(epoch) + " but has no committed set of it");
    if (mine.ok()) {
      auto bytes = manager_->store().get(newest->first);
      if (bytes.ok()) report.manifest_crc = crc32(bytes.value().data(), bytes.value().size());
      else mine = bytes.status();
    }
    if (mine.ok()) {
      report.name_length = static_cast<std::uint32_t>(std::min<std::size_t>(newest->first.size(), sizeof report.name));
      std::memcpy(report.name, newest->first.data(), report.name_length);
    }
  }
  if (mine.ok()) detail::commit_point_reached(detail::CommitPoint::kSetDurable, context_.rank, checkpoints_begun_);
  report.code = static_cast<std::uint32_t>(mine.code());
  report.actors = local_->options().num_actors;
  reports.resize(static_cast<std::size_t>(context_.size));
  MPI_Request gather = MPI_REQUEST_NULL;
  MPI_Igather(&report, sizeof report, MPI_BYTE, reports.data(), sizeof report, MPI_BYTE, 0, comm_, &gather);
  // As long as a rank may take to make its set durable (CheckpointManager::flush's default).
  PKRT_RETURN_IF_ERROR(await_collective(gather, buffers, io_timeout(),
                                        "reporting its checkpoint set of epoch " + std::to_string(epoch)));
  // 3. Phase 2 on rank 0.
  Status committed;
  if (context_.rank == 0) {
    std::vector<int> failed;
    for (int r = 0; r < context_.size; ++r)
      if (reports[static_cast<std::size_t>(r)].code != 0) failed.push_back(r);
    if (!failed.empty()) {
      committed = Status(StatusCode::kAborted, "rank(s) " + rank_list(failed) + " could not make their set of epoch " +
                                                   std::to_string(epoch) +
                                                   " durable (their output says why); no global checkpoint of epoch " +
                                                   std::to_string(epoch) + " was committed, the previous one stays");
    } else {
      GlobalCheckpointManifest g;
      g.epoch = epoch;
      g.sequence = next_global_sequence_;
      g.app = local_->program().name;
      g.params = local_->params();
      g.global_actors = partition_.actors();
      g.k2k_delay = local_->options().k2k_delay;
      g.chunk_bytes = local_->image_layout().chunk_bytes;
      g.image_bytes = local_->image_layout().image_bytes;
      g.partition = partition_.description();
      for (int r = 0; r < context_.size; ++r) {
        const auto ids = partition_.actors_of(static_cast<std::uint32_t>(r));
        const SetReport& rep = reports[static_cast<std::size_t>(r)];
        g.ranks.push_back({rank_checkpoint_dir(static_cast<std::uint32_t>(r), static_cast<std::uint32_t>(context_.size), ids) +
                               "/" + std::string(rep.name, std::min<std::size_t>(rep.name_length, sizeof rep.name)),
                           rep.manifest_crc, rep.actors});
      }
      for (std::uint32_t a = 0; a < partition_.actors(); ++a) g.owner.push_back(partition_.owner(a));
      const std::vector<std::byte> encoded = encode_global_manifest(g);
      // Never commit what a restore would refuse (an over-long partition text, say).
      auto readable = parse_global_manifest(encoded, global_manifest_name(g.app, epoch));
      if (!readable.ok()) committed = readable.status();
      if (committed.ok()) detail::commit_point_reached(detail::CommitPoint::kBeforeCommit, 0, checkpoints_begun_);
      if (committed.ok()) committed = global_store_->put(global_manifest_name(g.app, epoch), encoded);
      if (committed.ok()) {
        detail::commit_point_reached(detail::CommitPoint::kAfterCommit, 0, checkpoints_begun_);
        pins_.push_back(epoch);
        // Uncommit the global checkpoints beyond `keep`, oldest first; their sets are unpinned
        // below and pruned by each rank's next retention. Failing to is reported, not fatal:
        // the new checkpoint is committed, and what could not be removed keeps its pins.
        auto globals = list_global_checkpoints(checkpoint_dir_, local_->program().name);
        if (globals.ok()) {
          auto& list = globals.value();
          const std::size_t drop = list.size() > keep_globals_ ? list.size() - keep_globals_ : 0;
          pins_.clear();
          for (std::size_t i = 0; i < list.size(); ++i) {
            if (i >= drop) {
              pins_.push_back(list[i].second.epoch);
              continue;
            }
            const Status removed = global_store_->remove(list[i].first);
            if (removed.ok()) continue;
            pins_.push_back(list[i].second.epoch);
            std::fprintf(stderr, "pkrt: rank 0: could not retire global checkpoint %s (it stays committed and pinned): %s\n",
                         list[i].first.c_str(), removed.to_string().c_str());
          }
        } else {
          std::fprintf(stderr, "pkrt: rank 0: global checkpoints beyond keep=%u were not retired: %s\n", keep_globals_,
                       globals.status().to_string().c_str());
        }
      }
    }
  }
  ++next_global_sequence_;
  // 4. The outcome and the pins, from rank 0 (after a failed commit, the same pins as before).
  //    Rank 0 may still be writing and retiring manifests: the I/O deadline.
  const Status outcome = broadcast_status(committed, io_timeout());
  PKRT_RETURN_IF_ERROR(lost_);
  const Status pinned = share_pins(io_timeout());
  PKRT_RETURN_IF_ERROR(lost_);
  if (!mine.ok()) return mine;
  if (!outcome.ok()) return outcome;
  if (!pinned.ok()) return pinned;
  return epoch;
}

Result<std::uint64_t> ShardedRuntime::restore(const std::string& directory, std::optional<std::uint64_t> epoch,
                                              const RunInputs& inputs, std::vector<std::string>* skipped) {
  PKRT_RETURN_IF_ERROR(failed_);
  PKRT_RETURN_IF_ERROR(lost_);
  Status ready;
  if (started_ || shut_down_) {
    ready = Status(StatusCode::kFailedPrecondition,
                   std::string("restore() after ") + (started_ ? "start()" : "shutdown()") +
                       ": a grid that ran cannot be replaced. Fix: create a new ShardedRuntime on every rank and "
                       "restore it before start()");
  } else if (!queued_.empty()) {
    // Commands posted before a restore were aimed at epochs of the run being replaced.
    ready = Status(StatusCode::kFailedPrecondition,
                   std::to_string(queued_.size()) + " host command(s) were posted before "
                   "restore(). Fix: restore first, then post (apply epochs after the restored one)");
  }
  PKRT_RETURN_IF_ERROR(agree(ready, "restore()"));
  std::vector<std::string> passed_over;  // rank 0's account
  // Rank 0 lists the candidates, newest first; then, one at a time, every rank reads its
  // actors' part of the candidate and all agree whether every rank could.
  std::vector<std::string> candidates;
  Status picked;
  if (context_.rank == 0) {
    std::vector<std::string> damaged;
    auto globals = list_global_checkpoints(directory, local_->program().name, &damaged);
    if (!globals.ok()) {
      picked = globals.status();
    } else {
      for (const std::string& d : damaged) passed_over.push_back("global checkpoint whose manifest is damaged: " + d);
      for (auto it = globals.value().rbegin(); it != globals.value().rend(); ++it)
        if (!epoch || it->second.epoch == *epoch) candidates.push_back(it->first);
      if (candidates.empty()) {
        picked = Status(StatusCode::kNotFound,
                        "no committed global checkpoint" + (epoch ? " of epoch " + std::to_string(*epoch) : std::string()) +
                            " in " + directory + " (" + std::to_string(globals.value().size()) + " committed in all" +
                            (damaged.empty() ? std::string() : ", " + std::to_string(damaged.size()) + " damaged") +
                            "). Fix: `pkrt checkpoint list " + directory + "` shows them");
      }
    }
  }
  // Rank 0 may have scanned a large directory: the I/O deadline.
  PKRT_RETURN_IF_ERROR(broadcast_status(picked, io_timeout()));
  // The candidates' names, each as [u32 length][bytes].
  std::vector<std::byte> names;
  pkrt::detail::ByteWriter w(names);
  for (const std::string& c : candidates) {
    w.put(static_cast<std::uint32_t>(c.size()));
    w.bytes(c.data(), c.size());
  }
  PKRT_RETURN_IF_ERROR(broadcast(names, timeout_, "hearing rank 0's global checkpoints"));
  candidates.clear();
  pkrt::detail::ByteReader r(names);
  while (r.pos() < names.size()) {
    const auto name = r.take(r.get<std::uint32_t>());
    if (r.failed()) return Status(StatusCode::kInternal, "rank 0 broadcast a cut-short list of checkpoints");
    candidates.emplace_back(reinterpret_cast<const char*>(name.data()), name.size());
  }

  GlobalRestoreRequest request;
  request.app = local_->program().name;
  request.params = local_->params();
  request.global_actors = partition_.actors();
  request.k2k_delay = local_->options().k2k_delay;
  request.image_bytes = local_->image_layout().image_bytes;
  request.chunk_bytes = local_->image_layout().chunk_bytes;
  const auto mine = partition_.actors_of(static_cast<std::uint32_t>(context_.rank));
  request.global_ids.assign(mine.begin(), mine.end());
  request.inputs = inputs;
  for (const std::string& chosen : candidates) {
    auto read = read_global_checkpoint(directory, chosen, request);
    const Status readable =
        agree(read.ok() ? Status() : read.status(), "reading global checkpoint " + chosen, io_timeout());
    PKRT_RETURN_IF_ERROR(lost_);
    if (readable.ok()) {
      for (Command& c : read->queued) c.actor = local_index(c.actor);
      const Status restored = local_->restore_before_start(read->epoch, read->images, {}, read->queued);
      const Status agreed = agree(restored, "restore", io_timeout());
      if (!agreed.ok()) {
        fail(agreed);  // some ranks may have restored, others not: this runtime cannot start
        return agreed;
      }
      if (skipped != nullptr) *skipped = std::move(passed_over);
      next_exchange_ = local_->first_exchange_epoch();  // the epoch after the restored one
      return read->epoch;
    }
    // Nothing was restored: pass it over for the next older one, saying why on rank 0.
    const std::string why = gather_texts(read.ok() ? std::string() : read.status().message());
    // Only what is damaged or missing is passed over; a mismatch (another program, params,
    // inputs) holds for every older one too, and is the caller's to fix.
    const bool damaged_only = read.ok() || read.status().code() == StatusCode::kCorruptData ||
                              read.status().code() == StatusCode::kNotFound || read.status().code() == StatusCode::kIoError;
    const Status all_damaged = agree(damaged_only ? Status() : read.status(), "checking what kept " + chosen + " from restoring");
    PKRT_RETURN_IF_ERROR(lost_);
    if (epoch || !all_damaged.ok()) return read.ok() ? (all_damaged.ok() ? readable : all_damaged) : read.status();
    if (context_.rank == 0) passed_over.push_back("global checkpoint " + chosen + " (" + why + ")");
  }
  if (skipped != nullptr) *skipped = passed_over;
  std::string all;
  for (const std::string& p : passed_over) all += (all.empty() ? "" : "; ") + p;
  return Status(StatusCode::kCorruptData, "every committed global checkpoint in " + directory + " is damaged" +
                                              (context_.rank == 0 ? ": " + all : std::string(" (rank 0 lists them)")) +
                                              ". Fix: restore from a copy of the directory, or start from scratch");
}

std::string ShardedRuntime::gather_texts(const std::string& mine) {
  if (!lost_.ok()) return {};
  // Heap buffers: a lost peer leaves the gathers pending on them.
  struct Buffers {
    std::string text;
    int length = 0;
    std::vector<int> lengths, offsets;
    std::string all;
  };
  auto b = std::make_shared<Buffers>();
  b->text = mine.substr(0, 4096);
  b->length = static_cast<int>(b->text.size());
  b->lengths.resize(context_.rank == 0 ? static_cast<std::size_t>(context_.size) : 0);
  MPI_Request request = MPI_REQUEST_NULL;
  MPI_Igather(&b->length, 1, MPI_INT, b->lengths.data(), 1, MPI_INT, 0, comm_, &request);
  if (!await_collective(request, b, timeout_, "gathering the ranks' reasons").ok()) return {};
  b->offsets.assign(b->lengths.size(), 0);
  int total = 0;
  for (std::size_t r = 0; r < b->lengths.size(); ++r) {
    b->offsets[r] = total;
    total += b->lengths[r];
  }
  b->all.assign(static_cast<std::size_t>(total), '\0');
  MPI_Igatherv(b->text.data(), b->length, MPI_CHAR, b->all.data(), b->lengths.data(), b->offsets.data(), MPI_CHAR, 0, comm_,
               &request);
  if (!await_collective(request, b, timeout_, "gathering the ranks' reasons").ok()) return {};
  const std::vector<int>& lengths = b->lengths;
  const std::vector<int>& offsets = b->offsets;
  const std::string& all = b->all;
  std::string joined;
  for (std::size_t r = 0; r < lengths.size(); ++r) {
    if (lengths[r] == 0) continue;
    joined += (joined.empty() ? "" : "; ") + std::string("rank ") + std::to_string(r) + ": " +
              all.substr(static_cast<std::size_t>(offsets[r]), static_cast<std::size_t>(lengths[r]));
  }
  return joined;
}

}  // namespace pkrt::mpi
