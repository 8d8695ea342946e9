// pkrt/replay_log.hpp: the replay log, a memory-mapped file holding every ring slot of a
// run (H2K as the host published it, K2H as the host consumed it), so that the run can be
// replayed and diffed (pkrt/replay.hpp). On-disk format: docs/replay-log-format.md.
//
// Contract
// - Layout: a 4 KiB header (magic, version, record size, capacity, run metadata with its
//   own CRC32, and a small counters block with its own CRC32: records ever written, the
//   epoch through which the K2H stream is complete, open/closed) followed by `capacity`
//   fixed 128-byte records. Record with global sequence s lives in slot s % capacity, so
//   a log smaller than the run keeps the newest `capacity` records (wrap-around); the
//   header's written count makes that visible.
// - Writing: ReplayLogWriter maps the file with mmap(MAP_SHARED) after preallocating it
//   (posix_fallocate: a full disk fails create(), never a later store with SIGBUS) and
//   pre-faulting it. append() is a copy into the map plus a CRC32 of the record: no
//   syscall. append_batch() appends many records under one lock, one clock read and one
//   update of the counters block (each record keeps its own CRC): the host pump logs a
//   whole pass that way. Records are fully written before the header's count covers them,
//   so a process killed mid-append (SIGKILL) leaves a log whose counted records are all
//   intact.
//   Durability against power loss comes only from sync() (msync MS_SYNC), which is
//   explicit: call it at the points that matter, or set sync_interval for a background
//   thread that syncs periodically; close() syncs.
// - Reading: read_replay_log() / parse_replay_log() never trust the file. The run metadata
//   must pass its CRC (else kCorruptData: the run cannot be recreated). Everything else
//   degrades cleanly: a file shorter than the header says (truncated), a damaged counters
//   block (recovered by scanning the records), or a record whose CRC or sequence does not
//   match (torn by a crash, or corrupted) ends the readable log there; every intact record
//   before that point is returned and `stop_note` says where and why it stopped. (One
//   exception: in a wrapped log the writer did not close, the oldest records share their
//   slots with the batch a crash interrupted (at most kReplayMaxBatch); damaged ones among
//   them are skipped, and stop_note says so.)
// - Thread safety: ReplayLogWriter::append() and set_complete_epoch() may be called from
//   several threads (an internal mutex orders records); sync() from any thread. The
//   reader functions are pure.
// - Host only.
#pragma once

#include <pkrt/slot.hpp>
#include <pkrt/status.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

namespace pkrt {

// Version 2: the K2H stream may hold kOpAckRange, and H2K slots kFlagPost (the
// record layout is version 1's). Readers take both; a version 1 log replays as before.
inline constexpr std::uint32_t kReplayLogVersion = 3;
inline constexpr std::uint32_t kReplayLogOldestVersion = 1;
inline constexpr std::size_t kReplayLogHeaderBytes = 4096;
inline constexpr std::size_t kReplayRecordBytes = 128;
inline constexpr std::size_t kReplayMaxAppName = 63;      // bytes, without the terminator
inline constexpr std::size_t kReplayMaxParamsBytes = 2048;
inline constexpr std::uint64_t kReplayMaxCapacity = std::uint64_t{1} << 32;  // records
// Records one counters update covers at most (append_batch splits larger batches): bounds what
// a crash mid-batch can tear at the old end of a wrapped log.
inline constexpr std::size_t kReplayMaxBatch = 256;

enum class ReplayDirection : std::uint8_t {
  kH2K = 1,  // a command the host published to a block's H2K ring
  kK2H = 2,  // an event the host consumed from a block's K2H ring
};

const char* replay_direction_name(ReplayDirection direction);

// What the run was: everything needed to recreate it (pkrt/replay.hpp).
struct ReplayRunInfo {
  std::string app;                 // Program::name
  std::vector<std::byte> params;   // the app's Params, byte for byte
  std::string backend;             // "cpu" or "cuda"
  std::uint32_t num_actors = 0;
  std::uint32_t blocks = 0;              // blocks the run had (CPU: worker threads)
  std::uint32_t threads_per_block = 0;
  std::uint32_t ring_capacity = 0;
  std::uint32_t digest_period = 0;       // state digests every this many epochs (0: none)
  std::uint32_t k2k_delay = 1;           // RuntimeOptions::k2k_delay
  // A shard of a multi-rank run: the program's actor count (0: the run had every actor). Its
  // inbound K2K and shard identity are in the companion "<log>.k2k" (pkrt/k2k_log.hpp).
  std::uint32_t global_actors = 0;
  bool chaos = false;                    // CPU chaos mode was on (pkrt/runtime.hpp)
  std::uint64_t chaos_seed = 0;
  std::uint64_t start_epoch = 0;         // epoch already complete when the run started
                                         // (restored from a checkpoint: its epoch)
  std::uint64_t config_hash = 0;         // replay_config_hash(): app layout + params
  std::string pkrt_version;              // pkrt::version() of the recording binary
  std::uint64_t created_unix_ns = 0;     // wall clock at begin_run (informational)
};

// One record, exactly as stored: a 64-byte record header, then the ring slot whole.
struct alignas(64) ReplayRecord {
  std::uint64_t seq;             // global sequence: records appended before this one
  std::uint64_t time_ns;         // steady-clock time of the append (wall clock: never compared)
  std::uint64_t epoch_observed;  // every K2H event of epochs <= this was already appended
  std::uint64_t epoch_applied;   // H2K: the apply_epoch sent (0: next); K2H: the slot's epoch
  std::uint32_t block;           // ring (block) the slot went through
  std::uint8_t direction;        // ReplayDirection
  std::uint8_t reserved[23];     // zero
  std::uint32_t crc;             // CRC32 of the 128 record bytes with this field as zero
  Slot slot;
};
static_assert(sizeof(ReplayRecord) == kReplayRecordBytes, "a replay record is 128 bytes");
static_assert(offsetof(ReplayRecord, crc) == 60 && offsetof(ReplayRecord, slot) == 64,
              "record header layout is part of the file format");

// CRC32 a record must carry: of all 128 bytes, with the crc field taken as zero.
std::uint32_t replay_record_crc(const ReplayRecord& record);

struct ReplayLogOptions {
  std::uint64_t capacity_records = std::uint64_t{1} << 20;  // 128 MiB of records
  // 0: msync only at sync() and close(). Otherwise a background thread syncs this often.
  std::chrono::milliseconds sync_interval{0};
  // A regular file already at the path: false (default) refuses to touch it; true replaces
  // it, but only at close(), once the new log is durable and holds a run (begin_run): until
  // then the new log is written under a temporary name beside it (`.<name>.<pid>.<n>.tmp`),
  // so a run that fails before it begins, or a process killed mid-run, leaves the old file as
  // it was (a killed run's log stays at the temporary name).
  bool replace_existing = false;
};

class ReplayLogWriter {
 public:
  // Creates `path`, preallocated and mapped, under a temporary name in the same directory that
  // is renamed to `path` once the empty log is complete. Never truncates or follows anything:
  // a symbolic link, FIFO, device or directory at `path` is refused, and so is a regular file
  // unless options.replace_existing (then it is replaced atomically by a rename at close()).
  // kInvalidArgument for a bad capacity; kFailedPrecondition for what is at `path`; kIoError
  // (naming the path and the errno text) when the file cannot be made.
  static Result<std::unique_ptr<ReplayLogWriter>> create(const std::string& path,
                                                         const ReplayLogOptions& options = {});
  ~ReplayLogWriter();  // close() if not yet closed; errors are dropped (call close()).
  ReplayLogWriter(const ReplayLogWriter&) = delete;
  ReplayLogWriter& operator=(const ReplayLogWriter&) = delete;

  // Writes the run metadata. Exactly once, before the first append (kFailedPrecondition
  // otherwise; kInvalidArgument if the app name is empty or too long, the params are too
  // long, or backend / pkrt_version exceed 15 bytes; strings must not contain NUL).
  Status begin_run(const ReplayRunInfo& info);
  // Appends one record (its seq, time and CRC are filled in here). Thread-safe. After
  // close() it does nothing.
  void append(ReplayDirection direction, std::uint32_t block, std::uint64_t epoch_observed,
              std::uint64_t epoch_applied, const Slot& slot);
  // Appends records[0..n) in order, as if by n append() calls but under one lock, with one
  // clock read (they share time_ns) and one counters update per kReplayMaxBatch records.
  // The caller fills direction, block, epoch_observed, epoch_applied and slot; seq, time_ns
  // and crc are filled in here (in the caller's array too); reserved bytes must be zero.
  void append_batch(std::span<ReplayRecord> records);
  // Records that every K2H event of epochs <= epoch has been appended (monotonic).
  void set_complete_epoch(std::uint64_t epoch);
  // Durability point: msync(MS_SYNC) of the header and every record written so far.
  // kIoError with the errno text; kFailedPrecondition after close().
  Status sync();
  // Mark the log closed cleanly, sync(), unmap. Idempotent. Also reports the first failure
  // of the background sync thread, if any. A log that replaces a file is renamed over it here,
  // if the sync succeeded and a run began; one that recorded no run is removed instead.
  Status close();

  std::uint64_t written() const;  // records ever appended
  std::uint64_t capacity() const;
  const std::string& path() const;

  struct Impl;

 private:
  explicit ReplayLogWriter(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// A log as read back.
struct ReplayLog {
  std::uint32_t version = 0;         // format version of the file (kReplayLogOldestVersion..)
  ReplayRunInfo info;
  std::uint64_t capacity = 0;        // records the file holds
  std::uint64_t written = 0;         // records ever appended (header, or recovered by scan)
  std::uint64_t complete_epoch = 0;  // every K2H event of epochs <= this is in the log
  bool closed_cleanly = false;       // the writer's close() ran
  bool wrapped = false;              // written > capacity: the oldest records are gone
  std::uint64_t first_seq = 0;       // seq of records.front() (written - capacity if wrapped)
  bool counters_recovered = false;   // the counters block was damaged; found by scanning
  std::vector<ReplayRecord> records; // every intact record, oldest first, contiguous seqs
  // Empty when every counted record was read. Otherwise where the readable log ended and
  // why ("record 1234 at offset 162048: CRC mismatch (torn or corrupted); 1234 records
  // before it are intact"), or what was recovered.
  std::string stop_note;
};

// kIoError: cannot open/read. kCorruptData: not a replay log, unsupported version, or
// run metadata damaged (the message names the bytes and says the log cannot be replayed).
Result<ReplayLog> read_replay_log(const std::string& path);
Result<ReplayLog> parse_replay_log(std::span<const std::byte> bytes);

}  // namespace pkrt
