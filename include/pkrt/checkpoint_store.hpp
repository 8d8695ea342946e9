// pkrt/checkpoint_store.hpp: where checkpoint files live, and the history rebuilt from them.
//
// Contract
// - CheckpointStore::put() is atomic: a reader sees either no file under the name or the
//   whole file. FileCheckpointStore writes a temporary file (`.<name>.<pid>.<n>.tmp`),
//   fsyncs it, renames it into place and fsyncs the directory, so this also holds across a
//   crash or power loss. MemoryCheckpointStore is for tests.
// - list() returns final names only (checkpoint files `*.pkck` and set manifests `*.pkset`),
//   never temporary files.
// - get() never allocates more than the file's size; a name that does not exist (e.g. one
//   retention removed after list()) is kNotFound, which readers skip rather than report.
// - lock_for_writing(): one writer per directory. FileCheckpointStore takes an exclusive
//   flock on `<dir>/.pkrt-writer.lock` (held until the store is destroyed, released by the
//   kernel if the process dies) and refuses a second writer with kBusy naming the holder's
//   pid. Readers take no lock: files are immutable once renamed into place, so a reader
//   sees each file whole or not at all.
// - scan_checkpoints() rebuilds the history from whatever is in the store: every file is
//   parsed and checked; damaged ones are reported, not used. Order is (actor, epoch)
//   numerically, never by name.
// - load_actor_state() resolves a delta chain down to its full base via parent digests,
//   verifies every chunk CRC and every link's whole-state CRC, and only then returns state.
// - Thread safety: stores are safe to use from several threads.
#pragma once

#include <pkrt/checkpoint.hpp>
#include <pkrt/checkpoint_set.hpp>
#include <pkrt/status.hpp>

#include <cstddef>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace pkrt {

class CheckpointStore {
 public:
  virtual ~CheckpointStore() = default;
  virtual Status put(const std::string& name, const std::vector<std::byte>& bytes) = 0;
  virtual Result<std::vector<std::byte>> get(const std::string& name) const = 0;
  virtual Result<std::vector<std::string>> list() const = 0;
  virtual Status remove(const std::string& name) = 0;
  virtual std::string describe(const std::string& name) const = 0;  // e.g. the file path
  virtual Status lock_for_writing() { return Status(); }
};

class FileCheckpointStore final : public CheckpointStore {
 public:
  // For writing: creates the directory (and parents) if needed, and removes the temporary
  // files of writers that died.
  static Result<std::unique_ptr<FileCheckpointStore>> open(const std::string& directory);
  // For reading a directory a run wrote: never creates it and never removes anything in it.
  // kNotFound when it does not exist, kInvalidArgument when it is not a directory.
  static Result<std::unique_ptr<FileCheckpointStore>> open_existing(const std::string& directory);

  Status put(const std::string& name, const std::vector<std::byte>& bytes) override;
  Result<std::vector<std::byte>> get(const std::string& name) const override;
  Result<std::vector<std::string>> list() const override;
  Status remove(const std::string& name) override;
  std::string describe(const std::string& name) const override;
  Status lock_for_writing() override;
  const std::string& directory() const { return dir_; }
  ~FileCheckpointStore() override;

 private:
  explicit FileCheckpointStore(std::string dir) : dir_(std::move(dir)) {}
  std::string dir_;
  int lock_fd_ = -1;
  mutable std::mutex mu_;  // guards counter_ only; the filesystem does the rest
  std::uint64_t counter_ = 0;
};

class MemoryCheckpointStore final : public CheckpointStore {
 public:
  Status put(const std::string& name, const std::vector<std::byte>& bytes) override;
  Result<std::vector<std::byte>> get(const std::string& name) const override;
  Result<std::vector<std::string>> list() const override;
  Status remove(const std::string& name) override;
  std::string describe(const std::string& name) const override { return "memory:" + name; }

 private:
  mutable std::mutex mu_;
  std::map<std::string, std::vector<std::byte>> files_;
};

// Reads any file (whatever its name) with the same bounded read as FileCheckpointStore::get.
Result<std::vector<std::byte>> read_checkpoint_file(const std::string& path);

struct CheckpointRecord {
  std::string name;
  CheckpointInfo info;  // valid only if status is ok
  std::uint64_t file_bytes = 0;
  Status status;        // why the file cannot be used, if it cannot
};

// Every checkpoint file in the store, valid ones sorted by (actor, epoch), damaged ones
// last. Files removed between the listing and the read are left out, not reported.
Result<std::vector<CheckpointRecord>> scan_checkpoints(const CheckpointStore& store);

struct CheckpointSetRecord {
  std::string name;
  CheckpointManifest manifest;  // valid only if status is ok
  Status status;
};

// Every set manifest in the store, valid ones by sequence (oldest first), damaged ones last.
Result<std::vector<CheckpointSetRecord>> scan_checkpoint_sets(const CheckpointStore& store);

// The full raw state held by the checkpoint file `name`, resolved through its delta chain
// and verified. `expected_state_bytes` (the run's image size) is compared with what the
// file declares before anything is allocated.
Result<std::vector<std::byte>> load_checkpoint_state(const CheckpointStore& store,
                                                     const std::vector<CheckpointRecord>& history,
                                                     const std::string& name, std::uint64_t expected_state_bytes);

// The full raw state of `actor` at `epoch`, resolved through its delta chain and verified.
Result<std::vector<std::byte>> load_actor_state(const CheckpointStore& store,
                                                const std::vector<CheckpointRecord>& history,
                                                std::uint32_t actor, std::uint64_t epoch);

}  // namespace pkrt
