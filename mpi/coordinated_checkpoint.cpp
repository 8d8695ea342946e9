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

#include "mpi/mpi_support.hpp"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <map>

namespace pkrt::mpi {
namespace {

using detail::rank_list;
using detail::wait_all;

// What a rank reports to rank 0 after phase 1.
struct SetReport {
  std::uint32_t code = 0;  // StatusCode
  std::uint32_t manifest_crc = 0;
  std::uint32_t actors = 0;
  std::uint32_t name_length = 0;
  char name[240] = {};  // the set manifest's name in the rank's directory
};

bool has_suffix(const std::string& s, const std::string& suffix) {
  return s.size() > suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// The queued commands of one rank are at most two rings of 48-byte records per block; this
// bounds what a damaged file can make a restore allocate.
constexpr std::uint64_t kMaxQueuedCommandBytes = std::uint64_t{1} << 32;

// One member of a committed set, verified like find_restore_point verifies it: the file is
// the one the manifest names (digest, actor, epoch), then its delta chain and CRCs.
Result<std::vector<std::byte>> load_member(const CheckpointStore& store, const std::vector<CheckpointRecord>& history,
                                           const CheckpointManifest& m, const CheckpointSetMember& mem,
                                           std::uint64_t image_bytes) {
  const CheckpointRecord* file = nullptr;
  for (const CheckpointRecord& rec : history)
    if (rec.name == mem.file) file = &rec;
  if (file == nullptr || !file->status.ok())
    return Status(StatusCode::kCorruptData, "member '" + store.describe(mem.file) + "' is missing or damaged" +
                                                (file != nullptr ? ": " + file->status.message() : std::string()));
  if (file->info.digest != mem.digest || file->info.actor != mem.actor || file->info.epoch != m.epoch)
    return Status(StatusCode::kCorruptData, "member '" + store.describe(mem.file) +
                                                "' is not the file its set committed (digest, actor or epoch differ)");
  std::uint64_t expected = image_bytes;
  if (mem.actor == kQueuedCommandsActor) {
    expected = file->info.state_bytes;
    if (expected > kMaxQueuedCommandBytes)
      return Status(StatusCode::kCorruptData, "member '" + store.describe(mem.file) + "' declares " +
                                                  std::to_string(expected) + " bytes of queued commands");
  }
  return load_checkpoint_state(store, history, mem.file, expected);
}

}  // namespace

Result<std::vector<std::pair<std::string, GlobalCheckpointManifest>>> ShardedRuntime::scan_globals(
    const std::string& directory) const {
  auto store = FileCheckpointStore::open(directory);
  if (!store.ok()) return store.status();
  auto names = store.value()->list();
  if (!names.ok()) return names.status();
  std::vector<std::pair<std::string, GlobalCheckpointManifest>> out;
  const std::string app = local_->program().name;
  for (const std::string& name : names.value()) {
    // Only this app's (another app may share the directory: its checkpoints are not ours to
    // count, keep or remove).
    if (!has_suffix(name, kGlobalManifestSuffix) || name.rfind(app + "-global-", 0) != 0) continue;
    auto bytes = store.value()->get(name);
    if (!bytes.ok()) {
      if (bytes.status().code() == StatusCode::kNotFound) continue;  // removed meanwhile
      return bytes.status();  // unreadable now: its sets must keep their pins
    }
    auto parsed = parse_global_manifest(bytes.value(), store.value()->describe(name));
    // A damaged manifest commits nothing (its sets were pinned while it was whole).
    if (parsed.ok() && parsed.value().app == app) out.emplace_back(name, std::move(parsed.value()));
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.second.sequence < b.second.sequence; });
  return out;
}

Status ShardedRuntime::broadcast_status(const Status& at_root) {
  std::uint32_t code = static_cast<std::uint32_t>(at_root.code());
  std::string text = at_root.message();
  std::uint32_t length = static_cast<std::uint32_t>(std::min<std::size_t>(text.size(), 4096));
  MPI_Bcast(&code, 1, MPI_UINT32_T, 0, comm_);
  MPI_Bcast(&length, 1, MPI_UINT32_T, 0, comm_);
  text.resize(length);
  MPI_Bcast(text.data(), static_cast<int>(length), MPI_CHAR, 0, comm_);
  if (code == 0) return Status();
  return Status(static_cast<StatusCode>(code), context_.rank == 0 ? text : "rank 0: " + text);
}

void ShardedRuntime::share_pins() {
  std::uint32_t count = static_cast<std::uint32_t>(pins_.size());
  MPI_Bcast(&count, 1, MPI_UINT32_T, 0, comm_);
  pins_.resize(count);
  MPI_Bcast(pins_.data(), static_cast<int>(count), MPI_UINT64_T, 0, comm_);
  if (manager_) manager_->pin_epochs(pins_);
}

Status ShardedRuntime::enable_checkpoints(const GlobalCheckpointOptions& options) {
  PKRT_RETURN_IF_ERROR(failed_);
  Status st;
  if (options.directory.empty()) {
    st = Status(StatusCode::kInvalidArgument, "no checkpoint directory. Fix: set GlobalCheckpointOptions::directory");
  } else if (manager_) {
    st = Status(StatusCode::kFailedPrecondition, "checkpoints are already enabled on this ShardedRuntime");
  } else if (local_->layout().global_bytes > 0) {
    st = Status(StatusCode::kUnsupported,
                std::string("app '") + local_->program().name + "' has a global region, which is per rank in a multi-rank run: "
                "coordinated checkpoints of it are not built yet. Fix: run it on one rank to checkpoint it");
  }
  // Rank 0 reads the committed global checkpoints once: their epochs are pinned on every
  // rank (their sets stay, whatever each rank's policy says) and the sequence goes on past them.
  Status scanned;
  if (st.ok() && context_.rank == 0) {
    auto globals = scan_globals(options.directory);
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
  if (st.ok()) st = broadcast_status(scanned);
  else broadcast_status(scanned).ignore();
  MPI_Bcast(&next_global_sequence_, 1, MPI_UINT64_T, 0, comm_);
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
  share_pins();  // before any commit: a rank's first retention already keeps them
  st = agree(st, "enable_checkpoints");
  if (!st.ok()) {
    // Every rank alike: none checkpoints (a later checkpoint() is refused on all of them).
    manager_.reset();
    checkpoint_dir_.clear();
  }
  return st;
}

Result<std::uint64_t> ShardedRuntime::checkpoint() {
  PKRT_RETURN_IF_ERROR(failed_);
  if (!manager_) {
    return Status(StatusCode::kFailedPrecondition,
                  "checkpoint() before enable_checkpoints(). Fix: enable checkpoints on every rank first");
  }
  // 1. Every rank parked at one epoch, and no host command forwarded but not yet delivered
  //    (it would be in no rank's queued commands at the cut).
  const std::uint64_t epoch = local_->stats().epoch;
  std::uint64_t lo = 0, hi = 0, forwarding = forward_.size(), forwarded = 0;
  MPI_Allreduce(&epoch, &lo, 1, MPI_UINT64_T, MPI_MIN, comm_);
  MPI_Allreduce(&epoch, &hi, 1, MPI_UINT64_T, MPI_MAX, comm_);
  MPI_Allreduce(&forwarding, &forwarded, 1, MPI_UINT64_T, MPI_SUM, comm_);
  if (lo != hi) {
    return Status(StatusCode::kFailedPrecondition,
                  "ranks are parked at epochs " + std::to_string(lo) + " to " + std::to_string(hi) +
                      ". Fix: call run_until(epoch) on every rank before checkpoint()");
  }
  if (forwarded != 0) {
    return Status(StatusCode::kFailedPrecondition,
                  std::to_string(forwarded) + " host command(s) posted to other ranks' actors are not delivered yet "
                  "(they travel with the next exchange). Fix: checkpoint before posting them, or after the next run_until");
  }
  // 2. Phase 1: this rank's set, durable.
  Status mine;
  SetReport report{};
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
  report.code = static_cast<std::uint32_t>(mine.code());
  report.actors = local_->options().num_actors;
  std::vector<SetReport> reports(static_cast<std::size_t>(context_.size));
  MPI_Request gather = MPI_REQUEST_NULL;
  MPI_Igather(&report, sizeof report, MPI_BYTE, reports.data(), sizeof report, MPI_BYTE, 0, comm_, &gather);
  std::vector<MPI_Request> requests{gather};
  // As long as a rank may take to make its set durable (CheckpointManager::flush's default).
  const Status gathered = wait_all(requests, std::vector<int>{-1}, std::max<std::chrono::milliseconds>(timeout_, std::chrono::minutes(10)),
                                   "rank " + std::to_string(context_.rank) + " reporting its checkpoint set of epoch " +
                                       std::to_string(epoch));
  if (!gathered.ok()) return peers_lost(gathered);
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
      auto top = FileCheckpointStore::open(checkpoint_dir_);
      if (!readable.ok()) committed = readable.status();
      else committed = top.ok() ? top.value()->put(global_manifest_name(g.app, epoch), encoded) : top.status();
      if (committed.ok()) {
        pins_.push_back(epoch);
        // Uncommit the global checkpoints beyond `keep`, oldest first; their sets are unpinned
        // below and pruned by each rank's next retention. Failing to is reported, not fatal:
        // the new checkpoint is committed, and what could not be removed keeps its pins.
        auto globals = scan_globals(checkpoint_dir_);
        if (globals.ok()) {
          auto& list = globals.value();
          const std::size_t drop = list.size() > keep_globals_ ? list.size() - keep_globals_ : 0;
          pins_.clear();
          for (std::size_t i = 0; i < list.size(); ++i) {
            if (i >= drop) {
              pins_.push_back(list[i].second.epoch);
              continue;
            }
            const Status removed = top.value()->remove(list[i].first);
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
  const Status outcome = broadcast_status(committed);
  share_pins();
  if (!mine.ok()) return mine;
  if (!outcome.ok()) return outcome;
  return epoch;
}

Result<std::uint64_t> ShardedRuntime::restore(const std::string& directory, std::optional<std::uint64_t> epoch,
                                              const RunInputs& inputs) {
  PKRT_RETURN_IF_ERROR(failed_);
  // Commands forwarded before a restore were aimed at epochs of the run being replaced.
  std::uint64_t forwarding = forward_.size(), forwarded = 0;
  MPI_Allreduce(&forwarding, &forwarded, 1, MPI_UINT64_T, MPI_SUM, comm_);
  if (forwarded != 0) {
    return Status(StatusCode::kFailedPrecondition,
                  std::to_string(forwarded) + " host command(s) were posted to other ranks' actors before restore(). "
                  "Fix: restore first, then post (apply epochs after the restored one)");
  }
  // Rank 0 picks the global checkpoint; every rank reads it and its own actors' members.
  std::string chosen;
  Status picked;
  if (context_.rank == 0) {
    auto globals = scan_globals(directory);
    if (!globals.ok()) {
      picked = globals.status();
    } else {
      for (auto it = globals.value().rbegin(); it != globals.value().rend(); ++it) {
        if (epoch && it->second.epoch != *epoch) continue;
        chosen = it->first;
        break;
      }
      if (chosen.empty()) {
        picked = Status(StatusCode::kNotFound,
                        "no committed global checkpoint" + (epoch ? " of epoch " + std::to_string(*epoch) : std::string()) +
                            " in " + directory + " (" + std::to_string(globals.value().size()) +
                            " committed in all). Fix: `pkrt checkpoint list " + directory + "` shows them");
      }
    }
  }
  PKRT_RETURN_IF_ERROR(broadcast_status(picked));
  std::uint32_t length = static_cast<std::uint32_t>(chosen.size());
  MPI_Bcast(&length, 1, MPI_UINT32_T, 0, comm_);
  chosen.resize(length);
  MPI_Bcast(chosen.data(), static_cast<int>(length), MPI_CHAR, 0, comm_);

  auto load = [&]() -> Result<std::uint64_t> {
    const std::string where = directory + "/" + chosen;
    auto bytes = read_checkpoint_file(where);
    if (!bytes.ok()) return bytes.status();
    auto parsed = parse_global_manifest(bytes.value(), where);
    if (!parsed.ok()) return parsed.status();
    const GlobalCheckpointManifest& g = parsed.value();
    auto mismatch = [&](const std::string& field, const std::string& saved, const std::string& now) {
      return Status(StatusCode::kInvalidArgument,
                    "global checkpoint " + where + " has " + field + " " + saved + ", this run " + now +
                        ". Fix: restore with the run's own settings (or restore another checkpoint)");
    };
    if (g.app != local_->program().name) return mismatch("app", g.app, std::string(local_->program().name));
    if (g.global_actors != partition_.actors())
      return mismatch("actors", std::to_string(g.global_actors), std::to_string(partition_.actors()));
    if (g.k2k_delay != local_->options().k2k_delay)
      return mismatch("K2K delay", std::to_string(g.k2k_delay), std::to_string(local_->options().k2k_delay));
    if (g.params != local_->params()) return mismatch("params", "of CRC " + std::to_string(crc32(g.params.data(), g.params.size())),
                                                      "of CRC " + std::to_string(crc32(local_->params().data(), local_->params().size())));
    if (g.image_bytes != local_->image_layout().image_bytes || g.chunk_bytes != local_->image_layout().chunk_bytes)
      return mismatch("image layout", std::to_string(g.image_bytes) + " bytes in chunks of " + std::to_string(g.chunk_bytes),
                      std::to_string(local_->image_layout().image_bytes) + " in chunks of " +
                          std::to_string(local_->image_layout().chunk_bytes));
    const std::vector<std::uint32_t> old_local = global_local_indices(g.owner, static_cast<std::uint32_t>(g.ranks.size()));
    const auto mine = partition_.actors_of(static_cast<std::uint32_t>(context_.rank));
    std::vector<std::vector<std::byte>> images(mine.size());
    std::vector<Command> queued;
    // The old ranks this rank reads from, each set verified once (its manifest's CRC against
    // the global manifest's, every member through its delta chain).
    std::map<std::uint32_t, std::vector<std::uint32_t>> by_old_rank;  // old rank -> indices into `mine`
    for (std::uint32_t i = 0; i < mine.size(); ++i) by_old_rank[g.owner[mine[i]]].push_back(i);
    for (std::uint32_t old = 0; old < g.ranks.size(); ++old) {
      const GlobalCheckpointRank& rk = g.ranks[old];
      const auto slash = rk.manifest.find('/');
      auto store = FileCheckpointStore::open(directory + "/" + rk.manifest.substr(0, slash));
      if (!store.ok()) return store.status();
      const std::string set_name = rk.manifest.substr(slash + 1);
      auto set_bytes = store.value()->get(set_name);
      if (!set_bytes.ok()) return set_bytes.status();
      if (crc32(set_bytes.value().data(), set_bytes.value().size()) != rk.manifest_crc) {
        return Status(StatusCode::kCorruptData, "rank " + std::to_string(old) + "'s set manifest " +
                                                    store.value()->describe(set_name) +
                                                    " is not the one global checkpoint " + where +
                                                    " committed (CRC differs). Fix: restore another global checkpoint");
      }
      auto set = parse_checkpoint_manifest(set_bytes.value(), store.value()->describe(set_name));
      if (!set.ok()) return set.status();
      const CheckpointManifest& m = set.value();
      PKRT_RETURN_IF_ERROR(compare_run_inputs(m.inputs, inputs, store.value()->describe(set_name)));
      if (m.epoch != g.epoch || m.fingerprint.num_actors != rk.actors) {
        return Status(StatusCode::kCorruptData, "rank " + std::to_string(old) + "'s set " + store.value()->describe(set_name) +
                                                    " is of epoch " + std::to_string(m.epoch) + " with " +
                                                    std::to_string(m.fingerprint.num_actors) + " actors, not what " + where +
                                                    " says. Fix: restore another global checkpoint");
      }
      const auto wanted = by_old_rank.find(old);
      // Every rank reads each old rank's queued commands (they may be for its actors).
      const CheckpointSetMember* queued_member = nullptr;
      for (const CheckpointSetMember& mem : m.members)
        if (mem.actor == kQueuedCommandsActor) queued_member = &mem;
      if (wanted == by_old_rank.end() && queued_member == nullptr) continue;
      auto history = scan_checkpoints(*store.value());
      if (!history.ok()) return history.status();
      if (wanted != by_old_rank.end()) {
        for (std::uint32_t i : wanted->second) {
          const std::uint32_t l = old_local[mine[i]];
          if (l >= m.members.size() || m.members[l].actor != l)
            return Status(StatusCode::kCorruptData, "set " + store.value()->describe(set_name) + " has no member for its actor " +
                                                        std::to_string(l) + " (global " + std::to_string(mine[i]) + ")");
          auto state = load_member(*store.value(), history.value(), m, m.members[l], g.image_bytes);
          if (!state.ok()) return state.status();
          images[i] = std::move(state.value());
        }
      }
      if (queued_member != nullptr) {
        auto state = load_member(*store.value(), history.value(), m, *queued_member, 0);
        if (!state.ok()) return state.status();
        auto commands = decode_queued_commands(state.value(), rk.actors, store.value()->describe(queued_member->file));
        if (!commands.ok()) return commands.status();
        // Old local index -> global id -> ours?
        const auto old_ids = [&] {
          std::vector<std::uint32_t> ids;
          for (std::uint32_t a = 0; a < g.global_actors; ++a)
            if (g.owner[a] == old) ids.push_back(a);
          return ids;
        }();
        for (Command c : commands.value()) {
          const std::uint32_t global = old_ids[c.actor];
          if (!owns(global)) continue;
          c.actor = local_index(global);
          queued.push_back(c);
        }
      }
    }
    PKRT_RETURN_IF_ERROR(local_->restore_before_start(g.epoch, images, {}, queued));
    return g.epoch;
  };
  auto restored = load();
  const Status agreed = agree(restored.ok() ? Status() : restored.status(), "restore");
  if (!agreed.ok()) {
    fail(agreed);  // some ranks may have restored, others not: this runtime cannot start
    return agreed;
  }
  next_exchange_ = local_->first_exchange_epoch();  // the epoch after the restored one
  return restored.value();
}

}  // namespace pkrt::mpi
