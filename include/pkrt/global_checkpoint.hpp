// pkrt/global_checkpoint.hpp: global checkpoints of a program run over several ranks
// (pkrt/mpi.hpp). Each rank writes its own checkpoint set, as a single runtime does
// (pkrt/checkpoint_set.hpp), in its own directory `rank-NNNNN/` under the checkpoint
// directory; then rank 0 writes one global manifest naming every rank's set manifest (with
// its CRC), the partition the run had (which rank and local index holds each global actor)
// and what the program was. A global checkpoint exists (is committed) only once its global
// manifest is in the directory, and rank 0 writes it only after every rank reported its set
// durable: a crash or a killed rank at any moment leaves each global checkpoint either
// committed and whole, or not listed as restorable (docs/scale-out.md, "Coordinated
// checkpoints"). A restore may use another rank count: the manifest maps global ids to the
// old ranks' members.
//
// Contract
// - parse_global_manifest() checks the magic, the declared length and the CRC, then bounds
//   every count by the bytes present before allocating; bad input gets kCorruptData naming
//   the file and the field. It never crashes (fuzzed: tests/fuzz).
// - Global checkpoints are ordered by sequence (assigned by rank 0, increasing across runs
//   sharing a directory), like sets.
// - Reading for a restore (read_global_checkpoint) verifies every rank set it reads against
//   the global manifest (its manifest's CRC) and every member through its delta chain, as a
//   single runtime's restore does; it reads only the sets that hold the requested actors (and
//   the queued commands, when asked for).
// - Thread safety: pure functions (the readers only read files).
#pragma once

#include <pkrt/checkpoint_set.hpp>
#include <pkrt/command.hpp>
#include <pkrt/status.hpp>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

namespace pkrt {

struct GlobalCheckpointRank {
  std::string manifest;            // relative to the checkpoint directory: "rank-00003/<set manifest>"
  std::uint32_t manifest_crc = 0;  // CRC32 of the whole set manifest file
  std::uint32_t actors = 0;        // how many actors the rank ran
};

struct GlobalCheckpointManifest {
  std::uint16_t version = 0;  // 0 on encode: the current one
  std::uint64_t epoch = 0;
  std::uint64_t sequence = 0;
  std::string app;
  std::vector<std::byte> params;
  std::uint32_t global_actors = 0;
  std::uint32_t k2k_delay = 1;
  std::uint32_t chunk_bytes = 0;
  std::uint64_t image_bytes = 0;
  std::string partition;  // its description, for people
  std::vector<GlobalCheckpointRank> ranks;
  // By global actor: the rank that ran it. Its local index there is its position among the
  // actors of that rank in ascending global order (ActorPartition::local_index).
  std::vector<std::uint32_t> owner;
};

inline constexpr std::uint16_t kGlobalManifestVersion = 1;
inline constexpr const char* kGlobalManifestSuffix = ".pkglobal";

std::vector<std::byte> encode_global_manifest(const GlobalCheckpointManifest& manifest);
Result<GlobalCheckpointManifest> parse_global_manifest(std::span<const std::byte> file, const std::string& name);

// "<app>-global-e<epoch, 12 digits>.pkglobal".
std::string global_manifest_name(const std::string& app, std::uint64_t epoch);
// "rank-<rank>-of-<ranks>-<CRC32 of the rank's global ids, 8 hex digits>" (numbers 5 digits):
// the directory under the checkpoint directory a rank writes into, one per rank and layout.
std::string rank_checkpoint_dir(std::uint32_t rank, std::uint32_t ranks, std::span<const std::uint32_t> global_ids);
// The local index of every global actor in `owner` (its position among its rank's actors).
std::vector<std::uint32_t> global_local_indices(std::span<const std::uint32_t> owner, std::uint32_t ranks);

// A directory's committed global checkpoints of `app`, oldest first (by sequence), each with
// its manifest's file name. A damaged manifest is not listed (it commits nothing); one that
// cannot be read (other than gone meanwhile) is an error, so that callers pinning the sets
// of the listed ones never drop a checkpoint they could not see. A directory that does not
// exist holds none (it is never created here). `damaged`, when given, receives each damaged
// manifest of the app as "<name> (<why>)".
using GlobalCheckpointList = std::vector<std::pair<std::string, GlobalCheckpointManifest>>;
Result<GlobalCheckpointList> list_global_checkpoints(const std::string& directory, const std::string& app,
                                                     std::vector<std::string>* damaged = nullptr);

// What a runtime restoring some actors from a global checkpoint expects of it (compared
// field by field; a difference is kInvalidArgument naming the field and the fix).
struct GlobalRestoreRequest {
  std::string app;
  std::vector<std::byte> params;
  std::uint32_t global_actors = 0;
  std::uint32_t k2k_delay = 1;
  std::uint64_t image_bytes = 0;
  std::uint32_t chunk_bytes = 0;
  // The actors to read, global ids ascending (a rank's ActorPartition::actors_of).
  std::vector<std::uint32_t> global_ids;
  // Compared with every set's recorded inputs when set (a replay re-injects its commands and
  // does not compare them).
  std::optional<RunInputs> inputs;
  // Also collect the commands queued at the cut for these actors.
  bool queued_commands = true;
};

struct GlobalRestoreData {
  std::uint64_t epoch = 0;
  std::vector<std::vector<std::byte>> images;  // by position in GlobalRestoreRequest::global_ids
  std::vector<Command> queued;                 // Command::actor is a global id; in the cut's order per rank
};

// Reads global checkpoint `name` of `directory` for `request`: checks the manifest against
// it, then reads each requested actor's image from the set of the rank that ran it (whatever
// rank count wrote it).
Result<GlobalRestoreData> read_global_checkpoint(const std::string& directory, const std::string& name,
                                                 const GlobalRestoreRequest& request);

}  // namespace pkrt
