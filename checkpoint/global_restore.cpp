// checkpoint/global_restore.cpp: listing and reading global checkpoints for a restore (see
// pkrt/global_checkpoint.hpp). Shared by ShardedRuntime::restore (every rank reads the
// actors it now runs) and the replay of one rank from a global checkpoint.
#include <pkrt/checkpoint_store.hpp>
#include <pkrt/crc32.hpp>
#include <pkrt/global_checkpoint.hpp>

#include <algorithm>
#include <map>

namespace pkrt {
namespace {

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

// The manifest against what the restoring run expects, field by field.
Status check_against(const GlobalCheckpointManifest& g, const GlobalRestoreRequest& r, const std::string& where) {
  auto mismatch = [&](const std::string& field, const std::string& saved, const std::string& now) {
    return Status(StatusCode::kInvalidArgument,
                  "global checkpoint " + where + " has " + field + " " + saved + ", this run " + now +
                      ". Fix: restore with the run's own settings (or restore another checkpoint)");
  };
  if (g.app != r.app) return mismatch("app", g.app, r.app);
  if (g.global_actors != r.global_actors)
    return mismatch("actors", std::to_string(g.global_actors), std::to_string(r.global_actors));
  if (g.k2k_delay != r.k2k_delay) return mismatch("K2K delay", std::to_string(g.k2k_delay), std::to_string(r.k2k_delay));
  if (g.params != r.params)
    return mismatch("params", "of CRC " + std::to_string(crc32(g.params.data(), g.params.size())),
                    "of CRC " + std::to_string(crc32(r.params.data(), r.params.size())));
  if (g.image_bytes != r.image_bytes || g.chunk_bytes != r.chunk_bytes)
    return mismatch("image layout", std::to_string(g.image_bytes) + " bytes in chunks of " + std::to_string(g.chunk_bytes),
                    std::to_string(r.image_bytes) + " in chunks of " + std::to_string(r.chunk_bytes));
  for (std::uint32_t a : r.global_ids)
    if (a >= g.global_actors)
      return Status(StatusCode::kInvalidArgument, "actor " + std::to_string(a) + " is not in global checkpoint " + where);
  return Status();
}

}  // namespace

Result<GlobalCheckpointList> list_global_checkpoints(const std::string& directory, const std::string& app,
                                                     std::vector<std::string>* damaged) {
  auto store = FileCheckpointStore::open_existing(directory);
  // A directory no run has written yet holds none (a first coordinated checkpoint lists it).
  if (store.status().code() == StatusCode::kNotFound) return GlobalCheckpointList{};
  if (!store.ok()) return store.status();
  auto names = store.value()->list();
  if (!names.ok()) return names.status();
  GlobalCheckpointList out;
  for (const std::string& name : names.value()) {
    // Only this app's (another app may share the directory: its checkpoints are not ours to
    // count, keep or remove).
    if (!name.ends_with(kGlobalManifestSuffix) || !name.starts_with(app + "-global-")) continue;
    auto bytes = store.value()->get(name);
    if (!bytes.ok()) {
      if (bytes.status().code() == StatusCode::kNotFound) continue;  // removed meanwhile
      return bytes.status();  // unreadable now: its sets must keep their pins
    }
    auto parsed = parse_global_manifest(bytes.value(), store.value()->describe(name));
    // A damaged manifest commits nothing (its sets were pinned while it was whole).
    if (parsed.ok() && parsed.value().app == app) out.emplace_back(name, std::move(parsed.value()));
    else if (!parsed.ok() && damaged != nullptr) damaged->push_back(name + " (" + parsed.status().message() + ")");
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.second.sequence < b.second.sequence; });
  return out;
}

Result<GlobalRestoreData> read_global_checkpoint(const std::string& directory, const std::string& name,
                                                 const GlobalRestoreRequest& request) {
  const std::string where = directory + "/" + name;
  auto bytes = read_checkpoint_file(where);
  if (!bytes.ok()) return bytes.status();
  auto parsed = parse_global_manifest(bytes.value(), where);
  if (!parsed.ok()) return parsed.status();
  const GlobalCheckpointManifest& g = parsed.value();
  PKRT_RETURN_IF_ERROR(check_against(g, request, where));
  const std::vector<std::uint32_t> old_local = global_local_indices(g.owner, static_cast<std::uint32_t>(g.ranks.size()));
  const std::vector<std::uint32_t>& wanted_ids = request.global_ids;
  GlobalRestoreData out;
  out.epoch = g.epoch;
  out.images.resize(wanted_ids.size());
  // The old ranks to read from, each set verified once (its manifest's CRC against the
  // global manifest's, every member through its delta chain).
  std::map<std::uint32_t, std::vector<std::uint32_t>> by_old_rank;  // old rank -> indices into wanted_ids
  for (std::uint32_t i = 0; i < wanted_ids.size(); ++i) by_old_rank[g.owner[wanted_ids[i]]].push_back(i);
  // For the queued commands: each old rank's global ids in its local order, in one pass.
  std::vector<std::vector<std::uint32_t>> old_ids_of(request.queued_commands ? g.ranks.size() : 0);
  if (request.queued_commands)
    for (std::uint32_t a = 0; a < g.global_actors; ++a) old_ids_of[g.owner[a]].push_back(a);
  for (std::uint32_t old = 0; old < g.ranks.size(); ++old) {
    const auto wanted = by_old_rank.find(old);
    if (wanted == by_old_rank.end() && !request.queued_commands) continue;
    const GlobalCheckpointRank& rk = g.ranks[old];
    const auto slash = rk.manifest.find('/');
    auto store = FileCheckpointStore::open_existing(directory + "/" + rk.manifest.substr(0, slash));
    if (!store.ok()) return store.status();
    const std::string set_name = rk.manifest.substr(slash + 1);
    auto set_bytes = store.value()->get(set_name);
    if (!set_bytes.ok()) return set_bytes.status();
    if (crc32(set_bytes.value().data(), set_bytes.value().size()) != rk.manifest_crc) {
      return Status(StatusCode::kCorruptData, "rank " + std::to_string(old) + "'s set manifest " +
                                                  store.value()->describe(set_name) + " is not the one global checkpoint " +
                                                  where + " committed (CRC differs). Fix: restore another global checkpoint");
    }
    auto set = parse_checkpoint_manifest(set_bytes.value(), store.value()->describe(set_name));
    if (!set.ok()) return set.status();
    const CheckpointManifest& m = set.value();
    if (request.inputs) PKRT_RETURN_IF_ERROR(compare_run_inputs(m.inputs, *request.inputs, store.value()->describe(set_name)));
    if (m.epoch != g.epoch || m.fingerprint.num_actors != rk.actors) {
      return Status(StatusCode::kCorruptData, "rank " + std::to_string(old) + "'s set " + store.value()->describe(set_name) +
                                                  " is of epoch " + std::to_string(m.epoch) + " with " +
                                                  std::to_string(m.fingerprint.num_actors) + " actors, not what " + where +
                                                  " says. Fix: restore another global checkpoint");
    }
    // Every old rank's queued commands are read when asked for (they may be for our actors).
    const CheckpointSetMember* queued_member = nullptr;
    if (request.queued_commands)
      for (const CheckpointSetMember& mem : m.members)
        if (mem.actor == kQueuedCommandsActor) queued_member = &mem;
    if (wanted == by_old_rank.end() && queued_member == nullptr) continue;
    auto history = scan_checkpoints(*store.value());
    if (!history.ok()) return history.status();
    if (wanted != by_old_rank.end()) {
      for (std::uint32_t i : wanted->second) {
        const std::uint32_t l = old_local[wanted_ids[i]];
        if (l >= m.members.size() || m.members[l].actor != l)
          return Status(StatusCode::kCorruptData, "set " + store.value()->describe(set_name) + " has no member for its actor " +
                                                      std::to_string(l) + " (global " + std::to_string(wanted_ids[i]) + ")");
        auto state = load_member(*store.value(), history.value(), m, m.members[l], g.image_bytes);
        if (!state.ok()) return state.status();
        out.images[i] = std::move(state.value());
      }
    }
    if (queued_member != nullptr) {
      auto state = load_member(*store.value(), history.value(), m, *queued_member, 0);
      if (!state.ok()) return state.status();
      auto commands = decode_queued_commands(state.value(), rk.actors, store.value()->describe(queued_member->file));
      if (!commands.ok()) return commands.status();
      // The old rank's local index -> global id; kept when it is one of ours.
      const std::vector<std::uint32_t>& old_ids = old_ids_of[old];
      for (Command c : commands.value()) {
        if (c.actor >= old_ids.size()) {
          return Status(StatusCode::kCorruptData, "a command queued in " + store.value()->describe(queued_member->file) +
                                                      " is for actor " + std::to_string(c.actor) + ", but rank " +
                                                      std::to_string(old) + " ran " + std::to_string(old_ids.size()) +
                                                      " actors in " + where);
        }
        c.actor = old_ids[c.actor];
        if (std::binary_search(wanted_ids.begin(), wanted_ids.end(), c.actor)) out.queued.push_back(c);
      }
    }
  }
  return out;
}

}  // namespace pkrt
