// pkrt/checkpoint_store.hpp: where checkpoint files live, and the history rebuilt from them.
//
// Contract
// - CheckpointStore::put() is atomic: a reader sees either no file under the name or the
//   whole file. FileCheckpointStore writes a temporary file (`.<name>.<pid>.<n>.tmp`),
//   fsyncs it, renames it into place and fsyncs the directory, so this also holds across a
//   crash or power loss. MemoryCheckpointStore is for tests.
// - list() returns final names only (`*.pkck`), never temporary files.
// - get() never allocates more than the file's size.
// - scan_checkpoints() rebuilds the history from whatever is in the store: every file is
//   parsed and checked; damaged ones are reported, not used. Order is (actor, epoch)
//   numerically, never by name.
// - load_actor_state() resolves a delta chain down to its full base via parent digests,
//   verifies every chunk CRC and every link's whole-state CRC, and only then returns state.
// - Thread safety: stores are safe to use from several threads.
#pragma once

#include <pkrt/checkpoint.hpp>
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
};

class FileCheckpointStore final : public CheckpointStore {
 public:
  // Creates the directory (and parents) if needed.
  static Result<std::unique_ptr<FileCheckpointStore>> open(const std::string& directory);

  Status put(const std::string& name, const std::vector<std::byte>& bytes) override;
  Result<std::vector<std::byte>> get(const std::string& name) const override;
  Result<std::vector<std::string>> list() const override;
  Status remove(const std::string& name) override;
  std::string describe(const std::string& name) const override;
  const std::string& directory() const { return dir_; }

 private:
  explicit FileCheckpointStore(std::string dir) : dir_(std::move(dir)) {}
  std::string dir_;
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

// Every checkpoint in the store, valid ones sorted by (actor, epoch), damaged ones last.
Result<std::vector<CheckpointRecord>> scan_checkpoints(const CheckpointStore& store);

// The full raw state of `actor` at `epoch`, resolved through its delta chain and verified.
Result<std::vector<std::byte>> load_actor_state(const CheckpointStore& store,
                                                const std::vector<CheckpointRecord>& history,
                                                std::uint32_t actor, std::uint64_t epoch);

}  // namespace pkrt
