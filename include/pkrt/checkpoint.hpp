// pkrt/checkpoint.hpp: the checkpoint file (docs/checkpoint-format.md): encoding a snapshot
// of one actor into bytes, and parsing and verifying such bytes.
//
// Contract
// - encode_checkpoint() produces a complete file image: header, metadata, chunk table,
//   chunk data (byte-shuffled and zstd-compressed per chunk), footer.
// - parse_checkpoint() validates every size against the buffer length before allocating
//   anything, and every CRC of the structure; decode_chunks() verifies each chunk's raw CRC.
//   Bad input gets a Status (kCorruptData) naming the file, the part (header, metadata,
//   chunk N, footer) and the fix; it never crashes and never allocates more than the
//   buffer's size times a small constant (decompression is bounded by chunk_bytes).
// - Declared sizes are bounded by the file: parse_checkpoint() refuses a zstd chunk whose
//   raw_bytes exceed what its stored bytes can decode to (a zstd block takes at least 3
//   bytes and yields at most 128 KiB), so a full checkpoint's state_bytes is at most about
//   43690 times its file size and decoding or verifying it does work in proportion to what
//   the file really holds. A state that large can still be real (a zero state compresses
//   that well): a caller that knows the run's layout must compare state_bytes with it
//   before allocating the state.
// - Thread safety: pure functions.
#pragma once

#include <pkrt/status.hpp>

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace pkrt {

// Version 2 added chunk filter 2 (word delta + byte shuffle); readers accept 1 and 2, and
// filter 2 only in version 2 files. Writers write version 2.
inline constexpr std::uint16_t kCheckpointVersion = 2;
inline constexpr std::uint16_t kOldestCheckpointVersion = 1;
inline constexpr std::uint32_t kDefaultChunkBytes = 64 * 1024;

struct CheckpointRegion {
  std::string name;
  std::uint64_t offset = 0;
  std::uint64_t bytes = 0;
};

// What a checkpoint says about itself (header + metadata).
struct CheckpointInfo {
  std::string app;
  std::vector<std::byte> params;
  std::vector<CheckpointRegion> regions;
  std::uint64_t epoch = 0;
  std::uint32_t actor = 0;           // < num_actors, or kGlobalRegionActor (the app-wide region)
  std::uint32_t num_actors = 0;
  std::uint64_t state_bytes = 0;
  std::uint32_t chunk_bytes = kDefaultChunkBytes;
  std::uint32_t state_crc = 0;       // CRC32 of the whole raw state
  bool delta = false;
  std::uint64_t parent_digest = 0;   // delta only
  std::uint64_t digest = 0;          // filled in by encode/parse
  std::uint16_t element_bytes = 0;   // byte-shuffle element size used (0: none)

  std::uint32_t chunk_count() const;
};

struct CheckpointEncodeOptions {
  int zstd_level = 1;                // 0: store raw
  std::uint16_t shuffle_element = 4; // 4 or 8: shuffle before zstd; 0: off
  bool word_delta = true;            // with a shuffle: difference neighbouring words first (filter 2)
  // Threads compressing chunks in parallel (one zstd context each); 0: up to the hardware
  // concurrency, one per 16 chunks, so small states stay on the calling thread.
  std::uint32_t threads = 0;
};

struct CheckpointChunkEntry {
  std::uint32_t index = 0;
  std::uint32_t raw_bytes = 0;
  std::uint64_t offset = 0;
  std::uint32_t stored_bytes = 0;
  std::uint8_t compression = 0;  // 0 raw, 1 zstd
  std::uint8_t filter = 0;       // 0 none, 1 byte-shuffle, 2 word delta + byte-shuffle
  std::uint32_t raw_crc = 0;
};

struct ParsedCheckpoint {
  std::uint16_t version = 0;  // format version of the file
  CheckpointInfo info;
  std::vector<CheckpointChunkEntry> chunks;  // in file (and index) order
  std::uint64_t file_bytes = 0;
};

// The digest identifying a checkpoint (docs/checkpoint-format.md).
std::uint64_t checkpoint_digest(const CheckpointInfo& info);

// Encodes the chunks listed in `chunk_indices` (all of them for a full checkpoint, in
// increasing order) of `state`, a buffer of info.state_bytes raw bytes.
Result<std::vector<std::byte>> encode_checkpoint(const CheckpointInfo& info,
                                                 std::span<const std::byte> state,
                                                 std::span<const std::uint32_t> chunk_indices,
                                                 const CheckpointEncodeOptions& options);

// Parses and checks the structure of a file image; `name` is used in messages.
Result<ParsedCheckpoint> parse_checkpoint(std::span<const std::byte> file, const std::string& name);

// Decompresses and verifies every stored chunk of a parsed file into `state` (a buffer of
// info.state_bytes bytes); chunks not stored in the file are left as they are.
Status decode_chunks(const ParsedCheckpoint& parsed, std::span<const std::byte> file,
                     const std::string& name, std::span<std::byte> state);

// Decompresses and verifies every stored chunk one at a time (memory: one chunk), without
// a state buffer. Returns the CRC32 of the stored chunks' raw bytes in order, which for a
// full checkpoint is the whole state's CRC.
Result<std::uint32_t> verify_chunks(const ParsedCheckpoint& parsed, std::span<const std::byte> file,
                                    const std::string& name);

// The file name for a checkpoint (informational; identity comes from the header).
std::string checkpoint_file_name(const CheckpointInfo& info);
// How file names spell a checkpoint's subject: "a000042" for actor 42, "global" for the
// global region (kGlobalRegionActor), "queued" for the queued commands (kQueuedCommandsActor).
std::string checkpoint_subject_name(std::uint32_t actor);

}  // namespace pkrt
