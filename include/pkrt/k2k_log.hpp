// pkrt/k2k_log.hpp: the inbound K2K log of one rank of a multi-rank run (pkrt/mpi.hpp), kept
// beside its replay log (pkrt/replay_log.hpp) as "<replay log>.k2k". It records what the
// rank's shard received from other ranks, epoch by epoch, and which shard it was, so that
// `pkrt replay` can replay that rank alone: a shard runtime whose exchange delivers the logged
// messages instead of other ranks' (docs/scale-out.md, "Replay across ranks").
//
// Format (little-endian):
//   header: "PKK2KIN1"  u32 version (2)  u32 rank  u32 ranks  u32 global actors  u32 K2K delay
//           u64 run id (version 2 only)  u32 ids  ids x u32 (the shard's global ids, ascending)
//           u32 CRC32 of the header
//   Version 1 (before 2026-12-06) has no run id; it is read with run_id 0.
//   records, one per exchanged epoch, in epoch order (an epoch with no message has one too):
//           u32 "RK2K"  u32 record bytes (with this header and the CRC)  u64 epoch
//           u32 messages  u32 payload bytes  messages x K2KTransfer (24 B)  payload
//           u32 CRC32 of the record before it
//
// Contract
// - The writer writes the header and then the records (flushed to the OS as each epoch is
//   delivered); close() fsyncs. A new log is written in place (a killed rank's log is there to
//   replay up to its last whole record). One that replaces an existing log goes to a
//   temporary, `<path>.tmp.<pid>`, renamed over the path by close() once durable, so the older
//   log stays whole until then (a killed run leaves the temporary beside it). A path that
//   names a directory or a device is refused at create().
// - read_k2k_log() bounds every count by the bytes present, checks every CRC, and stops
//   cleanly at the first torn or damaged record (it says so in `stop_note`); a bad header is
//   kCorruptData naming the file and the field. It never crashes (fuzzed: tests/fuzz).
// - Thread safety: one writer per file, used by one thread.
#pragma once

#include <pkrt/config.hpp>
#include <pkrt/k2k_transfer.hpp>
#include <pkrt/status.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <span>
#include <string>
#include <vector>

namespace pkrt {

struct K2KLogShard {
  std::uint32_t rank = 0;
  std::uint32_t ranks = 1;
  std::uint32_t global_actors = 0;
  std::uint32_t k2k_delay = 1;
  // The recording's id, the same in every rank's log of one run and different between runs
  // (ShardedRuntime::create draws it on rank 0): a replay checking one rank against the others'
  // logs refuses a log of another recording. 0: not known (a version-1 log).
  std::uint64_t run_id = 0;
  std::vector<std::uint32_t> global_ids;
};

struct K2KLogEpoch {
  std::uint64_t epoch = 0;
  std::vector<K2KTransfer> messages;
  std::vector<std::byte> payload;  // the messages' payloads back to back
};

struct K2KLog {
  K2KLogShard shard;
  std::vector<K2KLogEpoch> epochs;  // consecutive, in order
  std::string stop_note;            // why reading stopped before the end (empty: it did not)
};

Result<K2KLog> parse_k2k_log(std::span<const std::byte> file, const std::string& name);
Result<K2KLog> read_k2k_log(const std::string& path);
// The companion path of a replay log.
inline std::string k2k_log_path(const std::string& replay_log) { return replay_log + ".k2k"; }

class K2KLogWriter {
 public:
  static Result<std::unique_ptr<K2KLogWriter>> create(const std::string& path, const K2KLogShard& shard);
  ~K2KLogWriter();
  K2KLogWriter(const K2KLogWriter&) = delete;
  K2KLogWriter& operator=(const K2KLogWriter&) = delete;
  Status append(std::uint64_t epoch, std::span<const K2KTransfer> messages, std::span<const std::byte> payload);
  // fsync and close; a replacing log is then renamed over path() (until then the older log
  // there stays whole, and the records go to `<path>.tmp.<pid>`). Idempotent (a failure is
  // returned again). Destroyed without close(): closed the same way, except that a writer
  // given no epoch at all removes what it wrote (a run that never started leaves nothing, and
  // never replaces an older log with an empty one).
  Status close();
  const std::string& path() const { return path_; }

 private:
  K2KLogWriter(std::string path, std::string written, std::FILE* f)
      : path_(std::move(path)), written_(std::move(written)), file_(f) {}
  std::string path_;
  std::string written_;  // where the records go: path_, or the temporary of a replacing log
  std::uint64_t epochs_ = 0;  // records appended
  Status close_error_;        // close()'s failure, returned by every later call
  std::FILE* file_ = nullptr;
};

}  // namespace pkrt
