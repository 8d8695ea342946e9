// pkrt/checkpoint_set.hpp: checkpoint sets. A set is every actor of one run at one epoch,
// and the app-wide (global) region at that epoch when the app has one; it is the unit of
// restore and of retention. A set exists (is *committed*) only once its
// manifest is in the store, and the manifest is written only after every member file is
// durable, so a crash at any moment leaves each set either committed and whole or not
// listed as restorable (docs/checkpoint-format.md, "Checkpoint sets").
//
// Contract
// - The manifest names each member file with its digest, size and state CRC, and carries
//   the program fingerprint (app, program version, actor count, image layout, chunk size,
//   params) and the run's inputs (options outside Params that shape the history, e.g. an
//   injection schedule). Restore refuses a set whose fingerprint or inputs differ from the
//   run's, naming the field and both values.
// - parse_checkpoint_manifest() checks the manifest's CRC, then bounds every count and
//   length by the bytes actually present before allocating; bad input gets kCorruptData
//   naming the file and the field. It never crashes (fuzzed: tests/fuzz).
// - Sets are ordered by their sequence number, assigned when the set is requested and
//   increasing across runs that share a directory: "newest" means most recently requested,
//   not highest epoch (a run restored from epoch 100 into the directory it came from makes
//   newer sets than the old run's epoch 200).
// - Thread safety: pure functions.
#pragma once

#include <pkrt/checkpoint.hpp>
#include <pkrt/command.hpp>
#include <pkrt/slot.hpp>
#include <pkrt/status.hpp>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <utility>
#include <vector>

namespace pkrt {

class Runtime;

// What a checkpoint must match to be restored into a run.
struct CheckpointFingerprint {
  std::string app;
  std::uint32_t program_version = 0;  // App::kVersion, 0 when the app declares none
  std::uint32_t num_actors = 0;
  std::uint64_t image_bytes = 0;
  std::uint32_t chunk_bytes = 0;
  std::vector<CheckpointRegion> regions;  // the image layout
  std::vector<std::byte> params;          // the app's Params, as bytes
  std::uint64_t global_bytes = 0;         // the app-wide region (a set holds its image too)
};

// The fingerprint of `runtime`'s program, params and image layout.
CheckpointFingerprint checkpoint_fingerprint(const Runtime& runtime);

// Says what Params bytes mean (e.g. "--grid 64x64 --seed 7"), for messages; the runtime
// itself sees Params as opaque bytes. Gets bytes of any length: check the size.
using ParamsDescriber = std::function<std::string(std::span<const std::byte>)>;

// ok when `saved` (read from `where`) matches `now`; else kInvalidArgument naming the first
// field that differs, both values, and the fix. Params are shown through `describe` when
// given, else by size and CRC.
Status compare_fingerprints(const CheckpointFingerprint& saved, const CheckpointFingerprint& now,
                            const std::string& where, const ParamsDescriber& describe = nullptr);

// Options outside Params that shape a run's history, as (name, value) pairs in a fixed
// order (e.g. {"--injections", "40"}). Compared like the fingerprint.
using RunInputs = std::vector<std::pair<std::string, std::string>>;
inline constexpr std::size_t kMaxRunInputs = 64;        // entries a manifest holds
inline constexpr std::size_t kMaxRunInputText = 4096;   // bytes per name or value

Status compare_run_inputs(const RunInputs& saved, const RunInputs& now, const std::string& where);

struct CheckpointSetMember {
  std::uint32_t actor = 0;      // or kGlobalRegionActor: the global region's image
  std::string file;             // a checkpoint file name in the same store
  std::uint64_t digest = 0;     // its header digest
  std::uint64_t file_bytes = 0;
  std::uint32_t state_crc = 0;  // CRC32 of the actor's whole state at the set's epoch
  bool delta = false;
};

struct CheckpointManifest {
  std::uint16_t version = 0;   // format version; 0 (and on encode): the current one
  std::uint64_t epoch = 0;
  std::uint64_t sequence = 0;  // orders sets: higher is newer
  CheckpointFingerprint fingerprint;
  RunInputs inputs;
  // One per actor, in actor order, then (when fingerprint.global_bytes > 0) one for the
  // global region (actor kGlobalRegionActor), then (version 2, optional) one holding the
  // commands sent and not applied at the epoch (actor kQueuedCommandsActor, its state
  // encode_queued_commands() of them).
  std::vector<CheckpointSetMember> members;
};

// Version 2 added the global region (fingerprint.global_bytes and its member) and the queued
// commands member (a flag after the version). Readers accept 1 (as a set without either)
// and 2; writers write 2.
inline constexpr std::uint16_t kCheckpointManifestVersion = 2;
inline constexpr std::uint16_t kOldestCheckpointManifestVersion = 1;

std::vector<std::byte> encode_checkpoint_manifest(const CheckpointManifest& manifest);
Result<CheckpointManifest> parse_checkpoint_manifest(std::span<const std::byte> file, const std::string& name);

// "<app>-set-e<epoch, 12 digits>.pkset": one manifest per epoch, so a later set at the same
// epoch replaces the earlier one atomically.
std::string checkpoint_manifest_name(const std::string& app, std::uint64_t epoch);
// "<app>-set-e<epoch>-s<sequence, 6 digits>.pkset": one manifest per set, never replaced (a
// rank of a multi-rank run: a global checkpoint names the very set it committed).
std::string checkpoint_manifest_name(const std::string& app, std::uint64_t epoch, std::uint64_t sequence);
// "<app>-e<epoch>-s<sequence>-a<actor>-<full|delta>.pkck" ("-global-" for the global
// region's image, "-queued-" for the queued commands): the sequence keeps a set's members from ever overwriting the files of
// another set at the same epoch.
std::string checkpoint_member_name(const CheckpointInfo& info, std::uint64_t sequence);
// The sequence in a member name, 0 for any other name.
std::uint64_t checkpoint_member_sequence(const std::string& name);

// A set's queued-commands member (and the image of a kQueuedCommandsActor snapshot):
// 48-byte records (u32 actor, u16 opcode, u16 reserved = 0, u64 apply epoch with 0 = the
// next one, 32 data bytes), in the order they apply per block: each block's deferred list by
// (apply epoch, sending order), then its ring.
inline constexpr std::size_t kQueuedCommandBytes = 48;
std::vector<std::byte> encode_queued_commands(std::span<const Command> commands);
// Refuses (kCorruptData naming `name`) a length that is not a whole number of records, a
// nonzero reserved field, an actor not below `num_actors` or a runtime opcode. Fuzzed with the
// checkpoint reader (tests/fuzz).
Result<std::vector<Command>> decode_queued_commands(std::span<const std::byte> image, std::uint32_t num_actors,
                                                    const std::string& name);

inline constexpr const char* kCheckpointFileSuffix = ".pkck";
inline constexpr const char* kCheckpointManifestSuffix = ".pkset";
// No manifest is larger (parse_checkpoint_manifest refuses one that is).
inline constexpr std::size_t kMaxCheckpointManifestBytes = std::size_t{1} << 30;

}  // namespace pkrt
