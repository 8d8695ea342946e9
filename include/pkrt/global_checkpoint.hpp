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
// - Thread safety: pure functions.
#pragma once

#include <pkrt/status.hpp>

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
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

}  // namespace pkrt
