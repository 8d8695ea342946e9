// replay/k2k_log.cpp: see pkrt/k2k_log.hpp.
#include <pkrt/crc32.hpp>
#include <pkrt/k2k_log.hpp>

#include "checkpoint/byte_io.hpp"
#include "host/file_read.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

namespace pkrt {
namespace {

using detail::ByteReader;
using detail::ByteWriter;

constexpr char kMagic[8] = {'P', 'K', 'K', '2', 'K', 'I', 'N', '1'};
constexpr std::uint32_t kVersion = 2;  // 2: the header holds the run id; 1 is still read
constexpr std::uint32_t kRecordMagic = 0x4B324B52;  // "RK2K"
constexpr std::uint64_t kMaxLogBytes = std::uint64_t{1} << 36;
constexpr std::size_t kRecordFixed = 4 + 4 + 8 + 4 + 4;

Status corrupt(const std::string& name, const std::string& what) {
  return Status(StatusCode::kCorruptData, "inbound K2K log '" + name + "': " + what +
                                              ". Fix: this rank cannot be replayed alone from it; record the run again");
}

std::string system_error(int err) { return std::strerror(err); }

// A failure to write the log, with the fix its cause calls for.
Status write_error(const std::string& doing, const std::string& file, int err) {
  const char* fix = err == ENOSPC || err == EDQUOT ? "free disk space"
                    : err == EACCES || err == EPERM || err == EROFS
                        ? "make the replay log's directory writable, or pick another --replay-log"
                    : err == ENOENT || err == ENOTDIR ? "create the replay log's directory first"
                                                      : "check the replay log's directory, or pick another --replay-log";
  return Status(StatusCode::kIoError, doing + " inbound K2K log '" + file + "' failed: " + system_error(err) + ". Fix: " + fix);
}

}  // namespace

Result<K2KLog> parse_k2k_log(std::span<const std::byte> file, const std::string& name) {
  if (file.size() < sizeof kMagic + 7 * 4 || std::memcmp(file.data(), kMagic, sizeof kMagic) != 0)
    return corrupt(name, "bad magic or too short (not a pkrt inbound K2K log)");
  ByteReader r(file.subspan(sizeof kMagic));
  K2KLog log;
  K2KLogShard& s = log.shard;
  const auto version = r.get<std::uint32_t>();
  s.rank = r.get<std::uint32_t>();
  s.ranks = r.get<std::uint32_t>();
  s.global_actors = r.get<std::uint32_t>();
  s.k2k_delay = r.get<std::uint32_t>();
  if (version == 2) s.run_id = r.get<std::uint64_t>();
  const auto ids = r.get<std::uint32_t>();
  if (r.failed()) return corrupt(name, "truncated header");
  if (version != 1 && version != kVersion)
    return corrupt(name, "version " + std::to_string(version) + " (this build reads 1 and 2)");
  if (s.ranks < 2 || s.rank >= s.ranks || s.global_actors == 0 || s.global_actors > (1u << 24) || s.k2k_delay == 0 ||
      s.k2k_delay > kMaxK2KDelay || ids == 0 || ids >= s.global_actors)
    return corrupt(name, "shard fields out of range (rank " + std::to_string(s.rank) + " of " + std::to_string(s.ranks) +
                             ", " + std::to_string(ids) + " of " + std::to_string(s.global_actors) + " actors, delay " +
                             std::to_string(s.k2k_delay) + ")");
  if (std::uint64_t{ids} * 4 > file.size()) return corrupt(name, std::to_string(ids) + " ids cannot fit in the file");
  s.global_ids.resize(ids);
  for (std::uint32_t i = 0; i < ids; ++i) {
    s.global_ids[i] = r.get<std::uint32_t>();
    if (r.failed()) return corrupt(name, "truncated id list");
    if (s.global_ids[i] >= s.global_actors || (i > 0 && s.global_ids[i] <= s.global_ids[i - 1]))
      return corrupt(name, "global id " + std::to_string(s.global_ids[i]) + " out of range or order");
  }
  const std::size_t header_end = sizeof kMagic + r.pos();
  const auto header_crc = r.get<std::uint32_t>();
  if (r.failed() || header_crc != crc32(file.data(), header_end)) return corrupt(name, "header CRC mismatch (damaged)");
  std::size_t at = header_end + 4;
  // Records: stop cleanly at the first torn or damaged one.
  while (at < file.size()) {
    const std::span<const std::byte> rest = file.subspan(at);
    ByteReader rr(rest);
    const auto magic = rr.get<std::uint32_t>();
    const auto bytes = rr.get<std::uint32_t>();
    const auto epoch = rr.get<std::uint64_t>();
    const auto messages = rr.get<std::uint32_t>();
    const auto payload = rr.get<std::uint32_t>();
    const std::string where = " at byte " + std::to_string(at);
    if (rr.failed() || magic != kRecordMagic || bytes < kRecordFixed + 4 || bytes > rest.size()) {
      log.stop_note = "stopped at a torn or damaged record" + where + " (a run that ended abruptly)";
      break;
    }
    if (std::uint64_t{messages} * sizeof(K2KTransfer) + payload + kRecordFixed + 4 != bytes) {
      log.stop_note = "stopped at a record whose sizes disagree" + where;
      break;
    }
    std::uint32_t stored = 0;
    std::memcpy(&stored, rest.data() + bytes - 4, sizeof stored);
    if (stored != crc32(rest.data(), bytes - 4)) {
      log.stop_note = "stopped at a record with a bad CRC" + where;
      break;
    }
    if (!log.epochs.empty() && epoch != log.epochs.back().epoch + 1) {
      log.stop_note = "stopped at epoch " + std::to_string(epoch) + where + ", which does not follow epoch " +
                      std::to_string(log.epochs.back().epoch);
      break;
    }
    K2KLogEpoch e;
    e.epoch = epoch;
    e.messages.resize(messages);
    // An epoch without messages has an empty (null) array: memcpy must not see it.
    if (messages > 0) std::memcpy(e.messages.data(), rest.data() + kRecordFixed, std::size_t{messages} * sizeof(K2KTransfer));
    std::uint64_t declared = 0;
    for (const K2KTransfer& t : e.messages) declared += t.bytes;
    if (declared != payload) {
      log.stop_note = "stopped at a record whose messages declare " + std::to_string(declared) + " payload bytes, not " +
                      std::to_string(payload) + where;
      break;
    }
    const std::byte* p = rest.data() + kRecordFixed + std::size_t{messages} * sizeof(K2KTransfer);
    e.payload.assign(p, p + payload);
    log.epochs.push_back(std::move(e));
    at += bytes;
  }
  return log;
}

Result<K2KLog> read_k2k_log(const std::string& path) {
  std::vector<std::byte> bytes;
  const host::FileReadFailure failed = host::read_file_bounded(path.c_str(), kMaxLogBytes, bytes);
  if (failed.step != nullptr) {
    return Status(failed.error == ENOENT ? StatusCode::kNotFound : StatusCode::kIoError,
                  std::string("inbound K2K log '") + path + "': " + failed.step +
                      (failed.error != 0 ? " failed: " + system_error(failed.error) : std::string()) +
                      ". Fix: pass the .k2k file recorded beside the rank's replay log");
  }
  return parse_k2k_log(bytes, path);
}

Result<std::unique_ptr<K2KLogWriter>> K2KLogWriter::create(const std::string& path, const K2KLogShard& shard) {
  std::vector<std::byte> header;
  // Its final size at once (also spares GCC 12 a false -Wstringop-overflow on the growth).
  header.reserve(sizeof kMagic + 6 * 4 + 8 + 4 * shard.global_ids.size() + 4);
  ByteWriter w(header);
  w.bytes(kMagic, sizeof kMagic);
  w.put(kVersion);
  w.put(shard.rank);
  w.put(shard.ranks);
  w.put(shard.global_actors);
  w.put(shard.k2k_delay);
  w.put(shard.run_id);
  w.put(static_cast<std::uint32_t>(shard.global_ids.size()));
  for (std::uint32_t id : shard.global_ids) w.put(id);
  w.put(crc32(header.data(), header.size()));
  // A path that names a directory or a device would only fail at close(), after the run.
  struct stat existing {};
  const bool replacing = ::stat(path.c_str(), &existing) == 0;
  if (replacing && !S_ISREG(existing.st_mode)) {
    return Status(StatusCode::kInvalidArgument, "inbound K2K log '" + path + "' names " +
                                                    (S_ISDIR(existing.st_mode) ? "a directory" : "something other than a file") +
                                                    ". Fix: name a file (by convention k2k_log_path(<replay log>))");
  }
  // A new log is written in place, so a killed rank's log is there to replay up to its last
  // whole record. One that replaces an older log is written under a temporary name and renamed
  // over `path` only by close(), once durable: the older log stays whole until then (after a
  // killed run, beside `path.tmp.<pid>`), as a replacing replay log does.
  std::string written = path;
  int fd = replacing ? -1 : ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0644);
  if (fd < 0 && !replacing) {
    // Created between the stat and the open: another writer (a rank on another node sharing
    // the filesystem, say) is writing it, and renaming over it at close() would lose its log.
    if (errno == EEXIST) {
      return Status(StatusCode::kBusy, "inbound K2K log '" + path + "' was created by another writer just now. "
                                       "Fix: one log per rank (<replay log>.rank<r>.k2k, as `pkrt run` names them)");
    }
    return write_error("creating", path, errno);
  }
  if (replacing) {
    written = path + ".tmp." + std::to_string(::getpid());
    fd = ::open(written.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (fd < 0) return write_error("creating", written, errno);
  }
  std::FILE* f = ::fdopen(fd, "wb");
  if (f == nullptr) {
    const int err = errno;
    ::close(fd);
    ::unlink(written.c_str());  // ours: created above, empty
    return write_error("opening", written, err);
  }
  if (std::fwrite(header.data(), 1, header.size(), f) != header.size() || std::fflush(f) != 0) {
    const int err = errno;
    std::fclose(f);
    ::unlink(written.c_str());
    return write_error("writing", written, err);
  }
  return std::unique_ptr<K2KLogWriter>(new K2KLogWriter(path, written, f));
}

K2KLogWriter::~K2KLogWriter() {
  if (file_ != nullptr && epochs_ == 0) {
    // Never given an epoch (the run did not start: a peer failed create(), say): nothing to
    // replay, and a replacing log must not put a header-only file over the one it replaces.
    std::fclose(file_);
    file_ = nullptr;
    ::unlink(written_.c_str());
    return;
  }
  close().ignore();
}

Status K2KLogWriter::append(std::uint64_t epoch, std::span<const K2KTransfer> messages, std::span<const std::byte> payload) {
  if (file_ == nullptr) return Status(StatusCode::kFailedPrecondition, "inbound K2K log '" + path_ + "' is closed");
  std::vector<std::byte> rec;
  ByteWriter w(rec);
  w.put(kRecordMagic);
  w.put(static_cast<std::uint32_t>(kRecordFixed + messages.size_bytes() + payload.size() + 4));
  w.put(epoch);
  w.put(static_cast<std::uint32_t>(messages.size()));
  w.put(static_cast<std::uint32_t>(payload.size()));
  w.bytes(messages.data(), messages.size_bytes());
  w.bytes(payload.data(), payload.size());
  w.put(crc32(rec.data(), rec.size()));
  if (std::fwrite(rec.data(), 1, rec.size(), file_) != rec.size() || std::fflush(file_) != 0)
    return write_error("appending to", written_, errno);
  ++epochs_;
  return Status();
}

Status K2KLogWriter::close() {
  if (file_ == nullptr) return close_error_;  // a failure is reported by every later call too
  const bool synced = std::fflush(file_) == 0 && ::fsync(::fileno(file_)) == 0;
  const int sync_error = errno;
  const bool closed = std::fclose(file_) == 0;
  file_ = nullptr;
  // Not renamed when it is not durable: the log it replaces stays as it was.
  if (!synced || !closed) return close_error_ = write_error("closing", written_, synced ? errno : sync_error);
  if (written_ == path_) return Status();  // written in place
  if (::rename(written_.c_str(), path_.c_str()) != 0)
    return close_error_ = write_error("renaming it to '" + path_ + "':", written_, errno);
  const std::filesystem::path parent = std::filesystem::path(path_).parent_path();
  const int dir = ::open(parent.empty() ? "." : parent.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir >= 0) {
    (void)::fsync(dir);  // the rename's directory entry, best effort: the log is a diagnostic
    ::close(dir);
  }
  return Status();
}

}  // namespace pkrt
