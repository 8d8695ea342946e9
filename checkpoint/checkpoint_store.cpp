// checkpoint/checkpoint_store.cpp: file and memory stores, history scan, delta-chain restore.
#include <pkrt/checkpoint_store.hpp>
#include <pkrt/global_checkpoint.hpp>
#include <pkrt/crc32.hpp>

#include "host/file_read.hpp"
#include "host/nvtx.hpp"

#include <dirent.h>
#include <signal.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <optional>

namespace pkrt {
namespace {

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

Status io_error(const std::string& what, const std::string& path, int err, const std::string& fix) {
  return Status(StatusCode::kIoError, what + " '" + path + "' failed: " + std::strerror(err) + ". Fix: " + fix);
}

bool valid_name(const std::string& name) {
  return !name.empty() && name.find('/') == std::string::npos && name[0] != '.' &&
         (ends_with(name, kCheckpointFileSuffix) || ends_with(name, kCheckpointManifestSuffix) ||
          ends_with(name, kGlobalManifestSuffix));
}

Status bad_name(const std::string& name) {
  return Status(StatusCode::kInvalidArgument,
                "checkpoint name '" + name + "' is invalid: it must end in .pkck (or .pkset for a set "
                "manifest, .pkglobal for a global one), not start with '.', and contain no '/'");
}

constexpr const char* kLockName = ".pkrt-writer.lock";

Status fsync_directory(const std::string& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return io_error("opening directory", dir, errno, "check the directory exists and is readable");
  const int rc = ::fsync(fd);
  const int err = errno;
  ::close(fd);
  if (rc != 0) return io_error("fsync of directory", dir, err, "check the filesystem is healthy and not full");
  return Status();
}

}  // namespace

Result<std::unique_ptr<FileCheckpointStore>> FileCheckpointStore::open(const std::string& directory) {
  std::error_code ec;
  std::filesystem::create_directories(directory, ec);
  if (ec || !std::filesystem::is_directory(directory, ec)) {
    return Status(StatusCode::kIoError, "checkpoint directory '" + directory + "' cannot be created or is not a "
                                        "directory. Fix: pass a writable directory to --checkpoint-dir");
  }
  // Temporary files of writers that died (their pid is gone) are debris of a crash: no
  // reader ever uses them, so clear them out. A live writer's are left alone.
  for (const auto& entry : std::filesystem::directory_iterator(directory, ec)) {
    const std::string n = entry.path().filename().string();
    if (n.size() < 6 || n[0] != '.' || !ends_with(n, ".tmp")) continue;
    // .<name>.<pid>.<n>.tmp
    const std::size_t last = n.rfind('.', n.size() - 5);
    const std::size_t pid_dot = last == std::string::npos || last == 0 ? std::string::npos : n.rfind('.', last - 1);
    if (pid_dot == std::string::npos) continue;
    const long pid = std::strtol(n.c_str() + pid_dot + 1, nullptr, 10);
    if (pid > 0 && ::kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH) std::filesystem::remove(entry.path(), ec);
  }
  return std::unique_ptr<FileCheckpointStore>(new FileCheckpointStore(directory));
}

Result<std::unique_ptr<FileCheckpointStore>> FileCheckpointStore::open_existing(const std::string& directory) {
  std::error_code ec;
  if (!std::filesystem::exists(directory, ec)) {
    return Status(StatusCode::kNotFound, "checkpoint directory '" + directory + "' does not exist. Fix: pass the "
                                         "directory a run wrote its checkpoints to (--checkpoint-dir)");
  }
  if (!std::filesystem::is_directory(directory, ec)) {
    return Status(StatusCode::kInvalidArgument, "'" + directory + "' is not a checkpoint directory (not a directory). "
                                                "Fix: pass the directory a run wrote its checkpoints to (--checkpoint-dir)");
  }
  return std::unique_ptr<FileCheckpointStore>(new FileCheckpointStore(directory));
}

std::string FileCheckpointStore::describe(const std::string& name) const { return dir_ + "/" + name; }

FileCheckpointStore::~FileCheckpointStore() {
  if (lock_fd_ >= 0) ::close(lock_fd_);  // releases the flock
}

Status FileCheckpointStore::lock_for_writing() {
  std::lock_guard<std::mutex> lock(mu_);
  if (lock_fd_ >= 0) return Status();
  const std::string path = dir_ + "/" + kLockName;
  // O_NOFOLLOW: a link planted at the lock's name must not make us truncate its target.
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK, 0644);
  if (fd < 0) return io_error("opening the lock file", path, errno, "check the checkpoint directory is writable");
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    return Status(StatusCode::kIoError, "'" + path + "' is not a regular file. Fix: remove it; pkrt recreates it");
  }
  // flock, not fcntl locks: an fcntl lock is dropped when any descriptor of the file in
  // this process closes, and it is per process, so two runtimes in one process would not
  // exclude each other. The kernel drops a flock when the holder dies, so a crash never
  // leaves the directory locked.
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    const int err = errno;
    char holder[32] = {};
    const ssize_t n = ::pread(fd, holder, sizeof holder - 1, 0);
    ::close(fd);
    if (err != EWOULDBLOCK) return io_error("locking", path, err, "use a local filesystem that supports flock");
    std::string pid = n > 0 ? std::string(holder, static_cast<std::size_t>(n)) : "unknown";
    while (!pid.empty() && (pid.back() == '\n' || pid.back() == ' ')) pid.pop_back();
    return Status(StatusCode::kBusy, "checkpoint directory '" + dir_ + "' is in use by another writer (pid " + pid +
                                         "). Fix: give each run its own --checkpoint-dir, or wait for that run to end");
  }
  // The holder's pid, for a second writer's message. The lock itself is the flock, so a
  // failure to record it is no error: that message then says "unknown".
  const std::string me = std::to_string(::getpid()) + "\n";
  if (::ftruncate(fd, 0) == 0) {
    [[maybe_unused]] const ssize_t written = ::pwrite(fd, me.data(), me.size(), 0);
  }
  lock_fd_ = fd;
  return Status();
}

Status FileCheckpointStore::put(const std::string& name, const std::vector<std::byte>& bytes) {
  if (!valid_name(name)) return bad_name(name);
  std::uint64_t n;
  {
    std::lock_guard<std::mutex> lock(mu_);
    n = counter_++;
  }
  const std::string tmp = dir_ + "/." + name + "." + std::to_string(::getpid()) + "." + std::to_string(n) + ".tmp";
  const std::string final_path = describe(name);
  static const host::NvtxName kWriteName("checkpoint write + fsync");
  std::optional<host::NvtxRange> writing(std::in_place, kWriteName);
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) return io_error("creating", tmp, errno, "check the checkpoint directory is writable");
  const std::byte* p = bytes.data();
  std::size_t left = bytes.size();
  while (left > 0) {
    const ssize_t w = ::write(fd, p, left);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) {
      const int err = w < 0 ? errno : EIO;
      ::close(fd);
      ::unlink(tmp.c_str());
      return io_error("writing", tmp, err, "free disk space or pick another --checkpoint-dir");
    }
    p += w;
    left -= static_cast<std::size_t>(w);
  }
  if (::fsync(fd) != 0) {
    const int err = errno;
    ::close(fd);
    ::unlink(tmp.c_str());
    return io_error("fsync of", tmp, err, "check the filesystem is healthy and not full");
  }
  if (::close(fd) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    return io_error("closing", tmp, err, "check the filesystem is healthy and not full");
  }
  writing.reset();
  static const host::NvtxName kCommitName("checkpoint commit (rename + dir fsync)");
  const host::NvtxRange committing(kCommitName);
  if (::rename(tmp.c_str(), final_path.c_str()) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    return io_error("renaming into", final_path, err, "check the checkpoint directory is writable");
  }
  return fsync_directory(dir_);
}

Result<std::vector<std::byte>> FileCheckpointStore::get(const std::string& name) const {
  if (!valid_name(name)) return bad_name(name);
  return read_checkpoint_file(describe(name));
}

Result<std::vector<std::byte>> read_checkpoint_file(const std::string& path) {
  std::vector<std::byte> out;
  // A set manifest is never larger than kMaxCheckpointManifestBytes: read one byte more, so
  // the parser refuses a stray huge *.pkset by its size without this reading all of it.
  const std::uint64_t bound =
      ends_with(path, kCheckpointManifestSuffix) ? kMaxCheckpointManifestBytes + 1 : ~std::uint64_t{0};
  const host::FileReadFailure failed = host::read_file_bounded(path.c_str(), bound, out);
  if (failed.step == nullptr) return out;
  if (std::string(failed.step) == "allocate")
    return Status(StatusCode::kOutOfRange, "'" + path + "' is larger than this machine's free memory; no checkpoint "
                                           "this machine could restore is. Fix: check the file (pkrt checkpoint "
                                           "verify), or restore on a machine with more memory");
  if (failed.error == 0)
    return Status(StatusCode::kIoError, "'" + path + "' is not a regular file. Fix: pass a checkpoint file");
  if (std::string(failed.step) == "open" && failed.error == ENOENT)
    return Status(StatusCode::kNotFound, "'" + path + "' does not exist. Fix: check the path (pkrt checkpoint list DIR "
                                         "shows what exists)");
  if (std::string(failed.step) == "open")
    return io_error("opening", path, failed.error, "check the path (pkrt checkpoint list DIR shows what exists)");
  return io_error("reading", path, failed.error, "check the disk");
}

Result<std::vector<std::string>> FileCheckpointStore::list() const {
  DIR* d = ::opendir(dir_.c_str());
  if (d == nullptr) return io_error("listing", dir_, errno, "check the directory exists and is readable");
  std::vector<std::string> names;
  while (dirent* e = ::readdir(d)) {
    const std::string n = e->d_name;
    if (valid_name(n)) names.push_back(n);
  }
  ::closedir(d);
  std::sort(names.begin(), names.end());
  return names;
}

Status FileCheckpointStore::remove(const std::string& name) {
  if (!valid_name(name)) return bad_name(name);
  const std::string path = describe(name);
  if (::unlink(path.c_str()) != 0 && errno != ENOENT)
    return io_error("removing", path, errno, "check the checkpoint directory is writable");
  return fsync_directory(dir_);
}

Status MemoryCheckpointStore::put(const std::string& name, const std::vector<std::byte>& bytes) {
  if (!valid_name(name)) return bad_name(name);
  std::lock_guard<std::mutex> lock(mu_);
  files_[name] = bytes;
  return Status();
}

Result<std::vector<std::byte>> MemoryCheckpointStore::get(const std::string& name) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = files_.find(name);
  if (it == files_.end()) return Status(StatusCode::kNotFound, "no checkpoint named '" + name + "' in memory");
  return it->second;
}

Result<std::vector<std::string>> MemoryCheckpointStore::list() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<std::string> names;
  for (const auto& [n, b] : files_) names.push_back(n);
  return names;
}

Status MemoryCheckpointStore::remove(const std::string& name) {
  std::lock_guard<std::mutex> lock(mu_);
  files_.erase(name);
  return Status();
}

Result<std::vector<CheckpointRecord>> scan_checkpoints(const CheckpointStore& store) {
  auto names = store.list();
  if (!names.ok()) return names.status();
  std::vector<CheckpointRecord> records;
  for (const std::string& name : names.value()) {
    if (!ends_with(name, kCheckpointFileSuffix)) continue;
    CheckpointRecord rec;
    rec.name = name;
    auto bytes = store.get(name);
    // Removed since the listing (retention of a live run): not damage, just gone.
    if (bytes.status().code() == StatusCode::kNotFound) continue;
    if (!bytes.ok()) {
      rec.status = bytes.status();
    } else {
      rec.file_bytes = bytes->size();
      auto parsed = parse_checkpoint(bytes.value(), store.describe(name));
      if (parsed.ok()) rec.info = parsed->info;
      else rec.status = parsed.status();
    }
    records.push_back(std::move(rec));
  }
  std::stable_sort(records.begin(), records.end(), [](const CheckpointRecord& a, const CheckpointRecord& b) {
    if (a.status.ok() != b.status.ok()) return a.status.ok();
    if (a.info.actor != b.info.actor) return a.info.actor < b.info.actor;
    if (a.info.epoch != b.info.epoch) return a.info.epoch < b.info.epoch;
    return a.info.delta > b.info.delta;  // a full and a delta at one epoch: full last (preferred)
  });
  return records;
}

Result<std::vector<CheckpointSetRecord>> scan_checkpoint_sets(const CheckpointStore& store) {
  auto names = store.list();
  if (!names.ok()) return names.status();
  std::vector<CheckpointSetRecord> sets;
  for (const std::string& name : names.value()) {
    if (!ends_with(name, kCheckpointManifestSuffix)) continue;
    CheckpointSetRecord rec;
    rec.name = name;
    auto bytes = store.get(name);
    if (bytes.status().code() == StatusCode::kNotFound) continue;  // retired since the listing
    if (!bytes.ok()) {
      rec.status = bytes.status();
    } else {
      auto parsed = parse_checkpoint_manifest(bytes.value(), store.describe(name));
      if (!parsed.ok()) {
        rec.status = parsed.status();
      } else if (const CheckpointManifest& m = parsed.value();
                 name != checkpoint_manifest_name(m.fingerprint.app, m.epoch) &&
                 name != checkpoint_manifest_name(m.fingerprint.app, m.epoch, m.sequence)) {
        // Intact, but not under the name its writer gave it (copied or renamed over another):
        // two manifests would claim one set, and a listing by name would misplace it.
        rec.status = Status(StatusCode::kCorruptData,
                            "set manifest '" + store.describe(name) + "' holds the set of epoch " +
                                std::to_string(m.epoch) + " (sequence " + std::to_string(m.sequence) +
                                "), whose manifest is named " + checkpoint_manifest_name(m.fingerprint.app, m.epoch) +
                                ". Fix: remove the misnamed copy");
      } else {
        rec.manifest = std::move(parsed.value());
      }
    }
    sets.push_back(std::move(rec));
  }
  std::stable_sort(sets.begin(), sets.end(), [](const CheckpointSetRecord& a, const CheckpointSetRecord& b) {
    if (a.status.ok() != b.status.ok()) return a.status.ok();
    return a.manifest.sequence < b.manifest.sequence;
  });
  return sets;
}

Result<std::vector<std::byte>> load_checkpoint_state(const CheckpointStore& store,
                                                     const std::vector<CheckpointRecord>& history,
                                                     const std::string& name, std::uint64_t expected_state_bytes) {
  const CheckpointRecord* target = nullptr;
  for (const auto& r : history)
    if (r.name == name) target = &r;
  if (target == nullptr || !target->status.ok()) {
    return Status(target == nullptr ? StatusCode::kNotFound : StatusCode::kCorruptData,
                  "checkpoint '" + store.describe(name) + "' is " +
                      (target == nullptr ? std::string("missing") : "damaged: " + target->status.message()) +
                      ". Fix: restore another set (`pkrt checkpoint list` shows them)");
  }
  const std::uint32_t actor = target->info.actor;
  const std::uint64_t epoch = target->info.epoch;
  // Walk parents down to the full base.
  std::vector<const CheckpointRecord*> chain{target};
  while (chain.back()->info.delta) {
    const CheckpointRecord* parent = nullptr;
    for (const auto& r : history)
      if (r.status.ok() && r.info.actor == actor && r.info.digest == chain.back()->info.parent_digest &&
          r.info.epoch < chain.back()->info.epoch)
        parent = &r;
    if (parent == nullptr || chain.size() > history.size()) {
      return Status(StatusCode::kCorruptData,
                    "delta checkpoint '" + store.describe(chain.back()->name) +
                        "' needs a parent that is missing or damaged, so actor " + std::to_string(actor) +
                        " cannot be restored at epoch " + std::to_string(epoch) +
                        ". Fix: restore an earlier epoch whose chain is complete");
    }
    chain.push_back(parent);
  }
  // Every link must describe a state of the size the caller expects, checked against the
  // headers already parsed: nothing is allocated for a size a crafted file declares.
  for (const CheckpointRecord* rec : chain) {
    if (rec->info.state_bytes != expected_state_bytes) {
      return Status(StatusCode::kCorruptData,
                    "checkpoint '" + store.describe(rec->name) + "' declares a state of " +
                        std::to_string(rec->info.state_bytes) + " bytes; this run's actors hold " +
                        std::to_string(expected_state_bytes) + ". Fix: restore with the program and parameters "
                        "that wrote it");
    }
  }
  std::vector<std::byte> state;
  for (auto it = chain.rbegin(); it != chain.rend(); ++it) {
    const CheckpointRecord& rec = **it;
    const std::string where = store.describe(rec.name);
    auto bytes = store.get(rec.name);
    if (!bytes.ok()) return bytes.status();
    auto parsed = parse_checkpoint(bytes.value(), where);
    if (!parsed.ok()) return parsed.status();
    // The file may have been replaced since the scan: hold it to what the scan saw.
    if (parsed->info.digest != rec.info.digest || parsed->info.state_bytes != expected_state_bytes)
      return Status(StatusCode::kCorruptData, "checkpoint '" + where + "' changed while it was being restored. "
                                              "Fix: restore again once no run writes into the directory");
    if (it == chain.rbegin()) state.assign(expected_state_bytes, std::byte{0});
    PKRT_RETURN_IF_ERROR(decode_chunks(parsed.value(), bytes.value(), where, state));
    if (crc32(state.data(), state.size()) != parsed->info.state_crc) {
      return Status(StatusCode::kCorruptData,
                    "state rebuilt from '" + where + "' does not match its recorded CRC: the delta chain is "
                    "inconsistent. Fix: restore from an earlier full checkpoint");
    }
  }
  return state;
}

Result<std::vector<std::byte>> load_actor_state(const CheckpointStore& store,
                                                const std::vector<CheckpointRecord>& history, std::uint32_t actor,
                                                std::uint64_t epoch) {
  // Prefer a full checkpoint at that epoch; else a delta.
  const CheckpointRecord* target = nullptr;
  for (const auto& r : history)
    if (r.status.ok() && r.info.actor == actor && r.info.epoch == epoch && (target == nullptr || !r.info.delta))
      target = &r;
  if (target == nullptr) {
    return Status(StatusCode::kInvalidArgument,
                  "no intact checkpoint of actor " + std::to_string(actor) + " at epoch " + std::to_string(epoch) +
                      ". Fix: pick an epoch that `pkrt checkpoint list` shows");
  }
  return load_checkpoint_state(store, history, target->name, target->info.state_bytes);
}

}  // namespace pkrt
