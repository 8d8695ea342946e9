// host/cli/checkpoint_command.cpp: `pkrt checkpoint list DIR`, `inspect FILE [--json]`,
// `verify FILE|DIR` (exit 0 intact, 1 corrupt with what and where, 2 unusable input).
#include "host/cli/cli_common.hpp"
#include "host/cli/commands.hpp"

#include <pkrt/checkpoint.hpp>
#include <pkrt/checkpoint_store.hpp>
#include <pkrt/crc32.hpp>

#include <nlohmann/json.hpp>

#include <cstdio>
#include <filesystem>
#include <map>

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
  } else {
    return Status(StatusCode::kInvalidArgument,
                  "'" + path + "' is not " + (allow_file && allow_dir ? "a checkpoint file or directory" :
                                              allow_file ? "a checkpoint file" : "a directory") +
                      ". Fix: check the path");
  }
  auto store = FileCheckpointStore::open(dir);
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

int list_command(const CheckpointOptions& o) {
  auto opened = open_path(o.path, false, true);
  if (!opened.ok()) return report_error("checkpoint list", opened.status());
  auto history = scan_checkpoints(*opened->store);
  if (!history.ok()) return report_error("checkpoint list", history.status());
  std::map<std::uint64_t, std::uint32_t> actors_per_epoch;
  for (const auto& r : history.value())
    if (r.status.ok()) ++actors_per_epoch[r.info.epoch];
  if (o.json) {
    nlohmann::json j = nlohmann::json::array();
    for (const auto& r : history.value()) {
      if (r.status.ok())
        j.push_back({{"file", r.name}, {"app", r.info.app}, {"actor", r.info.actor}, {"epoch", r.info.epoch},
                     {"kind", r.info.delta ? "delta" : "full"}, {"bytes", r.file_bytes}, {"ok", true}});
      else
        j.push_back({{"file", r.name}, {"ok", false}, {"error", r.status.to_string()}});
    }
    std::printf("%s\n", j.dump(2).c_str());
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
    std::printf("%-8u %-14llu %-6s %-10s %s\n", r.info.actor, static_cast<unsigned long long>(r.info.epoch),
                r.info.delta ? "delta" : "full", human_bytes(r.file_bytes).c_str(), r.name.c_str());
  }
  std::printf("%zu checkpoint files, %zu damaged; epochs with checkpoints:", history->size(), bad);
  for (const auto& [e, n] : actors_per_epoch) std::printf(" %llu (%u actors)", static_cast<unsigned long long>(e), n);
  std::printf("\n");
  return kExitOk;
}

int inspect_command(const CheckpointOptions& o) {
  auto opened = open_path(o.path, true, false);
  if (!opened.ok()) return report_error("checkpoint inspect", opened.status());
  auto bytes = read_checkpoint_file(o.path);
  if (!bytes.ok()) return report_error("checkpoint inspect", bytes.status());
  auto parsed = parse_checkpoint(bytes.value(), o.path);
  if (!parsed.ok()) {
    std::fprintf(stderr, "pkrt checkpoint inspect: %s\n", parsed.status().to_string().c_str());
    return kExitFailed;
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
    nlohmann::json j = {{"file", o.path}, {"version", parsed->version}, {"app", i.app}, {"actor", i.actor},
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
      {"actor", std::to_string(i.actor) + " of " + std::to_string(i.num_actors)},
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

int verify_command(const CheckpointOptions& o) {
  auto opened = open_path(o.path, true, true);
  if (!opened.ok()) return report_error("checkpoint verify", opened.status());
  std::vector<std::string> names;
  if (!opened->file.empty()) {
    names.push_back(opened->file);
  } else {
    auto listed = opened->store->list();
    if (!listed.ok()) return report_error("checkpoint verify", listed.status());
    names = listed.value();
  }
  std::size_t bad = 0;
  for (const std::string& name : names) {
    // An explicit file is read whatever its name; a directory's files through the store.
    const std::string where = opened->file.empty() ? opened->store->describe(name) : o.path;
    auto bytes = opened->file.empty() ? opened->store->get(name) : read_checkpoint_file(o.path);
    Status st = bytes.status();
    if (st.ok()) {
      auto parsed = parse_checkpoint(bytes.value(), where);
      st = parsed.status();
      if (st.ok()) {
        // Chunk by chunk: memory stays at one chunk whatever the file claims.
        auto crc = verify_chunks(parsed.value(), bytes.value(), where);
        st = crc.status();
        // A full checkpoint holds the whole state: check its recorded CRC too.
        if (st.ok() && !parsed->info.delta && crc.value() != parsed->info.state_crc)
          st = Status(StatusCode::kCorruptData, "checkpoint '" + where + "': whole-state CRC mismatch");
      }
    }
    if (st.ok()) {
      std::printf("ok       %s\n", where.c_str());
    } else {
      ++bad;
      std::printf("CORRUPT  %s\n         %s\n", where.c_str(), st.message().c_str());
    }
  }
  std::printf("verify: %zu intact, %zu corrupt\n", names.size() - bad, bad);
  if (names.empty()) {
    std::fprintf(stderr, "pkrt checkpoint verify: no checkpoint files in '%s'\n", o.path.c_str());
    return kExitUsage;
  }
  return bad == 0 ? kExitOk : kExitFailed;
}

}  // namespace

void add_checkpoint_command(CLI::App& app, CheckpointOptions& o) {
  CLI::App* cmd = app.add_subcommand("checkpoint", "List, inspect and verify checkpoint files");
  cmd->require_subcommand(1);
  CLI::App* list = cmd->add_subcommand("list", "Checkpoints in a directory, by actor and epoch");
  list->add_option("DIR", o.path, "Checkpoint directory")->required();
  list->add_flag("--json", o.json, "Print as JSON");
  CLI::App* inspect = cmd->add_subcommand("inspect", "Header, metadata and chunks of one checkpoint file");
  inspect->add_option("FILE", o.path, "Checkpoint file")->required();
  inspect->add_flag("--json", o.json, "Print as JSON");
  CLI::App* verify = cmd->add_subcommand(
      "verify", "Check every CRC of a file or of every file in a directory (exit 0 intact, 1 corrupt, 2 unusable)");
  verify->add_option("PATH", o.path, "Checkpoint file or directory")->required();
}

int checkpoint_command(const CLI::App& app, const CheckpointOptions& o) {
  const CLI::App* cmd = app.get_subcommand("checkpoint");
  if (cmd->got_subcommand("list")) return list_command(o);
  if (cmd->got_subcommand("inspect")) return inspect_command(o);
  if (cmd->got_subcommand("verify")) return verify_command(o);
  return kExitUsage;
}

}  // namespace pkrt::cli
