// host/cli/checkpoint_command.cpp: `pkrt checkpoint list DIR`, `inspect FILE [--json]`,
// `verify FILE|DIR` (exit 0 intact, 1 corrupt with what and where, 2 unusable input); a directory's
// committed sets are checked whole.
#include "host/cli/cli_common.hpp"
#include "host/cli/commands.hpp"

#include <pkrt/checkpoint.hpp>
#include <pkrt/checkpoint_set.hpp>
#include <pkrt/checkpoint_store.hpp>
#include <pkrt/crc32.hpp>
#include <pkrt/global_checkpoint.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <map>
#include <set>
#include <tuple>

namespace pkrt::cli {
namespace {

struct Opened {
  std::unique_ptr<FileCheckpointStore> store;
  std::string file;  // empty for a directory
};

Result<Opened> open_path(const std::string& path, bool allow_file, bool allow_dir) {
  std::error_code ec;
  const std::filesystem::path p(path);
  Opened out;
  std::string dir;
  if (allow_file && std::filesystem::is_regular_file(p, ec)) {
    dir = p.has_parent_path() ? p.parent_path().string() : ".";
    out.file = p.filename().string();
  } else if (allow_dir && std::filesystem::is_directory(p, ec)) {
    dir = path;
  } else if (!std::filesystem::exists(std::filesystem::symlink_status(p, ec))) {
    return Status(StatusCode::kNotFound, "'" + path + "' does not exist. Fix: check the path (`pkrt checkpoint list DIR` "
                                         "shows what a checkpoint directory holds)");
  } else {
    return Status(StatusCode::kInvalidArgument,
                  "'" + path + "' is not " + (allow_file && allow_dir ? "a checkpoint file or directory" :
                                              allow_file ? "a checkpoint file" : "a directory") +
                      ". Fix: check the path");
  }
  auto store = FileCheckpointStore::open_existing(dir);
  if (!store.ok()) return store.status();
  out.store = std::move(store.value());
  return out;
}

std::string human_bytes(std::uint64_t b) {
  char buf[32];
  if (b >= (1ull << 20)) std::snprintf(buf, sizeof buf, "%.1f MiB", static_cast<double>(b) / (1 << 20));
  else if (b >= 1024) std::snprintf(buf, sizeof buf, "%.1f KiB", static_cast<double>(b) / 1024);
  else std::snprintf(buf, sizeof buf, "%llu B", static_cast<unsigned long long>(b));
  return buf;
}

bool is_manifest_name(const std::string& n) {
  const std::string suffix = kCheckpointManifestSuffix;
  return n.size() > suffix.size() && n.compare(n.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// Epochs that have checkpoint files but no committed set, with how many actors each has.
struct PartialSet {
  std::uint64_t epoch = 0;
  std::string app;
  std::uint32_t actors = 0;      // distinct actors with an intact file
  std::uint32_t num_actors = 0;  // actors in the run that wrote them
};

// "global" for the app-wide region's image, "queued" for the queued commands, else the
// actor's index.
std::string actor_text(std::uint32_t actor) {
  if (actor == kGlobalRegionActor) return "global";
  if (actor == kQueuedCommandsActor) return "queued";
  return std::to_string(actor);
}
nlohmann::json actor_json(std::uint32_t actor) {
  return actor == kGlobalRegionActor || actor == kQueuedCommandsActor ? nlohmann::json(actor_text(actor))
                                                                      : nlohmann::json(actor);
}

std::vector<PartialSet> partial_sets(const std::vector<CheckpointRecord>& files,
                                     const std::vector<CheckpointSetRecord>& sets) {
  std::set<std::string> in_sets;
  for (const auto& s : sets)
    if (s.status.ok())
      for (const auto& m : s.manifest.members) in_sets.insert(m.file);
  // By (app, epoch, sequence): two unfinished sets at one epoch (two crashed runs) are two.
  std::map<std::tuple<std::string, std::uint64_t, std::uint64_t>, std::pair<std::set<std::uint32_t>, std::uint32_t>>
      by_set;
  for (const auto& r : files) {
    if (!r.status.ok() || in_sets.count(r.name) != 0) continue;
    auto& [actors, n] = by_set[{r.info.app, r.info.epoch, checkpoint_member_sequence(r.name)}];
    if (r.info.actor < r.info.num_actors) actors.insert(r.info.actor);  // counts actors only
    n = r.info.num_actors;
  }
  std::vector<PartialSet> out;
  for (const auto& [key, v] : by_set)
    out.push_back({std::get<1>(key), std::get<0>(key), static_cast<std::uint32_t>(v.first.size()), v.second});
  return out;
}

// Multi-rank checkpoint directories and global manifests (defined with verify below): true
// when `o.path` is one, with the command's exit code in `rc`.
bool global_command(const CheckpointOptions& o, const char* command, int& rc);

int list_command(const CheckpointOptions& o) {
  auto opened = open_path(o.path, false, true);
  if (!opened.ok()) return report_error("checkpoint list", opened.status());
  // A multi-rank run's directory holds global manifests and one directory per rank.
  if (int rc = 0; global_command(o, "list", rc)) return rc;
  auto sets = scan_checkpoint_sets(*opened->store);
  if (!sets.ok()) return report_error("checkpoint list", sets.status());
  auto history = scan_checkpoints(*opened->store);
  if (!history.ok()) return report_error("checkpoint list", history.status());
  const std::vector<PartialSet> partial = partial_sets(history.value(), sets.value());
  if (o.json) {
    nlohmann::json js = nlohmann::json::array();
    for (const auto& s : sets.value()) {
      if (!s.status.ok()) {
        js.push_back({{"manifest", s.name}, {"ok", false}, {"error", s.status.to_string()}});
        continue;
      }
      nlohmann::json members = nlohmann::json::array();
      for (const auto& m : s.manifest.members) members.push_back(m.file);
      js.push_back({{"manifest", s.name}, {"ok", true}, {"app", s.manifest.fingerprint.app},
                    {"epoch", s.manifest.epoch}, {"sequence", s.manifest.sequence},
                    {"actors", s.manifest.fingerprint.num_actors}, {"members", members}});
    }
    nlohmann::json jf = nlohmann::json::array();
    for (const auto& r : history.value()) {
      if (r.status.ok())
        jf.push_back({{"file", r.name}, {"app", r.info.app}, {"actor", actor_json(r.info.actor)}, {"epoch", r.info.epoch},
                      {"kind", r.info.delta ? "delta" : "full"}, {"bytes", r.file_bytes}, {"ok", true}});
      else
        jf.push_back({{"file", r.name}, {"ok", false}, {"error", r.status.to_string()}});
    }
    nlohmann::json jp = nlohmann::json::array();
    for (const auto& p : partial)
      jp.push_back({{"app", p.app}, {"epoch", p.epoch}, {"actors", p.actors}, {"num_actors", p.num_actors}});
    std::printf("%s\n", nlohmann::json{{"sets", js}, {"files", jf}, {"incomplete_sets", jp}}.dump(2).c_str());
    return kExitOk;
  }
  std::printf("%-8s %-14s %-6s %-10s %s\n", "actor", "epoch", "kind", "size", "file");
  std::size_t bad = 0;
  for (const auto& r : history.value()) {
    if (!r.status.ok()) {
      ++bad;
      std::printf("%-8s %-14s %-6s %-10s %s  (%s)\n", "?", "?", "BAD", human_bytes(r.file_bytes).c_str(), r.name.c_str(),
                  r.status.message().c_str());
      continue;
    }
    std::printf("%-8s %-14llu %-6s %-10s %s\n", actor_text(r.info.actor).c_str(), static_cast<unsigned long long>(r.info.epoch),
                r.info.delta ? "delta" : "full", human_bytes(r.file_bytes).c_str(), r.name.c_str());
  }
  std::printf("\n%-10s %-14s %-8s %-8s %s\n", "set", "epoch", "seq", "actors", "manifest");
  std::size_t committed = 0;
  for (const auto& s : sets.value()) {
    if (!s.status.ok()) {
      std::printf("%-10s %-14s %-8s %-8s %s  (%s)\n", "DAMAGED", "?", "?", "?", s.name.c_str(), s.status.message().c_str());
      continue;
    }
    ++committed;
    std::printf("%-10s %-14llu %-8llu %-8u %s\n", "committed", static_cast<unsigned long long>(s.manifest.epoch),
                static_cast<unsigned long long>(s.manifest.sequence), s.manifest.fingerprint.num_actors, s.name.c_str());
  }
  for (const auto& p : partial) {
    std::printf("%-10s %-14llu %-8s %-8s %s\n", "INCOMPLETE", static_cast<unsigned long long>(p.epoch), "-",
                (std::to_string(p.actors) + "/" + std::to_string(p.num_actors)).c_str(),
                p.actors < p.num_actors ? "(not every actor has a file: never restorable)"
                                        : "(no manifest: never committed, or retired and not yet removed)");
  }
  std::printf("%zu checkpoint files, %zu damaged; %zu committed sets, %zu incomplete; restorable epochs:",
              history->size(), bad, committed, partial.size());
  for (const auto& s : sets.value())
    if (s.status.ok()) std::printf(" %llu", static_cast<unsigned long long>(s.manifest.epoch));
  std::printf("%s\n", committed == 0 ? " none" : "");
  return kExitOk;
}

// `inspect` of a set manifest: the set's epoch, fingerprint, inputs and members.
int inspect_manifest(const CheckpointOptions& o, std::span<const std::byte> bytes) {
  auto parsed = parse_checkpoint_manifest(bytes, o.path);
  if (!parsed.ok()) {
    return report_error("checkpoint inspect", parsed.status(), kExitFailed);
  }
  const CheckpointManifest& m = parsed.value();
  const CheckpointFingerprint& f = m.fingerprint;
  char crc[16];
  std::snprintf(crc, sizeof crc, "0x%08x", crc32(f.params.data(), f.params.size()));
  if (o.json) {
    nlohmann::json regions = nlohmann::json::array();
    for (const auto& r : f.regions) regions.push_back({{"name", r.name}, {"offset", r.offset}, {"bytes", r.bytes}});
    nlohmann::json inputs = nlohmann::json::object();
    for (const auto& [k, v] : m.inputs) inputs[k] = v;
    nlohmann::json members = nlohmann::json::array();
    for (const auto& mem : m.members) {
      char digest[32];
      std::snprintf(digest, sizeof digest, "%016llx", static_cast<unsigned long long>(mem.digest));
      members.push_back({{"actor", actor_json(mem.actor)}, {"file", mem.file}, {"kind", mem.delta ? "delta" : "full"},
                         {"digest", digest}, {"file_bytes", mem.file_bytes}});
    }
    nlohmann::json j = {{"file", o.path}, {"kind", "set"}, {"app", f.app}, {"epoch", m.epoch},
                        {"sequence", m.sequence}, {"program_version", f.program_version},
                        {"num_actors", f.num_actors}, {"image_bytes", f.image_bytes}, {"chunk_bytes", f.chunk_bytes},
                        {"global_bytes", f.global_bytes}, {"manifest_version", m.version},
                        {"params_bytes", f.params.size()}, {"params_crc", crc}, {"regions", regions},
                        {"inputs", inputs}, {"members", members}};
    std::printf("%s\n", j.dump(2).c_str());
    return kExitOk;
  }
  std::uint64_t total = 0;
  std::size_t deltas = 0;
  for (const auto& mem : m.members) {
    total += mem.file_bytes;
    deltas += mem.delta ? 1 : 0;
  }
  std::vector<std::pair<std::string, std::string>> rows = {
      {"app", f.app + " (program version " + std::to_string(f.program_version) + ")"},
      {"epoch", std::to_string(m.epoch)},
      {"sequence", std::to_string(m.sequence)},
      {"actors", std::to_string(f.num_actors) + " (" + std::to_string(deltas) + " delta members), " +
                     human_bytes(total) + " of files"},
      {"image", human_bytes(f.image_bytes) + " per actor, " + human_bytes(f.chunk_bytes) + " chunks"},
      {"params", std::to_string(f.params.size()) + " bytes, CRC32 " + crc},
  };
  for (const auto& r : f.regions)
    rows.push_back({"region " + r.name, human_bytes(r.bytes) + " at offset " + std::to_string(r.offset)});
  rows.push_back({"global region", f.global_bytes == 0 ? std::string("none") : human_bytes(f.global_bytes)});
  for (const auto& [k, v] : m.inputs) rows.push_back({"input " + k, v});
  for (const auto& mem : m.members) {
    rows.push_back({"member " + actor_text(mem.actor), mem.file + " (" + human_bytes(mem.file_bytes) + ")"});
  }
  print_table(stdout, "checkpoint set " + o.path, rows);
  return kExitOk;
}

int inspect_command(const CheckpointOptions& o) {
  auto opened = open_path(o.path, true, false);
  if (!opened.ok()) return report_error("checkpoint inspect", opened.status());
  auto bytes = read_checkpoint_file(o.path);
  if (!bytes.ok()) return report_error("checkpoint inspect", bytes.status());
  if (is_manifest_name(o.path)) return inspect_manifest(o, bytes.value());
  if (int rc = 0; global_command(o, "inspect", rc)) return rc;
  auto parsed = parse_checkpoint(bytes.value(), o.path);
  if (!parsed.ok()) {
    return report_error("checkpoint inspect", parsed.status(), kExitFailed);
  }
  const CheckpointInfo& i = parsed->info;
  std::uint64_t stored = 0, raw = 0;
  std::size_t compressed = 0;
  for (const auto& c : parsed->chunks) {
    stored += c.stored_bytes;
    raw += c.raw_bytes;
    compressed += c.compression != 0 ? 1 : 0;
  }
  char digest[32], parent[32], crc[16];
  std::snprintf(digest, sizeof digest, "%016llx", static_cast<unsigned long long>(i.digest));
  std::snprintf(parent, sizeof parent, "%016llx", static_cast<unsigned long long>(i.parent_digest));
  std::snprintf(crc, sizeof crc, "0x%08x", i.state_crc);
  if (o.json) {
    nlohmann::json regions = nlohmann::json::array();
    for (const auto& r : i.regions) regions.push_back({{"name", r.name}, {"offset", r.offset}, {"bytes", r.bytes}});
    nlohmann::json chunks = nlohmann::json::array();
    for (const auto& c : parsed->chunks)
      chunks.push_back({{"index", c.index}, {"raw_bytes", c.raw_bytes}, {"stored_bytes", c.stored_bytes},
                        {"compression", c.compression == 0 ? "raw" : "zstd"}, {"shuffle", c.filter != 0},
                        {"filter", c.filter == 0 ? "none" : c.filter == 1 ? "byte_shuffle" : "word_delta_byte_shuffle"}});
    nlohmann::json j = {{"file", o.path}, {"version", parsed->version}, {"app", i.app}, {"actor", actor_json(i.actor)},
                        {"num_actors", i.num_actors}, {"epoch", i.epoch}, {"kind", i.delta ? "delta" : "full"},
                        {"digest", digest}, {"parent_digest", i.delta ? parent : ""}, {"state_bytes", i.state_bytes},
                        {"state_crc", crc}, {"chunk_bytes", i.chunk_bytes}, {"chunk_count", i.chunk_count()},
                        {"stored_chunks", parsed->chunks.size()}, {"raw_bytes_stored", raw},
                        {"stored_bytes", stored}, {"file_bytes", parsed->file_bytes}, {"params_bytes", i.params.size()},
                        {"shuffle_element", i.element_bytes}, {"regions", regions}, {"chunks", chunks}};
    std::printf("%s\n", j.dump(2).c_str());
    return kExitOk;
  }
  std::vector<std::pair<std::string, std::string>> rows = {
      {"app", i.app},
      {"actor", i.actor < i.num_actors ? std::to_string(i.actor) + " of " + std::to_string(i.num_actors)
                                       : actor_text(i.actor) + " (of an app with " + std::to_string(i.num_actors) +
                                             " actors)"},
      {"epoch", std::to_string(i.epoch)},
      {"kind", i.delta ? std::string("delta of ") + parent : "full"},
      {"digest", digest},
      {"state", human_bytes(i.state_bytes) + ", CRC32 " + crc},
      {"chunks", std::to_string(parsed->chunks.size()) + " of " + std::to_string(i.chunk_count()) + " stored (" +
                     human_bytes(i.chunk_bytes) + " each), " + std::to_string(compressed) + " zstd"},
      {"stored", human_bytes(raw) + " raw -> " + human_bytes(stored) + " in a " + human_bytes(parsed->file_bytes) + " file"},
  };
  for (const auto& r : i.regions)
    rows.push_back({"region " + r.name, human_bytes(r.bytes) + " at offset " + std::to_string(r.offset)});
  print_table(stdout, "checkpoint " + o.path, rows);
  return kExitOk;
}

// Every CRC of one checkpoint file; kNotFound when it is gone. Its header goes to `info`.
Status verify_file(const CheckpointStore& store, const std::string& name, const std::string& where, bool explicit_file,
                   CheckpointInfo& info) {
  // An explicit file is read whatever its name; a directory's files through the store.
  auto bytes = explicit_file ? read_checkpoint_file(where) : store.get(name);
  if (!bytes.ok()) return bytes.status();
  auto parsed = parse_checkpoint(bytes.value(), where);
  if (!parsed.ok()) return parsed.status();
  info = parsed->info;
  // Chunk by chunk: memory stays at one chunk whatever the file claims.
  auto crc = verify_chunks(parsed.value(), bytes.value(), where);
  if (!crc.ok()) return crc.status();
  // A full checkpoint holds the whole state: check its recorded CRC too.
  if (!parsed->info.delta && crc.value() != parsed->info.state_crc)
    return Status(StatusCode::kCorruptData, "checkpoint '" + where + "': whole-state CRC mismatch");
  return Status();
}

// A committed set is whole when each member is there with the digest the manifest
// recorded and each delta's chain reaches a full checkpoint.
Status verify_set(const CheckpointManifest& m, const std::vector<CheckpointRecord>& files) {
  std::map<std::string, const CheckpointRecord*> by_name;
  for (const auto& r : files) by_name[r.name] = &r;
  for (const auto& mem : m.members) {
    auto it = by_name.find(mem.file);
    if (it == by_name.end())
      return Status(StatusCode::kNotFound, "member '" + mem.file + "' (actor " + actor_text(mem.actor) + ") is missing");
    const CheckpointRecord* rec = it->second;
    if (!rec->status.ok()) return Status(StatusCode::kCorruptData, "member '" + mem.file + "' is damaged");
    if (rec->info.digest != mem.digest)
      return Status(StatusCode::kCorruptData, "member '" + mem.file + "' is not the file the manifest committed");
    for (std::size_t guard = 0; rec->info.delta; ++guard) {
      const CheckpointRecord* parent = nullptr;
      for (const auto& r : files)
        if (r.status.ok() && r.info.actor == rec->info.actor && r.info.digest == rec->info.parent_digest &&
            r.info.epoch < rec->info.epoch)
          parent = &r;
      if (parent == nullptr || guard > files.size())
        return Status(StatusCode::kCorruptData, "delta '" + rec->name + "' lacks its parent: actor " +
                                                    actor_text(mem.actor) + " cannot be rebuilt");
      rec = parent;
    }
  }
  return Status();
}

// verify_set, then every CRC of each member and of the files its delta chain rests on: what a
// restore of the set would read.
Status verify_set_deep(const CheckpointStore& store, const CheckpointManifest& m,
                       const std::vector<CheckpointRecord>& files) {
  PKRT_RETURN_IF_ERROR(verify_set(m, files));
  std::set<std::string> checked;
  for (const auto& mem : m.members) {
    std::string name = mem.file;
    for (std::size_t guard = 0; guard <= files.size() && checked.insert(name).second; ++guard) {
      CheckpointInfo info;
      PKRT_RETURN_IF_ERROR(verify_file(store, name, store.describe(name), false, info));
      if (!info.delta) break;
      // verify_set found the chain whole: the parent is the newest older file with the digest.
      const CheckpointRecord* parent = nullptr;
      for (const auto& r : files)
        if (r.status.ok() && r.info.actor == info.actor && r.info.digest == info.parent_digest && r.info.epoch < info.epoch)
          parent = &r;
      if (parent == nullptr) break;
      name = parent->name;
    }
  }
  return Status();
}

bool is_global_name(const std::string& n) {
  const std::string suffix = kGlobalManifestSuffix;
  return n.size() > suffix.size() && n.compare(n.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// A global checkpoint of a multi-rank run (pkrt/global_checkpoint.hpp) and, per rank, whether
// its set is the one committed (manifest CRC) and whole.
struct GlobalRecord {
  std::string name;
  Status status;  // of the global manifest itself
  GlobalCheckpointManifest manifest;
  std::vector<Status> ranks;
  bool whole() const {
    if (!status.ok()) return false;
    for (const Status& r : ranks)
      if (!r.ok()) return false;
    return true;
  }
};

// `deep`: every member's CRCs too (verify), not only that the set is whole (list).
Status verify_rank_set(const std::string& dir, const GlobalCheckpointRank& rk, bool deep) {
  const auto slash = rk.manifest.find('/');
  auto store = FileCheckpointStore::open_existing(dir + "/" + rk.manifest.substr(0, slash));
  if (!store.ok()) return store.status();
  const std::string set = rk.manifest.substr(slash + 1);
  auto bytes = store.value()->get(set);
  if (!bytes.ok()) return Status(bytes.status().code(), "set manifest " + rk.manifest + " is missing or unreadable");
  if (crc32(bytes.value().data(), bytes.value().size()) != rk.manifest_crc)
    return Status(StatusCode::kCorruptData, "set manifest " + rk.manifest + " is not the one committed (CRC differs)");
  auto parsed = parse_checkpoint_manifest(bytes.value(), store.value()->describe(set));
  if (!parsed.ok()) return parsed.status();
  auto files = scan_checkpoints(*store.value());
  if (!files.ok()) return files.status();
  return deep ? verify_set_deep(*store.value(), parsed.value(), files.value()) : verify_set(parsed.value(), files.value());
}

GlobalRecord read_global(const std::string& dir, const std::string& name, bool deep) {
  GlobalRecord g;
  g.name = name;
  auto bytes = read_checkpoint_file(dir + "/" + name);
  if (!bytes.ok()) {
    g.status = bytes.status();
    return g;
  }
  auto parsed = parse_global_manifest(bytes.value(), dir + "/" + name);
  if (!parsed.ok()) {
    g.status = parsed.status();
    return g;
  }
  g.manifest = std::move(parsed.value());
  for (const GlobalCheckpointRank& rk : g.manifest.ranks) g.ranks.push_back(verify_rank_set(dir, rk, deep));
  return g;
}

std::vector<GlobalRecord> scan_globals(const std::string& dir, bool deep) {
  std::vector<GlobalRecord> out;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
    const std::string name = entry.path().filename().string();
    if (is_global_name(name) && entry.is_regular_file(ec)) out.push_back(read_global(dir, name, deep));
  }
  std::sort(out.begin(), out.end(), [](const GlobalRecord& a, const GlobalRecord& b) {
    return a.manifest.sequence != b.manifest.sequence ? a.manifest.sequence < b.manifest.sequence : a.name < b.name;
  });
  return out;
}

std::string rank_summary(const GlobalRecord& g) {
  std::size_t ok = 0;
  std::string bad;
  for (std::size_t r = 0; r < g.ranks.size(); ++r) {
    if (g.ranks[r].ok()) ++ok;
    else bad += "; rank " + std::to_string(r) + ": " + g.ranks[r].message();
  }
  return std::to_string(ok) + "/" + std::to_string(g.ranks.size()) + " rank sets whole" + bad;
}

nlohmann::json global_json(const GlobalRecord& g) {
  if (!g.status.ok()) return {{"manifest", g.name}, {"ok", false}, {"error", g.status.to_string()}};
  nlohmann::json ranks = nlohmann::json::array();
  for (std::size_t r = 0; r < g.ranks.size(); ++r)
    ranks.push_back({{"rank", r}, {"set", g.manifest.ranks[r].manifest}, {"actors", g.manifest.ranks[r].actors},
                     {"ok", g.ranks[r].ok()}, {"error", g.ranks[r].ok() ? "" : g.ranks[r].to_string()}});
  return {{"manifest", g.name}, {"ok", g.whole()}, {"app", g.manifest.app}, {"epoch", g.manifest.epoch},
          {"sequence", g.manifest.sequence}, {"actors", g.manifest.global_actors}, {"k2k_delay", g.manifest.k2k_delay},
          {"partition", g.manifest.partition}, {"ranks", ranks}};
}

// `list`/`verify` of a multi-rank checkpoint directory: its global checkpoints, each checked
// whole (every rank's committed set present, the one committed, and whole).
int list_globals(const CheckpointOptions& o, const std::vector<GlobalRecord>& globals, bool verify) {
  std::size_t whole = 0;
  for (const auto& g : globals) whole += g.whole() ? 1 : 0;
  if (o.json) {
    nlohmann::json js = nlohmann::json::array();
    nlohmann::json restorable = nlohmann::json::array();
    for (const auto& g : globals) {
      js.push_back(global_json(g));
      if (g.whole()) restorable.push_back(g.manifest.epoch);
    }
    nlohmann::json out{{"global_checkpoints", js}};
    if (verify) {
      out["whole"] = whole;
      out["broken"] = globals.size() - whole;
      out["restorable_epochs"] = restorable;
    }
    std::printf("%s\n", out.dump(2).c_str());
    return !verify || whole == globals.size() ? kExitOk : kExitFailed;
  }
  if (!verify) std::printf("%-10s %-14s %-8s %-6s %-8s %s\n", "global", "epoch", "seq", "ranks", "actors", "manifest");
  for (const auto& g : globals) {
    if (!g.status.ok()) {
      if (verify) std::printf("CORRUPT  %s\n         %s\n", g.name.c_str(), g.status.message().c_str());
      else std::printf("%-10s %-14s %-8s %-6s %-8s %s  (%s)\n", "DAMAGED", "?", "?", "?", "?", g.name.c_str(),
                       g.status.message().c_str());
      continue;
    }
    if (verify) {
      std::printf("%s  %s (global checkpoint at epoch %llu: %s)\n", g.whole() ? "ok     " : "CORRUPT", g.name.c_str(),
                  static_cast<unsigned long long>(g.manifest.epoch), rank_summary(g).c_str());
    } else {
      std::printf("%-10s %-14llu %-8llu %-6zu %-8u %s  (%s)\n", g.whole() ? "committed" : "BROKEN",
                  static_cast<unsigned long long>(g.manifest.epoch), static_cast<unsigned long long>(g.manifest.sequence),
                  g.manifest.ranks.size(), g.manifest.global_actors, g.name.c_str(), rank_summary(g).c_str());
    }
  }
  std::printf("%zu global checkpoints, %zu whole; restorable epochs:", globals.size(), whole);
  for (const auto& g : globals)
    if (g.whole()) std::printf(" %llu", static_cast<unsigned long long>(g.manifest.epoch));
  std::printf("%s\n", whole == 0 ? " none" : "");
  return !verify || whole == globals.size() ? kExitOk : kExitFailed;
}

int inspect_global(const CheckpointOptions& o, const GlobalRecord& g) {
  if (!g.status.ok()) {
    return report_error("checkpoint inspect", g.status, kExitFailed);
  }
  if (o.json) {
    std::printf("%s\n", global_json(g).dump(2).c_str());
    return kExitOk;
  }
  std::vector<std::pair<std::string, std::string>> rows = {
      {"app", g.manifest.app},
      {"epoch", std::to_string(g.manifest.epoch)},
      {"sequence", std::to_string(g.manifest.sequence)},
      {"actors", std::to_string(g.manifest.global_actors) + " over " + std::to_string(g.manifest.ranks.size()) +
                     " ranks (" + g.manifest.partition + ")"},
      {"K2K delay", std::to_string(g.manifest.k2k_delay)},
      {"image", human_bytes(g.manifest.image_bytes) + " per actor, chunks of " + human_bytes(g.manifest.chunk_bytes)},
      {"status", g.whole() ? "whole: restorable on any rank count" : rank_summary(g)}};
  for (std::size_t r = 0; r < g.ranks.size(); ++r)
    rows.push_back({"rank " + std::to_string(r), g.manifest.ranks[r].manifest + " (" +
                                                     std::to_string(g.manifest.ranks[r].actors) + " actors): " +
                                                     (g.ranks[r].ok() ? "whole" : g.ranks[r].message())});
  print_table(stdout, "global checkpoint " + o.path, rows);
  return kExitOk;
}

bool global_command(const CheckpointOptions& o, const char* command, int& rc) {
  std::error_code ec;
  const std::filesystem::path p(o.path);
  const bool verify = std::string(command) == "verify";
  if (std::filesystem::is_regular_file(p, ec) && is_global_name(p.filename().string())) {
    if (std::string(command) == "list") return false;
    const GlobalRecord g =
        read_global(p.has_parent_path() ? p.parent_path().string() : ".", p.filename().string(), verify);
    rc = verify ? list_globals(o, {g}, true) : inspect_global(o, g);
    return true;
  }
  if (std::string(command) == "inspect" || !std::filesystem::is_directory(p, ec)) return false;
  const auto globals = scan_globals(o.path, verify);
  if (globals.empty()) return false;
  rc = list_globals(o, globals, verify);
  return true;
}

// What verify found, printed as it goes (text) or as one JSON document at the end (--json).
class VerifyReport {
 public:
  explicit VerifyReport(bool json) : json_(json) {}
  // kind: "file" or "set"; detail: shown after an intact entry's path (text only).
  void add(const char* kind, const std::string& where, const Status& st, const std::string& detail = "") {
    if (json_) {
      entries_.push_back({{"kind", kind}, {"path", where}, {"ok", st.ok()}, {"error", st.ok() ? "" : st.message()}});
    } else if (st.ok()) {
      std::printf("ok       %s%s\n", where.c_str(), detail.empty() ? "" : (" (" + detail + ")").c_str());
    } else {
      std::printf("CORRUPT  %s\n         %s\n", where.c_str(), st.message().c_str());
    }
  }
  // The summary line (text) or the document (JSON); `sets` false: no set was checked.
  void finish(std::size_t intact, std::size_t corrupt, std::size_t gone, bool sets, std::size_t whole,
              std::size_t broken) {
    if (json_) {
      nlohmann::json j{{"intact", intact}, {"corrupt", corrupt}, {"removed_during_scan", gone}, {"entries", entries_}};
      if (sets) {
        j["sets_whole"] = whole;
        j["sets_broken"] = broken;
      }
      std::printf("%s\n", j.dump(2).c_str());
      return;
    }
    std::printf("verify: %zu intact, %zu corrupt", intact, corrupt);
    if (gone != 0) std::printf(", %zu removed by the writer during the scan", gone);
    if (sets) std::printf("; sets: %zu whole, %zu broken", whole, broken);
    std::printf("\n");
  }

 private:
  bool json_;
  nlohmann::json entries_ = nlohmann::json::array();
};

int verify_command(const CheckpointOptions& o) {
  if (int rc = 0; global_command(o, "verify", rc)) return rc;
  VerifyReport report(o.json);
  auto opened = open_path(o.path, true, true);
  if (!opened.ok()) return report_error("checkpoint verify", opened.status());
  const bool explicit_file = !opened->file.empty();
  std::vector<std::string> names;
  if (explicit_file) {
    names.push_back(opened->file);
  } else {
    auto listed = opened->store->list();
    if (!listed.ok()) return report_error("checkpoint verify", listed.status());
    for (const auto& n : listed.value())
      if (n.size() > 5 && n.compare(n.size() - 5, 5, kCheckpointFileSuffix) == 0) names.push_back(n);
  }
  if (explicit_file && is_manifest_name(opened->file)) {
    // One set: its manifest, then that it is whole in its directory.
    auto sets = scan_checkpoint_sets(*opened->store);
    auto files = scan_checkpoints(*opened->store);
    if (!sets.ok()) return report_error("checkpoint verify", sets.status());
    if (!files.ok()) return report_error("checkpoint verify", files.status());
    Status st(StatusCode::kNotFound, "the manifest was removed during the scan (retired by its run's retention)");
    for (const auto& s : sets.value())
      if (s.name == opened->file) st = s.status.ok() ? verify_set_deep(*opened->store, s.manifest, files.value()) : s.status;
    report.add("set", o.path, st, "set whole");
    report.finish(st.ok() ? 1 : 0, st.ok() ? 0 : 1, 0, false, 0, 0);
    return st.ok() ? kExitOk : kExitFailed;
  }
  // Sets are listed before the files are read: a set committed by then has every member
  // durable already, so the file pass sees them all unless retention retired the set.
  Result<std::vector<CheckpointSetRecord>> sets = std::vector<CheckpointSetRecord>{};
  if (!explicit_file) sets = scan_checkpoint_sets(*opened->store);
  if (!sets.ok()) return report_error("checkpoint verify", sets.status());
  std::vector<CheckpointRecord> files;  // what the pass below read, for the sets' check
  std::size_t bad = 0, gone = 0;
  for (const std::string& name : names) {
    const std::string where = explicit_file ? o.path : opened->store->describe(name);
    CheckpointRecord rec;
    rec.name = name;
    const Status st = verify_file(*opened->store, name, where, explicit_file, rec.info);
    if (st.code() == StatusCode::kNotFound && !explicit_file) {
      // Retention of a live run removed it after the listing: not damage.
      ++gone;
      continue;
    }
    rec.status = st;
    files.push_back(std::move(rec));
    if (!st.ok()) ++bad;
    report.add("file", where, st);
  }
  std::size_t sets_ok = 0, sets_bad = 0;
  if (!explicit_file) {
    for (const auto& s : sets.value()) {
      const std::string where = opened->store->describe(s.name);
      Status st = s.status.ok() ? verify_set(s.manifest, files) : s.status;
      // A set retired while we looked (its manifest is removed before its files) is not damage.
      if (!st.ok() && opened->store->get(s.name).status().code() == StatusCode::kNotFound) continue;
      ++(st.ok() ? sets_ok : sets_bad);
      report.add("set", where, st,
                 "set at epoch " + std::to_string(s.manifest.epoch) + ", " +
                     std::to_string(s.manifest.fingerprint.num_actors) + " actors");
    }
  }
  if (names.empty()) {
    return report_error("checkpoint verify",
                        Status(StatusCode::kNotFound, "no checkpoint files in '" + o.path +
                                                          "'. Fix: pass the directory a run wrote with --checkpoint-dir"),
                        kExitUsage);
  }
  report.finish(names.size() - bad - gone, bad, gone, !explicit_file, sets_ok, sets_bad);
  return bad == 0 && sets_bad == 0 ? kExitOk : kExitFailed;
}

}  // namespace

void add_checkpoint_command(CLI::App& app, CheckpointOptions& o) {
  CLI::App* cmd = app.add_subcommand("checkpoint", "List, inspect and verify checkpoint files");
  cmd->require_subcommand(1);
  CLI::App* list = cmd->add_subcommand(
      "list", "Checkpoint files by actor and epoch, committed sets, and incomplete sets (never restorable); for a "
              "multi-rank run's directory, its global checkpoints with each rank's set status");
  list->alias("ls");
  list->add_option("DIR", o.path, "Checkpoint directory")->required();
  list->add_flag("--json", o.json, "Print as JSON");
  CLI::App* inspect = cmd->add_subcommand(
      "inspect", "Header, metadata and chunks of one checkpoint file, or the fingerprint and members of a set manifest");
  inspect->add_option("FILE", o.path, "Checkpoint file (.pkck), set manifest (.pkset) or global manifest (.pkglobal)")->required();
  inspect->add_flag("--json", o.json, "Print as JSON");
  CLI::App* verify = cmd->add_subcommand(
      "verify",
      "Check every CRC of a file, or of every file and set manifest in a directory, and that each committed "
      "set is whole (exit 0 intact, 1 corrupt, 2 unusable)");
  verify->add_option("PATH", o.path, "Checkpoint file or directory")->required();
  verify->add_flag("--json", o.json, "Print the findings as JSON (same exit codes)");
}

int checkpoint_command(const CLI::App& app, const CheckpointOptions& o) {
  const CLI::App* cmd = app.get_subcommand("checkpoint");
  if (cmd->got_subcommand("list")) return list_command(o);
  if (cmd->got_subcommand("inspect")) return inspect_command(o);
  if (cmd->got_subcommand("verify")) return verify_command(o);
  return kExitUsage;
}

}  // namespace pkrt::cli
