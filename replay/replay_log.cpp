// replay/replay_log.cpp: the replay log writer (a preallocated, pre-faulted MAP_SHARED file)
// and its validating reader (docs/replay-log-format.md).
#include <pkrt/crc32.hpp>
#include <pkrt/replay_log.hpp>

#include "host/file_read.hpp"
#include "host/nvtx.hpp"
#include "replay/record_crc.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <bit>
#include <cerrno>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <optional>
#include <thread>
#include <utility>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace pkrt {
namespace {

// rename(from, to) that fails with EEXIST instead of replacing an existing `to`. Filesystems
// without RENAME_NOREPLACE get link + unlink, which refuses an existing name the same way.
// fsync of a directory, so that a rename in it survives a crash. Best effort: a directory
// that cannot be opened for reading only loses that guarantee.
void fsync_directory(const std::string& dir) {
  const int dir_fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir_fd >= 0) {
    (void)::fsync(dir_fd);
    ::close(dir_fd);
  }
}

bool rename_no_replace(const std::string& from, const std::string& to) {
  if (::renameat2(AT_FDCWD, from.c_str(), AT_FDCWD, to.c_str(), RENAME_NOREPLACE) == 0) return true;
  if (errno != EINVAL && errno != ENOSYS) return false;
  if (::link(from.c_str(), to.c_str()) != 0) return false;
  ::unlink(from.c_str());
  return true;
}

// Copies one record into the map without reading the destination first. The map is a ring
// of 128 MiB by default that the writer streams through once per lap: a normal store pulls
// each 64-byte line in from memory before overwriting it (read for ownership), which costs
// more than the copy. x86: non-temporal stores, ordered before the count that covers them by
// order_streamed_records(). Elsewhere: memcpy.
inline void stream_record(std::byte* dst, const ReplayRecord& record) {
#if defined(__SSE2__)
  static_assert(sizeof(ReplayRecord) % sizeof(__m128i) == 0 && alignof(ReplayRecord) >= alignof(__m128i));
  const auto* s = reinterpret_cast<const __m128i*>(&record);
  auto* d = reinterpret_cast<__m128i*>(dst);
  for (std::size_t i = 0; i < sizeof(ReplayRecord) / sizeof(__m128i); ++i) _mm_stream_si128(d + i, _mm_load_si128(s + i));
#else
  std::memcpy(dst, &record, sizeof record);
#endif
}

#if PKRT_RECORD_CRC_CLMUL
// stream_record with the record's CRC computed on the way (AVX-512 + VPCLMULQDQ): each record
// is loaded once into two 512-bit registers, CRC'd from them, its CRC field set in the
// register, and streamed out as one whole 128-byte line pair. Also stores each CRC in
// batch[i].crc, as append_batch documents. The CRC fields must be zero on entry.
__attribute__((target("avx512f,vpclmulqdq,pclmul,sse4.1"))) void seal_and_stream_records_zmm(
    std::byte* records, std::uint64_t capacity, ReplayRecord* batch, std::size_t n) {
  static_assert(offsetof(ReplayRecord, crc) == 15 * sizeof(std::uint32_t) && alignof(ReplayRecord) >= 64);
  for (std::size_t i = 0; i < n; ++i) {
    const auto* src = reinterpret_cast<const char*>(&batch[i]);
    __m512i front = _mm512_load_si512(src);
    const __m512i back = _mm512_load_si512(src + 64);
    const std::uint32_t crc = detail::record_crc_zmm(front, back);
    batch[i].crc = crc;
    front = _mm512_mask_set1_epi32(front, __mmask16{1} << 15, static_cast<int>(crc));  // dword 15: the crc field
    std::byte* dst = records + (batch[i].seq % capacity) * kReplayRecordBytes;
    _mm512_stream_si512(reinterpret_cast<__m512i*>(dst), front);
    _mm512_stream_si512(reinterpret_cast<__m512i*>(dst + 64), back);
  }
}
#endif

// Store fence: the non-temporal stores of stream_record are globally visible before any
// later store (the release of the written count in publish_counters, which orders only
// ordinary stores on x86).
inline void order_streamed_records() {
#if defined(__SSE2__)
  _mm_sfence();
#endif
}

static_assert(std::endian::native == std::endian::little,
              "the replay log is little-endian; big-endian hosts need byte swapping here");

// Header layout (docs/replay-log-format.md, "Header"). Bytes [0, kMetadataCrcAt) are
// written once (create, then begin_run) and covered by the metadata CRC; the counters
// block changes on every append and has its own CRC. Every other byte is zero and ignored.
constexpr char kMagic[8] = {'P', 'K', 'R', 'T', 'R', 'L', 'O', 'G'};
constexpr std::size_t kVersionAt = 8;          // u32
constexpr std::size_t kHeaderBytesAt = 12;     // u32
constexpr std::size_t kRecordBytesAt = 16;     // u32
constexpr std::size_t kGlobalActorsAt = 20;    // u32, version 3: a shard's program actor count (0: not a shard)
constexpr std::size_t kCapacityAt = 24;        // u64
constexpr std::size_t kAppAt = 32;             // char[64], NUL-padded
constexpr std::size_t kAppField = kReplayMaxAppName + 1;
constexpr std::size_t kBackendAt = 96;         // char[16], NUL-padded
constexpr std::size_t kBackendField = 16;
constexpr std::size_t kPkrtVersionAt = 112;    // char[16], NUL-padded
constexpr std::size_t kPkrtVersionField = 16;
constexpr std::size_t kNumActorsAt = 128;      // u32
constexpr std::size_t kBlocksAt = 132;         // u32
constexpr std::size_t kThreadsPerBlockAt = 136;  // u32
constexpr std::size_t kRingCapacityAt = 140;   // u32
constexpr std::size_t kDigestPeriodAt = 144;   // u32
constexpr std::size_t kChaosAt = 148;          // u32: 0 or 1
constexpr std::size_t kChaosSeedAt = 152;      // u64
constexpr std::size_t kStartEpochAt = 160;     // u64
constexpr std::size_t kConfigHashAt = 168;     // u64
constexpr std::size_t kCreatedAt = 176;        // u64
constexpr std::size_t kParamsBytesAt = 184;    // u32
constexpr std::size_t kK2KDelayAt = 188;       // u32, version 3: K2K delay, 0 for the default 1
constexpr std::size_t kParamsAt = 192;         // u8[2048], zero-padded
constexpr std::size_t kMetadataCrcAt = kParamsAt + kReplayMaxParamsBytes;  // 2240
constexpr std::size_t kMetadataBytes = kMetadataCrcAt + 4;

constexpr std::size_t kCountersAt = 2304;      // its own cache line
constexpr std::size_t kWrittenAt = kCountersAt;             // u64
constexpr std::size_t kCompleteEpochAt = kCountersAt + 8;   // u64
constexpr std::size_t kStateAt = kCountersAt + 16;          // u32
constexpr std::size_t kCountersCrcAt = kCountersAt + 20;    // u32: CRC32 of [2304, 2324)
constexpr std::size_t kCountersCovered = 20;
constexpr std::uint32_t kStateOpen = 1;
constexpr std::uint32_t kStateClosed = 2;

static_assert(kMetadataBytes <= kCountersAt && kCountersAt + 24 <= kReplayLogHeaderBytes);
static_assert(kWrittenAt % std::atomic_ref<std::uint64_t>::required_alignment == 0,
              "the count is stored with atomic_ref into a page-aligned map");

// No run appends or completes 2^62 of anything (146 years at 10^9 a second): larger
// counts, epochs or sequences in a file are damage, and staying below keeps +1 safe.
constexpr std::uint64_t kMaxPlausibleCount = std::uint64_t{1} << 62;

template <class T>
void store_at(std::byte* p, std::size_t off, T v) {
  std::memcpy(p + off, &v, sizeof(T));
}

template <class T>
T load_at(const std::byte* p, std::size_t off) {
  T v;
  std::memcpy(&v, p + off, sizeof(T));
  return v;
}

void store_string(std::byte* p, std::size_t off, std::size_t field, const std::string& s) {
  std::memcpy(p + off, s.data(), std::min(s.size(), field - 1));  // the rest stays zero
}

// The field up to its first NUL; none when the field has no terminator.
std::optional<std::string> load_string(const std::byte* p, std::size_t off, std::size_t field) {
  const char* s = reinterpret_cast<const char*>(p + off);
  const std::size_t n = strnlen(s, field);
  if (n == field) return std::nullopt;
  return std::string(s, n);
}

// Header bytes [0, kMetadataBytes): identity, capacity, run metadata and their CRC.
using MetadataBytes = std::array<std::byte, kMetadataBytes>;

MetadataBytes encode_metadata(std::uint64_t capacity, const ReplayRunInfo& info,
                              std::uint32_t version = kReplayLogVersion) {
  MetadataBytes m{};
  std::byte* p = m.data();
  std::memcpy(p, kMagic, sizeof kMagic);
  store_at(p, kVersionAt, version);
  store_at(p, kHeaderBytesAt, static_cast<std::uint32_t>(kReplayLogHeaderBytes));
  store_at(p, kRecordBytesAt, static_cast<std::uint32_t>(kReplayRecordBytes));
  // Version 3 fields; an older version's file has zero there (the decoder's round trip then
  // refuses one that does not).
  if (version >= 3) store_at(p, kGlobalActorsAt, info.global_actors);
  store_at(p, kCapacityAt, capacity);
  store_string(p, kAppAt, kAppField, info.app);
  store_string(p, kBackendAt, kBackendField, info.backend);
  store_string(p, kPkrtVersionAt, kPkrtVersionField, info.pkrt_version);
  store_at(p, kNumActorsAt, info.num_actors);
  store_at(p, kBlocksAt, info.blocks);
  store_at(p, kThreadsPerBlockAt, info.threads_per_block);
  store_at(p, kRingCapacityAt, info.ring_capacity);
  store_at(p, kDigestPeriodAt, info.digest_period);
  store_at(p, kChaosAt, std::uint32_t{info.chaos ? 1u : 0u});
  store_at(p, kChaosSeedAt, info.chaos_seed);
  store_at(p, kStartEpochAt, info.start_epoch);
  store_at(p, kConfigHashAt, info.config_hash);
  store_at(p, kCreatedAt, info.created_unix_ns);
  const std::size_t params = std::min(info.params.size(), kReplayMaxParamsBytes);
  store_at(p, kParamsBytesAt, static_cast<std::uint32_t>(params));
  if (version >= 3) store_at(p, kK2KDelayAt, std::uint32_t{info.k2k_delay == 1 ? 0u : info.k2k_delay});
  if (params > 0) std::memcpy(p + kParamsAt, info.params.data(), params);
  store_at(p, kMetadataCrcAt, crc32(p, kMetadataCrcAt));
  return m;
}

// Counters block bytes [0, 20), the ones its CRC covers.
std::array<std::byte, kCountersCovered> encode_counters(std::uint64_t written,
                                                        std::uint64_t complete_epoch,
                                                        std::uint32_t state) {
  std::array<std::byte, kCountersCovered> c{};
  store_at(c.data(), kWrittenAt - kCountersAt, written);
  store_at(c.data(), kCompleteEpochAt - kCountersAt, complete_epoch);
  store_at(c.data(), kStateAt - kCountersAt, state);
  return c;
}

std::string errno_text(int err) { return std::strerror(err); }

std::string quoted(const std::string& path) { return "replay log '" + path + "'"; }

std::uint64_t steady_ns() {
  return static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                        std::chrono::steady_clock::now().time_since_epoch())
                                        .count());
}

}  // namespace

const char* replay_direction_name(ReplayDirection direction) {
  switch (direction) {
    case ReplayDirection::kH2K: return "h2k";
    case ReplayDirection::kK2H: return "k2h";
  }
  return "unknown";
}

std::uint32_t replay_record_crc(const ReplayRecord& record) {
  // One pass over all 128 bytes with the crc field as zero (the writer's own path).
  ReplayRecord copy = record;
  copy.crc = 0;
  return detail::crc32_fixed128(&copy);
}

// ---- Writer ---------------------------------------------------------------------------------

struct ReplayLogWriter::Impl {
  std::string path;
  std::string dir;           // the directory `path` is in ("." or ending in '/')
  // Non-empty while the log replaces an existing file: it is written under this temporary
  // name and renamed over `path` only at close(), once it is durable and a run was recorded.
  std::string replaces_at_close;
  int fd = -1;
  std::uint64_t capacity = 0;
  std::size_t map_bytes = 0;

  // Guards everything below; appends are ordered by it.
  std::mutex mutex;
  std::byte* map = nullptr;  // null once closed
  std::uint64_t written = 0;
  std::uint64_t complete_epoch = 0;
  bool run_begun = false;

  // Background sync thread (options.sync_interval > 0).
  std::thread sync_thread;
  std::mutex sync_mutex;
  std::condition_variable sync_wake;
  bool sync_stop = false;  // guarded by sync_mutex
  Status sync_error;       // first failure of the background thread; guarded by sync_mutex

  // Rewrites the counters block from the fields above; mutex held.
  void publish_counters(std::uint32_t state) {
    // The CRC is ready before the count changes: a kill between the two stores (which the
    // reader repairs by scanning) has the shortest possible window.
    const auto covered = encode_counters(written, complete_epoch, state);
    const std::uint32_t covered_crc = crc32(covered.data(), covered.size());
    store_at(map, kCompleteEpochAt, complete_epoch);
    store_at(map, kStateAt, state);
    // Release: record bytes before the count covering them (for a live or post-SIGKILL reader).
    std::atomic_ref<std::uint64_t>(*reinterpret_cast<std::uint64_t*>(map + kWrittenAt))
        .store(written, std::memory_order_release);
    store_at(map, kCountersCrcAt, covered_crc);
  }

  // msync of the whole map. Outside `mutex`: appends go on while the kernel writes back.
  Status sync_map() {
    std::byte* m;
    {
      std::lock_guard lock(mutex);
      m = map;
    }
    if (m == nullptr)
      return Status(StatusCode::kFailedPrecondition,
                    "sync of " + quoted(path) + " after close(): close() already synced it");
    if (::msync(m, map_bytes, MS_SYNC) != 0) {
      const int err = errno;
      return Status(StatusCode::kIoError,
                    "msync of " + quoted(path) + " failed: " + errno_text(err) +
                        ". Records appended since the last successful sync may not survive a "
                        "power loss. Fix: check the disk (dmesg) and free space");
    }
    return Status();
  }

  // close() of a log that replaces a file: swaps it in when it is durable and recorded a run;
  // otherwise the old file stays. `closed` is close()'s result so far.
  Status finish_replacement(Status closed) {
    const std::string temp = std::exchange(replaces_at_close, std::string());
    if (!closed.ok()) {
      return Status(closed.code(), closed.message() + " The file at " + quoted(path) +
                                       " was left as it was; this run's log is " + quoted(temp));
    }
    if (!run_begun) {
      // Nothing was recorded: the old file is worth more than an empty log.
      ::unlink(temp.c_str());
      return Status();
    }
    // Atomic: `path` is the old file until this instant, then the whole new log; a symbolic
    // link created there meanwhile is replaced, never followed.
    if (::rename(temp.c_str(), path.c_str()) != 0) {
      const int err = errno;
      return Status(StatusCode::kIoError, "cannot replace " + quoted(path) + " with this run's log: rename: " +
                                              errno_text(err) + ". The old file is untouched; this run's log is " +
                                              quoted(temp) + ". Fix: move it into place by hand");
    }
    fsync_directory(dir);
    return Status();
  }

  void sync_loop(std::chrono::milliseconds interval) {
    std::unique_lock lock(sync_mutex);
    while (!sync_wake.wait_for(lock, interval, [&] { return sync_stop; })) {
      lock.unlock();
      Status st = sync_map();
      lock.lock();
      if (!st.ok() && sync_error.ok()) sync_error = std::move(st);
    }
  }
};

ReplayLogWriter::ReplayLogWriter(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

ReplayLogWriter::~ReplayLogWriter() { close().ignore(); }

Result<std::unique_ptr<ReplayLogWriter>> ReplayLogWriter::create(const std::string& path,
                                                                 const ReplayLogOptions& options) {
  const std::uint64_t capacity = options.capacity_records;
  if (capacity == 0 || capacity > kReplayMaxCapacity)
    return Status(StatusCode::kInvalidArgument,
                  "cannot create " + quoted(path) + ": capacity of " + std::to_string(capacity) +
                      " records; it must be 1.." + std::to_string(kReplayMaxCapacity));
  if (options.sync_interval.count() < 0)
    return Status(StatusCode::kInvalidArgument,
                  "cannot create " + quoted(path) + ": negative sync_interval");
  // What is at `path` decides whether we may go on; lstat, so a link is seen as a link.
  struct stat existing {};
  bool existed = false;
  if (::lstat(path.c_str(), &existing) == 0) {
    existed = true;
    if (S_ISLNK(existing.st_mode))
      return Status(StatusCode::kFailedPrecondition,
                    "cannot create " + quoted(path) + ": it is a symbolic link, and a log is never written through "
                    "a link into another file. Fix: give the path of a new file (or the link's target itself)");
    if (!S_ISREG(existing.st_mode))
      return Status(StatusCode::kFailedPrecondition,
                    "cannot create " + quoted(path) + ": it exists and is not a regular file (a directory, FIFO, "
                    "device or socket). Fix: give the path of a new file");
    if (!options.replace_existing)
      return Status(StatusCode::kFailedPrecondition,
                    "cannot create " + quoted(path) + ": the file exists, and a new log never overwrites one. Fix: "
                    "remove it or pick another path, or ask to replace it (pkrt run --replay-log-replace, "
                    "ReplayLogOptions::replace_existing), which swaps it only once the new log is ready");
  } else if (errno != ENOENT) {
    const int err = errno;
    return Status(StatusCode::kIoError, "cannot create " + quoted(path) + ": lstat: " + errno_text(err) +
                                            ". Fix: check that the directory exists and is readable");
  }

  auto impl = std::make_unique<Impl>();
  impl->path = path;
  impl->capacity = capacity;
  impl->map_bytes = kReplayLogHeaderBytes + capacity * kReplayRecordBytes;
  // Built under a name of our own in the same directory (same filesystem: the rename below
  // is atomic), so that `path` shows either what was there or a complete empty log.
  const std::size_t slash = path.rfind('/');
  const std::string dir = slash == std::string::npos ? std::string(".") : path.substr(0, slash + 1);
  const std::string name = slash == std::string::npos ? path : path.substr(slash + 1);
  static std::atomic<std::uint64_t> temp_counter{0};
  // Relaxed: only needs a distinct value per call.
  const std::string temp = (slash == std::string::npos ? std::string() : dir) + "." + name + "." +
                           std::to_string(::getpid()) + "." +
                           std::to_string(temp_counter.fetch_add(1, std::memory_order_relaxed)) + ".tmp";

  auto fail = [&](const char* step, int err) {
    if (impl->map != nullptr) {
      ::munmap(impl->map, impl->map_bytes);
      impl->map = nullptr;
    }
    if (impl->fd >= 0) {
      ::close(impl->fd);
      impl->fd = -1;
      ::unlink(temp.c_str());  // ours alone; whatever is at `path` was never touched
    }
    return Status(StatusCode::kIoError,
                  "cannot create " + quoted(path) + " (" + std::to_string(impl->map_bytes) +
                      " bytes for " + std::to_string(capacity) + " records): " + step + ": " +
                      errno_text(err) +
                      ". Fix: check that the directory exists and is writable and that the "
                      "disk has room, or ask for fewer records (capacity_records)");
  };
  impl->fd = ::open(temp.c_str(), O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
  if (impl->fd < 0) return fail("open", errno);
  // Every block is allocated now: a full disk fails here, not as SIGBUS on a later store.
  if (const int err = ::posix_fallocate(impl->fd, 0, static_cast<off_t>(impl->map_bytes)))
    return fail("posix_fallocate", err);
  // MAP_POPULATE maps every page, but a shared file mapping populates them read-only (clean):
  // the first store to each page would still take a write fault (~1-5 us, measured as most
  // of an append's cost on a fresh log). Storing one zero per page (the file is all zeros)
  // takes those faults here, once, instead of in append().
  void* map = ::mmap(nullptr, impl->map_bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE,
                     impl->fd, 0);
  if (map == MAP_FAILED) return fail("mmap", errno);
  impl->map = static_cast<std::byte*>(map);
  const std::size_t page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
  for (std::size_t off = 0; off < impl->map_bytes; off += page)
    // Volatile: a store the compiler must emit (to a zero page it cannot see into); it
    // orders nothing and nobody else reads the map yet.
    *static_cast<volatile std::byte*>(impl->map + off) = std::byte{0};

  // A log is a valid (empty, run-less) log from the first moment it has its name.
  const MetadataBytes meta = encode_metadata(capacity, ReplayRunInfo{});
  std::memcpy(impl->map, meta.data(), meta.size());
  impl->publish_counters(kStateOpen);

  // A file already at `path` (or one that appears there meanwhile) that may be replaced stays
  // until close(): a run that fails before it records anything, or is killed, leaves it as it
  // was, and the new log is at `temp`.
  bool deferred = options.replace_existing && existed;
  if (!deferred && !rename_no_replace(temp, path)) {
    const int err = errno;
    if (err != EEXIST) return fail("rename", err);
    if (!options.replace_existing) {
      fail("rename", err).ignore();
      return Status(StatusCode::kFailedPrecondition,
                    "cannot create " + quoted(path) + ": a file appeared there while the log was being made, and a "
                    "new log never overwrites one. Fix: pick another path");
    }
    deferred = true;
  }
  impl->dir = dir;
  if (deferred) {
    impl->replaces_at_close = temp;
  } else {
    // The name is durable too: a crash right after create() still leaves the log findable.
    fsync_directory(dir);
  }

  if (options.sync_interval.count() > 0)
    impl->sync_thread = std::thread(&Impl::sync_loop, impl.get(), options.sync_interval);
  return std::unique_ptr<ReplayLogWriter>(new ReplayLogWriter(std::move(impl)));
}

Status ReplayLogWriter::begin_run(const ReplayRunInfo& info) {
  auto has_nul = [](const std::string& s) { return s.find('\0') != std::string::npos; };
  if (info.app.empty() || info.app.size() > kReplayMaxAppName || has_nul(info.app) ||
      info.params.size() > kReplayMaxParamsBytes || info.backend.size() >= kBackendField ||
      has_nul(info.backend) || info.pkrt_version.size() >= kPkrtVersionField ||
      has_nul(info.pkrt_version))
    return Status(StatusCode::kInvalidArgument,
                  "cannot record the run of '" + info.app + "' in " + quoted(impl_->path) +
                      ": app name " + std::to_string(info.app.size()) + " bytes, params " +
                      std::to_string(info.params.size()) + " bytes; the log holds an app name "
                      "of 1.." + std::to_string(kReplayMaxAppName) + " bytes, params of at most " +
                      std::to_string(kReplayMaxParamsBytes) + " bytes, backend and version "
                      "strings of at most 15 bytes, none with a NUL. Fix: shorten them");
  std::lock_guard lock(impl_->mutex);
  if (impl_->map == nullptr || impl_->run_begun || impl_->written > 0)
    return Status(StatusCode::kFailedPrecondition,
                  "begin_run on " + quoted(impl_->path) +
                      (impl_->map == nullptr ? " after close()" : " after the run began") +
                      ": a log records exactly one run. Fix: create a new log for each run");
  const MetadataBytes meta = encode_metadata(impl_->capacity, info);
  std::memcpy(impl_->map, meta.data(), meta.size());
  impl_->run_begun = true;
  return Status();
}

void ReplayLogWriter::append(ReplayDirection direction, std::uint32_t block,
                             std::uint64_t epoch_observed, std::uint64_t epoch_applied,
                             const Slot& slot) {
  ReplayRecord record{};
  record.epoch_observed = epoch_observed;
  record.epoch_applied = epoch_applied;
  record.block = block;
  record.direction = static_cast<std::uint8_t>(direction);
  record.slot = slot;
  append_batch(std::span<ReplayRecord>(&record, 1));
}

void ReplayLogWriter::append_batch(std::span<ReplayRecord> records) {
  if (records.empty()) return;
  static const host::NvtxName kAppendName("replay append");
  const host::NvtxRange range(kAppendName);
  std::lock_guard lock(impl_->mutex);
  if (impl_->map == nullptr) return;  // closed: documented to drop
  const std::uint64_t now = steady_ns();
  for (std::size_t done = 0; done < records.size();) {
    const std::size_t n = std::min(records.size() - done, kReplayMaxBatch);
    ReplayRecord* batch = records.data() + done;
    // The header fields first, for the whole batch: by the time a record is CRC'd below its
    // stores have left the store buffer, so the CRC's wide loads do not stall on them.
    for (std::size_t i = 0; i < n; ++i) {
      batch[i].seq = impl_->written + i;
      batch[i].time_ns = now;
      batch[i].crc = 0;
    }
    std::byte* const slots = impl_->map + kReplayLogHeaderBytes;
#if PKRT_RECORD_CRC_CLMUL
    if (detail::record_crc_path() == detail::RecordCrcPath::kZmm) {
      seal_and_stream_records_zmm(slots, impl_->capacity, batch, n);
    } else
#endif
    {
      for (std::size_t i = 0; i < n; ++i) {
        batch[i].crc = detail::crc32_fixed128(&batch[i]);  // = replay_record_crc: the field is zero
        stream_record(slots + (batch[i].seq % impl_->capacity) * kReplayRecordBytes, batch[i]);
      }
    }
    order_streamed_records();
    impl_->written += n;
    impl_->publish_counters(kStateOpen);
    done += n;
  }
}

void ReplayLogWriter::set_complete_epoch(std::uint64_t epoch) {
  std::lock_guard lock(impl_->mutex);
  if (impl_->map == nullptr || epoch <= impl_->complete_epoch) return;
  impl_->complete_epoch = epoch;
  impl_->publish_counters(kStateOpen);
}

Status ReplayLogWriter::sync() { return impl_->sync_map(); }

Status ReplayLogWriter::close() {
  if (impl_->sync_thread.joinable()) {
    {
      std::lock_guard lock(impl_->sync_mutex);
      impl_->sync_stop = true;
    }
    impl_->sync_wake.notify_one();
    impl_->sync_thread.join();
  }
  std::lock_guard lock(impl_->mutex);
  if (impl_->map == nullptr) return Status();
  // Marked closed before the msync so that the mark is durable with the records.
  impl_->publish_counters(kStateClosed);
  const int msync_error = ::msync(impl_->map, impl_->map_bytes, MS_SYNC) != 0 ? errno : 0;
  ::munmap(impl_->map, impl_->map_bytes);
  impl_->map = nullptr;
  const int close_error = ::close(impl_->fd) != 0 ? errno : 0;
  impl_->fd = -1;
  Status result;
  if (msync_error != 0)
    result = Status(StatusCode::kIoError, "msync of " + quoted(impl_->path) + " at close failed: " +
                                              errno_text(msync_error) +
                                              ". The log may be incomplete after a power loss. "
                                              "Fix: check the disk (dmesg) and free space");
  else if (close_error != 0)
    result = Status(StatusCode::kIoError, "close of " + quoted(impl_->path) + " failed: " +
                                              errno_text(close_error) +
                                              ". Fix: check the disk (dmesg)");
  if (result.ok() && !impl_->sync_error.ok()) result = impl_->sync_error;
  if (!impl_->replaces_at_close.empty()) result = impl_->finish_replacement(std::move(result));
  return result;
}

std::uint64_t ReplayLogWriter::written() const {
  std::lock_guard lock(impl_->mutex);
  return impl_->written;
}

std::uint64_t ReplayLogWriter::capacity() const { return impl_->capacity; }

const std::string& ReplayLogWriter::path() const { return impl_->path; }

// ---- Reader ---------------------------------------------------------------------------------

namespace {

Status not_a_log(const std::string& name, const std::string& what) {
  return Status(StatusCode::kCorruptData,
                quoted(name) + ": " + what +
                    ". Fix: pass a replay log written by pkrt (a run recorded with a replay log)");
}

Status metadata_damaged(const std::string& name, const std::string& what) {
  return Status(StatusCode::kCorruptData,
                quoted(name) + ": " + what +
                    ": the run metadata is damaged, so the run cannot be recreated from this log. "
                    "Fix: use an intact copy of the log, or record the run again");
}

std::uint64_t record_offset(std::uint64_t seq, std::uint64_t capacity) {
  return kReplayLogHeaderBytes + (seq % capacity) * kReplayRecordBytes;
}

// Why the record for `seq` (whose slot lies inside the file) cannot be used; nothing when
// it is intact, and then it is in `out`.
std::optional<std::string> record_problem(std::span<const std::byte> file, std::uint64_t capacity,
                                          std::uint64_t seq, ReplayRecord& out) {
  std::memcpy(&out, file.data() + record_offset(seq, capacity), sizeof out);
  const std::uint32_t stored = out.crc;
  out.crc = 0;  // replay_record_crc's definition, without another copy of the record
  const bool intact = detail::crc32_fixed128(&out) == stored;
  out.crc = stored;
  if (!intact) return std::string("CRC mismatch (torn or corrupted)");
  if (out.seq != seq)
    return "it holds record " + std::to_string(out.seq) + " (stale, or corrupted)";
  const bool reserved_zero =
      std::all_of(std::begin(out.reserved), std::end(out.reserved), [](auto b) { return b == 0; });
  if ((out.direction != static_cast<std::uint8_t>(ReplayDirection::kH2K) &&
       out.direction != static_cast<std::uint8_t>(ReplayDirection::kK2H)) ||
      !reserved_zero)
    return std::string("unknown direction or nonzero reserved bytes (written by a newer pkrt?)");
  return std::nullopt;
}

void append_note(std::string& note, const std::string& more) {
  note += note.empty() ? more : "; " + more;
}

Result<ReplayLog> parse_log(std::span<const std::byte> file, const std::string& name) {
  const std::byte* p = file.data();
  if (file.size() < sizeof kMagic || std::memcmp(p, kMagic, sizeof kMagic) != 0)
    return not_a_log(name, "no PKRTRLOG magic at byte 0 (" + std::to_string(file.size()) +
                               "-byte file): not a pkrt replay log");
  if (file.size() < kReplayLogHeaderBytes)
    return metadata_damaged(name, "the file ends at byte " + std::to_string(file.size()) +
                                      ", inside the 4096-byte header (truncated)");
  const auto version = load_at<std::uint32_t>(p, kVersionAt);
  if (version < kReplayLogOldestVersion || version > kReplayLogVersion)
    return Status(StatusCode::kCorruptData,
                  quoted(name) + ": format version " + std::to_string(version) + ", this pkrt reads versions " +
                      std::to_string(kReplayLogOldestVersion) + ".." + std::to_string(kReplayLogVersion) +
                      ". Fix: read it with a pkrt that supports that version");
  if (load_at<std::uint32_t>(p, kMetadataCrcAt) != crc32(p, kMetadataCrcAt))
    return metadata_damaged(name, "metadata CRC mismatch (bytes 0.." +
                                      std::to_string(kMetadataCrcAt - 1) + " damaged)");

  // The CRC matched: what follows tells a log pkrt wrote from one it would not write.
  ReplayLog log;
  log.version = version;
  log.capacity = load_at<std::uint64_t>(p, kCapacityAt);
  if (load_at<std::uint32_t>(p, kHeaderBytesAt) != kReplayLogHeaderBytes ||
      load_at<std::uint32_t>(p, kRecordBytesAt) != kReplayRecordBytes || log.capacity == 0 ||
      log.capacity > kReplayMaxCapacity)
    return metadata_damaged(name, "header size, record size or capacity (" +
                                      std::to_string(log.capacity) + ") out of range");
  ReplayRunInfo& info = log.info;
  const auto app = load_string(p, kAppAt, kAppField);
  const auto backend = load_string(p, kBackendAt, kBackendField);
  const auto pkrt_version = load_string(p, kPkrtVersionAt, kPkrtVersionField);
  const auto params_bytes = load_at<std::uint32_t>(p, kParamsBytesAt);
  if (!app || !backend || !pkrt_version || params_bytes > kReplayMaxParamsBytes)
    return metadata_damaged(name, "unterminated string or params length " +
                                      std::to_string(params_bytes) + " > " +
                                      std::to_string(kReplayMaxParamsBytes));
  info.app = *app;
  info.backend = *backend;
  info.pkrt_version = *pkrt_version;
  info.params.assign(p + kParamsAt, p + kParamsAt + params_bytes);
  info.num_actors = load_at<std::uint32_t>(p, kNumActorsAt);
  info.blocks = load_at<std::uint32_t>(p, kBlocksAt);
  info.threads_per_block = load_at<std::uint32_t>(p, kThreadsPerBlockAt);
  info.ring_capacity = load_at<std::uint32_t>(p, kRingCapacityAt);
  info.digest_period = load_at<std::uint32_t>(p, kDigestPeriodAt);
  info.chaos = load_at<std::uint32_t>(p, kChaosAt) != 0;
  info.chaos_seed = load_at<std::uint64_t>(p, kChaosSeedAt);
  info.start_epoch = load_at<std::uint64_t>(p, kStartEpochAt);
  info.config_hash = load_at<std::uint64_t>(p, kConfigHashAt);
  info.created_unix_ns = load_at<std::uint64_t>(p, kCreatedAt);
  const auto k2k_delay = load_at<std::uint32_t>(p, kK2KDelayAt);
  if (k2k_delay == 1 || k2k_delay > kMaxK2KDelay)
    return metadata_damaged(name, "K2K delay field " + std::to_string(k2k_delay) + " (0 stands for 1; at most " +
                                      std::to_string(kMaxK2KDelay) + ")");
  info.k2k_delay = k2k_delay == 0 ? 1 : k2k_delay;
  info.global_actors = load_at<std::uint32_t>(p, kGlobalActorsAt);
  // Encoding what was decoded must give the same bytes: this rejects nonzero padding,
  // reserved bytes and non-0/1 flags in one place.
  if (std::memcmp(encode_metadata(log.capacity, info, version).data(), p, kMetadataBytes) != 0)
    return not_a_log(name, "run metadata has nonzero padding or reserved bytes: written by a "
                           "newer pkrt without a version bump, or not by pkrt");

  const std::uint64_t slots_in_file =
      std::min(log.capacity, (file.size() - kReplayLogHeaderBytes) / kReplayRecordBytes);
  const auto counters_crc = load_at<std::uint32_t>(p, kCountersCrcAt);
  log.written = load_at<std::uint64_t>(p, kWrittenAt);
  log.complete_epoch = load_at<std::uint64_t>(p, kCompleteEpochAt);
  const auto state = load_at<std::uint32_t>(p, kStateAt);
  if (counters_crc != crc32(p + kCountersAt, kCountersCovered) ||
      log.written >= kMaxPlausibleCount || log.complete_epoch >= kMaxPlausibleCount ||
      (state != kStateOpen && state != kStateClosed)) {
    // The newest record with a valid CRC in its own slot gives the count back.
    log.counters_recovered = true;
    log.written = 0;
    for (std::uint64_t slot = 0; slot < slots_in_file; ++slot) {
      ReplayRecord r;
      std::memcpy(&r, p + kReplayLogHeaderBytes + slot * kReplayRecordBytes, sizeof r);
      if (r.crc == replay_record_crc(r) && r.seq % log.capacity == slot &&
          r.seq < kMaxPlausibleCount)
        log.written = std::max(log.written, r.seq + 1);
    }
    append_note(log.stop_note, "counters block damaged (bytes " + std::to_string(kCountersAt) +
                                   ".." + std::to_string(kCountersCrcAt + 3) +
                                   "); records written (" + std::to_string(log.written) +
                                   ") recovered by scanning the records");
  } else {
    log.closed_cleanly = state == kStateClosed;
  }

  log.wrapped = log.written > log.capacity;
  std::uint64_t seq = log.wrapped ? log.written - log.capacity : 0;
  auto in_file = [&](std::uint64_t s) { return s % log.capacity < slots_in_file; };
  ReplayRecord record;
  // Once the log has wrapped, or is one batch from wrapping, the oldest counted records'
  // slots are the ones the next batch overwrites: a writer stopped mid-batch leaves some of
  // them torn, or already replaced.
  if (!log.closed_cleanly && log.written + kReplayMaxBatch > log.capacity) {
    std::uint64_t skipped = 0;
    std::string first_problem;
    while (skipped < kReplayMaxBatch && seq < log.written && in_file(seq)) {
      const auto problem = record_problem(file, log.capacity, seq, record);
      if (!problem) break;
      if (skipped == 0) first_problem = *problem;
      ++skipped;
      ++seq;
    }
    if (skipped > 0) {
      const std::uint64_t from = seq - skipped;
      append_note(log.stop_note, (skipped == 1 ? "record " + std::to_string(from)
                                               : "records " + std::to_string(from) + ".." + std::to_string(seq - 1)) +
                                     " (the oldest, from offset " + std::to_string(record_offset(from, log.capacity)) +
                                     "): " + first_problem + "; the writer stopped while overwriting " +
                                     (skipped == 1 ? "it" : "them") + ": skipped");
    }
  }
  log.first_seq = seq;
  log.records.reserve(static_cast<std::size_t>(std::min(log.written - seq, slots_in_file)));
  for (; seq < log.written; ++seq) {
    const std::optional<std::string> problem =
        in_file(seq) ? record_problem(file, log.capacity, seq, record)
                     : "the file ends at byte " + std::to_string(file.size()) + " (truncated)";
    if (problem) {
      append_note(log.stop_note, "record " + std::to_string(seq) + " at offset " +
                                     std::to_string(record_offset(seq, log.capacity)) + ": " +
                                     *problem + "; " + std::to_string(log.records.size()) +
                                     " records before it are intact");
      break;
    }
    log.records.push_back(record);
  }
  // complete_epoch promises K2H events that are in the log; when records are missing (the
  // log ended early or the counters were lost), only the newest intact record's promise holds.
  if (log.counters_recovered || seq < log.written) {
    const std::uint64_t observed = log.records.empty() ? 0 : log.records.back().epoch_observed;
    log.complete_epoch =
        log.counters_recovered ? observed : std::min(log.complete_epoch, observed);
  }
  return log;
}

}  // namespace

Result<ReplayLog> parse_replay_log(std::span<const std::byte> bytes) {
  return parse_log(bytes, "(in memory)");
}

Result<ReplayLog> read_replay_log(const std::string& path) {
  std::vector<std::byte> bytes;
  // Never more than the largest log there can be, whatever the file's size.
  const host::FileReadFailure failed =
      host::read_file_bounded(path.c_str(), kReplayLogHeaderBytes + kReplayMaxCapacity * kReplayRecordBytes, bytes);
  if (failed.step != nullptr) {
    return Status(StatusCode::kIoError, "cannot read " + quoted(path) + ": " + failed.step +
                                            (failed.error != 0 ? ": " + errno_text(failed.error) : std::string()) +
                                            ". Fix: check the path and its permissions");
  }
  return parse_log(bytes, path);
}

}  // namespace pkrt
