// ReplayLog: the replay log round-trips, every truncation and damaged byte ends the log at
// the damage (or is provably harmless), a SIGKILLed writer leaves only intact counted
// records, and concurrent appends get one contiguous sequence. Offsets below are the ones
// docs/replay-log-format.md specifies.
#include <pkrt/crc32.hpp>
#include <pkrt/k2k_log.hpp>
#include <pkrt/replay_log.hpp>

#include "replay/record_crc.hpp"

#include <gtest/gtest.h>

#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <random>
#include <thread>

namespace pkrt {
namespace {

constexpr std::size_t kHeader = kReplayLogHeaderBytes;
constexpr std::size_t kRecord = kReplayRecordBytes;
constexpr std::size_t kMetadataEnd = 2244;  // magic .. metadata CRC
constexpr std::size_t kCountersBegin = 2304;
constexpr std::size_t kCountersEnd = 2328;

void print_seed(std::uint64_t seed) {
  std::printf("[ seed ] %llu\n", static_cast<unsigned long long>(seed));
}

// A fresh directory under the system temp dir, removed with everything in it.
class TempDir {
 public:
  TempDir() {
    static std::atomic<int> next{0};
    const auto* test = ::testing::UnitTest::GetInstance()->current_test_info();
    path_ = std::filesystem::temp_directory_path() /
            ("pkrt_replaylog_" + std::to_string(::getpid()) + "_" + std::to_string(next++) + "_" +
             test->name());
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  std::string file(const std::string& name) const { return (path_ / name).string(); }

 private:
  std::filesystem::path path_;
};

ReplayRunInfo run_info() {
  ReplayRunInfo info;
  info.app = "heat2d";
  info.params = {std::byte{1}, std::byte{0}, std::byte{0xfe}, std::byte{7}};
  info.backend = "cpu";
  info.num_actors = 16;
  info.blocks = 4;
  info.threads_per_block = 1;
  info.ring_capacity = 256;
  info.digest_period = 10;
  info.chaos = true;
  info.chaos_seed = 0x1234567890abcdefull;
  info.start_epoch = 300;
  info.config_hash = 0xfeedfacecafebeefull;
  info.pkrt_version = "0.1.0";
  info.created_unix_ns = 1700000000123456789ull;
  return info;
}

// What record `seq` of a test log holds: a function of (seed, seq) alone, so that any
// reader can check a record without knowing how it was written.
struct Expected {
  ReplayDirection direction;
  std::uint32_t block;
  std::uint64_t epoch_observed;
  std::uint64_t epoch_applied;
  Slot slot;
};

// splitmix64: cheap enough that a writer killed at a random moment is usually inside append().
std::uint64_t mix(std::uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

Expected expected_record(std::uint64_t seed, std::uint64_t seq) {
  std::uint64_t state = mix(seed) ^ seq;
  auto next = [&] { return state = mix(state); };
  Expected e{};
  e.direction = (next() & 1) ? ReplayDirection::kH2K : ReplayDirection::kK2H;
  e.block = static_cast<std::uint32_t>(next() % 8);
  e.epoch_observed = seq / 3;
  e.epoch_applied = next() % 100;
  e.slot.header.seq = seq + 1;
  e.slot.header.opcode = static_cast<std::uint16_t>(kUserOpcodeBase + next() % 16);
  e.slot.header.flags = kFlagNone;
  e.slot.header.actor = static_cast<std::uint32_t>(next() % 16);
  e.slot.payload.epoch = e.epoch_applied;
  e.slot.payload.request = next();
  for (std::size_t i = 0; i < kEnvelopeDataBytes; i += 8) {
    const std::uint64_t word = next();
    std::memcpy(e.slot.payload.data + i, &word, 8);
  }
  return e;
}

void append_expected(ReplayLogWriter& writer, std::uint64_t seed, std::uint64_t seq) {
  const Expected e = expected_record(seed, seq);
  writer.append(e.direction, e.block, e.epoch_observed, e.epoch_applied, e.slot);
}

// Records first .. first + n - 1 as one append_batch.
void append_expected_batch(ReplayLogWriter& writer, std::uint64_t seed, std::uint64_t first, std::size_t n) {
  std::vector<ReplayRecord> batch(n);
  for (std::size_t i = 0; i < n; ++i) {
    const Expected e = expected_record(seed, first + i);
    batch[i].direction = static_cast<std::uint8_t>(e.direction);
    batch[i].block = e.block;
    batch[i].epoch_observed = e.epoch_observed;
    batch[i].epoch_applied = e.epoch_applied;
    batch[i].slot = e.slot;
  }
  writer.append_batch(batch);
}

// True when `r` is exactly record r.seq of the log written with `seed`.
::testing::AssertionResult is_expected(const ReplayRecord& r, std::uint64_t seed) {
  const Expected e = expected_record(seed, r.seq);
  if (r.crc != replay_record_crc(r))
    return ::testing::AssertionFailure() << "record " << r.seq << ": bad CRC";
  if (r.direction != static_cast<std::uint8_t>(e.direction) || r.block != e.block ||
      r.epoch_observed != e.epoch_observed || r.epoch_applied != e.epoch_applied ||
      std::memcmp(&r.slot, &e.slot, sizeof(Slot)) != 0)
    return ::testing::AssertionFailure() << "record " << r.seq << " differs from what was appended";
  return ::testing::AssertionSuccess();
}

// Writes a closed log of `records` records; returns its path.
std::string write_log(const TempDir& dir, std::uint64_t capacity, std::uint64_t records,
                      std::uint64_t seed) {
  const std::string path = dir.file("run.pkrl");
  auto writer = ReplayLogWriter::create(path, {.capacity_records = capacity});
  EXPECT_TRUE(writer.ok()) << writer.status().to_string();
  if (!writer.ok()) return path;
  EXPECT_TRUE(writer.value()->begin_run(run_info()).ok());
  for (std::uint64_t s = 0; s < records; ++s) append_expected(*writer.value(), seed, s);
  writer.value()->set_complete_epoch(records / 3);
  EXPECT_TRUE(writer.value()->close().ok());
  return path;
}

std::vector<std::byte> file_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  const std::vector<char> chars((std::istreambuf_iterator<char>(in)),
                                std::istreambuf_iterator<char>());
  std::vector<std::byte> bytes(chars.size());
  std::memcpy(bytes.data(), chars.data(), chars.size());
  return bytes;
}

void expect_same_info(const ReplayRunInfo& a, const ReplayRunInfo& b) {
  EXPECT_EQ(a.app, b.app);
  EXPECT_EQ(a.params, b.params);
  EXPECT_EQ(a.backend, b.backend);
  EXPECT_EQ(a.num_actors, b.num_actors);
  EXPECT_EQ(a.blocks, b.blocks);
  EXPECT_EQ(a.threads_per_block, b.threads_per_block);
  EXPECT_EQ(a.ring_capacity, b.ring_capacity);
  EXPECT_EQ(a.digest_period, b.digest_period);
  EXPECT_EQ(a.chaos, b.chaos);
  EXPECT_EQ(a.chaos_seed, b.chaos_seed);
  EXPECT_EQ(a.start_epoch, b.start_epoch);
  EXPECT_EQ(a.config_hash, b.config_hash);
  EXPECT_EQ(a.pkrt_version, b.pkrt_version);
  EXPECT_EQ(a.created_unix_ns, b.created_unix_ns);
}

TEST(ReplayLog, RoundTripKeepsEveryRecordAndTheRunMetadata) {
  const std::uint64_t seed = 101;
  print_seed(seed);
  TempDir dir;
  const std::string path = dir.file("run.pkrl");
  ReplayRunInfo info = run_info();
  info.app = std::string(kReplayMaxAppName, 'a');  // the longest accepted values
  info.params.resize(kReplayMaxParamsBytes);
  for (std::size_t i = 0; i < info.params.size(); ++i)
    info.params[i] = static_cast<std::byte>(i * 7);
  {
    auto writer = ReplayLogWriter::create(path, {.capacity_records = 64});
    ASSERT_TRUE(writer.ok()) << writer.status().to_string();
    ASSERT_TRUE(writer.value()->begin_run(info).ok());
    for (std::uint64_t s = 0; s < 50; ++s) append_expected(*writer.value(), seed, s);
    writer.value()->set_complete_epoch(16);
    EXPECT_EQ(writer.value()->written(), 50u);
    EXPECT_EQ(writer.value()->capacity(), 64u);
    EXPECT_EQ(writer.value()->path(), path);
    ASSERT_TRUE(writer.value()->sync().ok());
    ASSERT_TRUE(writer.value()->close().ok());
  }
  EXPECT_EQ(std::filesystem::file_size(path), kHeader + 64 * kRecord);
  auto log = read_replay_log(path);
  ASSERT_TRUE(log.ok()) << log.status().to_string();
  expect_same_info(log->info, info);
  EXPECT_EQ(log->capacity, 64u);
  EXPECT_EQ(log->written, 50u);
  EXPECT_EQ(log->complete_epoch, 16u);
  EXPECT_TRUE(log->closed_cleanly);
  EXPECT_FALSE(log->wrapped);
  EXPECT_FALSE(log->counters_recovered);
  EXPECT_EQ(log->first_seq, 0u);
  EXPECT_EQ(log->stop_note, "");
  ASSERT_EQ(log->records.size(), 50u);
  for (std::uint64_t s = 0; s < 50; ++s) {
    EXPECT_EQ(log->records[s].seq, s);
    EXPECT_TRUE(is_expected(log->records[s], seed));
    if (s > 0) {
      EXPECT_GE(log->records[s].time_ns, log->records[s - 1].time_ns);
    }
  }
}

TEST(ReplayLog, TruncationAtEveryRecordBoundaryAndMidRecordReturnsTheIntactPrefix) {
  const std::uint64_t seed = 202;
  print_seed(seed);
  TempDir dir;
  const auto full = file_bytes(write_log(dir, 16, 12, seed));
  ASSERT_EQ(full.size(), kHeader + 16 * kRecord);
  for (std::size_t k = 0; k <= 12; ++k) {
    for (std::size_t into : {0, 1, 60, 64, 127}) {
      const std::size_t size = kHeader + k * kRecord + into;
      SCOPED_TRACE("file cut to " + std::to_string(size) + " bytes");
      auto log = parse_replay_log(std::span(full).first(size));
      ASSERT_TRUE(log.ok()) << log.status().to_string();
      ASSERT_EQ(log->records.size(), k);
      for (std::size_t s = 0; s < k; ++s) EXPECT_TRUE(is_expected(log->records[s], seed));
      EXPECT_EQ(log->written, 12u);
      if (k < 12) {
        EXPECT_NE(log->stop_note.find("record " + std::to_string(k) + " at offset " +
                                      std::to_string(kHeader + k * kRecord)),
                  std::string::npos)
            << log->stop_note;
        EXPECT_NE(log->stop_note.find("truncated"), std::string::npos) << log->stop_note;
        EXPECT_LE(log->complete_epoch,
                  k == 0 ? std::uint64_t{0} : log->records.back().epoch_observed);
      } else {
        EXPECT_EQ(log->stop_note, "");
      }
    }
  }
}

TEST(ReplayLog, TruncationInsideTheHeaderIsCorruptDataNotACrash) {
  TempDir dir;
  const auto full = file_bytes(write_log(dir, 8, 3, 1));
  for (std::size_t size : {0, 7, 8, 100, 2243, 2244, 2327, 4095}) {
    auto log = parse_replay_log(std::span(full).first(size));
    ASSERT_FALSE(log.ok()) << size;
    EXPECT_EQ(log.status().code(), StatusCode::kCorruptData) << size;
  }
}

TEST(ReplayLog, EverySingleByteFlipInRecordsEndsTheLogAtTheDamagedRecord) {
  const std::uint64_t seed = 303;
  print_seed(seed);
  std::mt19937_64 rng(seed);
  TempDir dir;
  const auto good = file_bytes(write_log(dir, 8, 6, seed));
  for (std::size_t at = kHeader; at < kHeader + 6 * kRecord; ++at) {
    auto bad = good;
    bad[at] ^= static_cast<std::byte>(1 + rng() % 255);
    const std::size_t damaged = (at - kHeader) / kRecord;
    auto log = parse_replay_log(bad);
    ASSERT_TRUE(log.ok()) << "byte " << at << ": " << log.status().to_string();
    ASSERT_EQ(log->records.size(), damaged) << "byte " << at;
    EXPECT_NE(log->stop_note.find("record " + std::to_string(damaged) + " at offset"),
              std::string::npos)
        << "byte " << at << ": " << log->stop_note;
    EXPECT_NE(log->stop_note.find(std::to_string(damaged) + " records before it are intact"),
              std::string::npos)
        << log->stop_note;
  }
}

TEST(ReplayLog, EverySingleByteFlipInTheHeaderIsDetectedOrHarmless) {
  const std::uint64_t seed = 404;
  print_seed(seed);
  std::mt19937_64 rng(seed);
  TempDir dir;
  const auto good = file_bytes(write_log(dir, 8, 6, seed));
  auto intact = parse_replay_log(good);
  ASSERT_TRUE(intact.ok());
  for (std::size_t at = 0; at < kHeader; ++at) {
    auto bad = good;
    bad[at] ^= static_cast<std::byte>(1 + rng() % 255);
    auto log = parse_replay_log(bad);
    SCOPED_TRACE("byte " + std::to_string(at));
    if (at < kMetadataEnd) {
      ASSERT_FALSE(log.ok());
      EXPECT_EQ(log.status().code(), StatusCode::kCorruptData);
      continue;
    }
    ASSERT_TRUE(log.ok()) << log.status().to_string();
    ASSERT_EQ(log->records.size(), 6u);
    for (const auto& r : log->records) EXPECT_TRUE(is_expected(r, seed));
    EXPECT_EQ(log->written, 6u);
    if (at >= kCountersBegin && at < kCountersEnd) {
      EXPECT_TRUE(log->counters_recovered);
      EXPECT_FALSE(log->closed_cleanly);
      EXPECT_NE(log->stop_note.find("recovered by scanning"), std::string::npos);
    } else {
      EXPECT_FALSE(log->counters_recovered);
      EXPECT_TRUE(log->closed_cleanly);
      EXPECT_EQ(log->complete_epoch, intact->complete_epoch);
      EXPECT_EQ(log->stop_note, "");
    }
  }
}

TEST(ReplayLog, DamagedRunMetadataSaysTheRunCannotBeRecreated) {
  TempDir dir;
  const std::string path = write_log(dir, 8, 2, 5);
  auto bytes = file_bytes(path);
  bytes[40] ^= std::byte{1};  // inside the app name
  std::ofstream(path, std::ios::binary | std::ios::trunc)
      .write(reinterpret_cast<const char*>(bytes.data()),
             static_cast<std::streamsize>(bytes.size()));
  auto log = read_replay_log(path);
  ASSERT_FALSE(log.ok());
  EXPECT_EQ(log.status().code(), StatusCode::kCorruptData);
  const std::string& message = log.status().message();
  EXPECT_NE(message.find(path), std::string::npos) << message;
  EXPECT_NE(message.find("metadata CRC mismatch (bytes 0..2239"), std::string::npos) << message;
  EXPECT_NE(message.find("cannot be recreated"), std::string::npos) << message;
}

TEST(ReplayLog, WrapAroundKeepsTheNewestRecordsAndSaysSo) {
  const std::uint64_t seed = 505;
  print_seed(seed);
  TempDir dir;
  auto log = read_replay_log(write_log(dir, 8, 29, seed));
  ASSERT_TRUE(log.ok()) << log.status().to_string();
  EXPECT_TRUE(log->wrapped);
  EXPECT_EQ(log->written, 29u);
  EXPECT_EQ(log->first_seq, 21u);
  EXPECT_EQ(log->stop_note, "");
  ASSERT_EQ(log->records.size(), 8u);
  for (std::uint64_t i = 0; i < 8; ++i) {
    EXPECT_EQ(log->records[i].seq, 21 + i);
    EXPECT_TRUE(is_expected(log->records[i], seed));
  }
}

TEST(ReplayLog, ALiveLogReadsAsOpenWithEveryCountedRecord) {
  const std::uint64_t seed = 606;
  print_seed(seed);
  TempDir dir;
  const std::string path = dir.file("live.pkrl");
  auto writer = ReplayLogWriter::create(path, {.capacity_records = 32});
  ASSERT_TRUE(writer.ok());
  ASSERT_TRUE(writer.value()->begin_run(run_info()).ok());
  for (std::uint64_t s = 0; s < 20; ++s) append_expected(*writer.value(), seed, s);
  writer.value()->set_complete_epoch(5);
  auto log = read_replay_log(path);  // no sync: a reader sees the page cache
  ASSERT_TRUE(log.ok()) << log.status().to_string();
  EXPECT_FALSE(log->closed_cleanly);
  EXPECT_EQ(log->written, 20u);
  EXPECT_EQ(log->complete_epoch, 5u);
  EXPECT_EQ(log->records.size(), 20u);
  EXPECT_EQ(log->stop_note, "");
  expect_same_info(log->info, run_info());
}

TEST(ReplayLog, ATornOldestRecordOfAnUnclosedWrappedLogIsSkipped) {
  const std::uint64_t seed = 707;
  print_seed(seed);
  TempDir dir;
  const std::string path = dir.file("torn.pkrl");
  auto writer = ReplayLogWriter::create(path, {.capacity_records = 8});
  ASSERT_TRUE(writer.ok());
  ASSERT_TRUE(writer.value()->begin_run(run_info()).ok());
  for (std::uint64_t s = 0; s < 20; ++s) append_expected(*writer.value(), seed, s);
  auto bytes = file_bytes(path);  // as a SIGKILL during append 20 would leave it:
  bytes[kHeader + (12 % 8) * kRecord + 70] ^= std::byte{0x55};  // slot of 12 half rewritten
  auto log = parse_replay_log(bytes);
  ASSERT_TRUE(log.ok()) << log.status().to_string();
  EXPECT_EQ(log->first_seq, 13u);
  ASSERT_EQ(log->records.size(), 7u);
  for (const auto& r : log->records) EXPECT_TRUE(is_expected(r, seed));
  EXPECT_NE(log->stop_note.find("record 12 (the oldest"), std::string::npos) << log->stop_note;
}

// Forks a child that creates a log of `capacity` records at `path` and runs `append_forever`
// on it, SIGKILLs it after a seeded delay, then checks the log: its metadata, every readable
// record intact and in sequence up to the count, and at most `max_lost` of the oldest lost.
void kill_writer_and_check(const std::string& path, std::uint64_t capacity, std::uint64_t seed,
                           std::mt19937_64& rng, std::uint64_t max_lost, int round,
                           const std::function<void(ReplayLogWriter&)>& append_forever) {
  int ready[2];
  ASSERT_EQ(::pipe(ready), 0);
  // Every round writes the same path, fresh: a replacing writer would keep the previous
  // round's log there until it closes, which a killed one never does.
  std::filesystem::remove(path);
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    ::close(ready[0]);
    auto writer = ReplayLogWriter::create(path, {.capacity_records = capacity});
    if (!writer.ok() || !writer.value()->begin_run(run_info()).ok()) ::_exit(3);
    const char byte = 'r';
    if (::write(ready[1], &byte, 1) != 1) ::_exit(4);
    append_forever(*writer.value());
    ::_exit(5);
  }
  ::close(ready[1]);
  char byte = 0;
  ASSERT_EQ(::read(ready[0], &byte, 1), 1) << "the writer failed to start";
  ::close(ready[0]);
  ::usleep(static_cast<useconds_t>(rng() % 20000));
  ::kill(child, SIGKILL);
  int status = 0;
  ::waitpid(child, &status, 0);
  ASSERT_TRUE(WIFSIGNALED(status)) << "the writer stopped on its own (status " << status << ")";

  auto log = read_replay_log(path);
  ASSERT_TRUE(log.ok()) << log.status().to_string();
  EXPECT_FALSE(log->closed_cleanly);
  expect_same_info(log->info, run_info());
  const std::uint64_t readable = std::min(log->written, capacity);
  ASSERT_GE(log->records.size() + max_lost, readable) << log->stop_note;
  if (log->records.size() < readable) {
    EXPECT_NE(log->stop_note.find("(the oldest"), std::string::npos) << log->stop_note;
  }
  for (std::size_t i = 0; i < log->records.size(); ++i) {
    ASSERT_EQ(log->records[i].seq, log->first_seq + i);
    ASSERT_TRUE(is_expected(log->records[i], seed));
  }
  if (!log->records.empty()) EXPECT_EQ(log->records.back().seq + 1, log->written);
  std::printf("[ info ] round %d: %llu written, %zu read%s%s\n", round,
              static_cast<unsigned long long>(log->written), log->records.size(),
              log->stop_note.empty() ? "" : "; ", log->stop_note.c_str());
}

TEST(ReplayLog, SigkillMidAppendLeavesOnlyIntactCountedRecords) {
  const std::uint64_t seed = 808;
  print_seed(seed);
  std::mt19937_64 rng(seed);
  TempDir dir;
  for (int round = 0; round < 10; ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    // Small logs wrap thousands of times before the kill; large ones may not wrap at all.
    // Only the oldest slot (the one the interrupted append was overwriting) may be lost.
    kill_writer_and_check(dir.file("killed.pkrl"), round % 2 == 0 ? 1024 : 65536, seed, rng, 1, round,
                          [&](ReplayLogWriter& w) {
                            for (std::uint64_t s = 0;; ++s) append_expected(w, seed, s);
                          });
  }
}

TEST(ReplayLog, Version1LogsAreStillRead) {
  const std::uint64_t seed = 913;
  print_seed(seed);
  TempDir dir;
  auto bytes = file_bytes(write_log(dir, 32, 20, seed));
  EXPECT_EQ(parse_replay_log(bytes)->version, kReplayLogVersion);
  // The same log as a version 1 writer left it: version field 1, metadata CRC to match.
  const std::uint32_t one = 1;
  std::memcpy(bytes.data() + 8, &one, sizeof one);
  const std::uint32_t crc = crc32(bytes.data(), 2240);
  std::memcpy(bytes.data() + 2240, &crc, sizeof crc);
  auto log = parse_replay_log(bytes);
  ASSERT_TRUE(log.ok()) << log.status().to_string();
  EXPECT_EQ(log->version, 1u);
  ASSERT_EQ(log->records.size(), 20u);
  for (const auto& r : log->records) EXPECT_TRUE(is_expected(r, seed));
  // A version this pkrt does not know is refused by number.
  const std::uint32_t future = kReplayLogVersion + 1;
  std::memcpy(bytes.data() + 8, &future, sizeof future);
  const std::uint32_t crc2 = crc32(bytes.data(), 2240);
  std::memcpy(bytes.data() + 2240, &crc2, sizeof crc2);
  auto refused = parse_replay_log(bytes);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("format version " + std::to_string(future)), std::string::npos)
      << refused.status().message();
}

TEST(ReplayLog, AppendBatchWritesExactlyWhatSingleAppendsWrite) {
  const std::uint64_t seed = 909;
  print_seed(seed);
  std::mt19937_64 rng(seed);
  TempDir dir;
  const std::string path = dir.file("batched.pkrl");
  auto writer = ReplayLogWriter::create(path, {.capacity_records = 4096});
  ASSERT_TRUE(writer.ok());
  ASSERT_TRUE(writer.value()->begin_run(run_info()).ok());
  std::uint64_t seq = 0;
  // Sizes around the per-update cap, single records, and an empty batch.
  for (std::size_t n : {std::size_t{0}, std::size_t{1}, kReplayMaxBatch - 1, kReplayMaxBatch, kReplayMaxBatch + 1,
                        3 * kReplayMaxBatch + 7}) {
    append_expected_batch(*writer.value(), seed, seq, n);
    seq += n;
    append_expected(*writer.value(), seed, seq++);
  }
  while (seq < 2000) {
    const std::size_t n = 1 + rng() % 40;
    append_expected_batch(*writer.value(), seed, seq, n);
    seq += n;
  }
  EXPECT_EQ(writer.value()->written(), seq);
  ASSERT_TRUE(writer.value()->close().ok());
  auto log = read_replay_log(path);
  ASSERT_TRUE(log.ok()) << log.status().to_string();
  EXPECT_TRUE(log->closed_cleanly);
  EXPECT_EQ(log->stop_note, "");
  ASSERT_EQ(log->records.size(), seq);
  for (std::uint64_t i = 0; i < seq; ++i) {
    ASSERT_EQ(log->records[i].seq, i);
    ASSERT_TRUE(is_expected(log->records[i], seed));
  }
}

// The writer and the reader share the record CRC path, so round trips alone would not see a
// wrong CRC: this checks each path, and the bytes on disk, against ISA-L's generic CRC.
TEST(ReplayRecordCrc, EveryPathEqualsTheGenericCrc32OnSeededRandomRecords) {
  const std::uint64_t seed = 911;
  print_seed(seed);
  std::mt19937_64 rng(seed);
  alignas(64) std::array<unsigned char, 128> bytes{};
  for (int trial = 0; trial < 4000; ++trial) {
    // Random bytes, then the edge patterns (all zero, all ones, one bit set) in turn.
    for (auto& b : bytes) b = static_cast<unsigned char>(rng());
    if (trial == 0) bytes.fill(0);
    if (trial == 1) bytes.fill(0xFF);
    if (trial >= 2 && trial < 2 + 1024) {
      bytes.fill(0);
      bytes[(trial - 2) / 8] = static_cast<unsigned char>(1u << ((trial - 2) % 8));
    }
    const std::uint32_t expected = crc32(bytes.data(), bytes.size());
    ASSERT_EQ(detail::crc32_fixed128(bytes.data()), expected) << "trial " << trial;
#if PKRT_RECORD_CRC_CLMUL
    if (__builtin_cpu_supports("vpclmulqdq") && __builtin_cpu_supports("avx2"))
      ASSERT_EQ(detail::record_crc_ymm(bytes.data()), expected) << "trial " << trial;
    if (__builtin_cpu_supports("vpclmulqdq") && __builtin_cpu_supports("avx512f"))
      ASSERT_EQ(detail::record_crc_zmm(bytes.data()), expected) << "trial " << trial;
#endif
  }
}

TEST(ReplayRecordCrc, RecordsOnDiskCarryTheZlibCrcOfTheirBytes) {
  const std::uint64_t seed = 912;
  print_seed(seed);
  TempDir dir;
  const std::string path = dir.file("crc-on-disk.pkrl");
  auto writer = ReplayLogWriter::create(path, {.capacity_records = 512});
  ASSERT_TRUE(writer.ok());
  ASSERT_TRUE(writer.value()->begin_run(run_info()).ok());
  append_expected_batch(*writer.value(), seed, 0, 300);
  for (std::uint64_t s = 300; s < 320; ++s) append_expected(*writer.value(), seed, s);
  ASSERT_TRUE(writer.value()->close().ok());
  auto bytes = file_bytes(path);
  for (std::uint64_t s = 0; s < 320; ++s) {
    std::array<std::byte, kRecord> record{};
    std::memcpy(record.data(), bytes.data() + kHeader + s * kRecord, kRecord);
    std::uint32_t stored = 0;
    std::memcpy(&stored, record.data() + offsetof(ReplayRecord, crc), sizeof stored);
    std::memset(record.data() + offsetof(ReplayRecord, crc), 0, sizeof stored);
    ASSERT_EQ(stored, crc32(record.data(), record.size())) << "record " << s;
  }
}

TEST(ReplayLog, TornBatchAtTheOldEndOfAnUnclosedWrappedLogIsSkippedWithANote) {
  const std::uint64_t seed = 910;
  print_seed(seed);
  TempDir dir;
  const std::string path = dir.file("torn-batch.pkrl");
  auto writer = ReplayLogWriter::create(path, {.capacity_records = 64});
  ASSERT_TRUE(writer.ok());
  ASSERT_TRUE(writer.value()->begin_run(run_info()).ok());
  append_expected_batch(*writer.value(), seed, 0, 100);
  auto bytes = file_bytes(path);  // as a SIGKILL in the middle of the next batch would leave it:
  for (std::uint64_t s = 36; s < 41; ++s) bytes[kHeader + (s % 64) * kRecord + 80] ^= std::byte{0x21};
  auto log = parse_replay_log(bytes);
  ASSERT_TRUE(log.ok()) << log.status().to_string();
  EXPECT_EQ(log->first_seq, 41u);
  ASSERT_EQ(log->records.size(), 59u);
  for (const auto& r : log->records) EXPECT_TRUE(is_expected(r, seed));
  EXPECT_NE(log->stop_note.find("records 36..40 (the oldest"), std::string::npos) << log->stop_note;
}

TEST(ReplayLog, ABatchTornWhileItFirstWrapsTheLogLosesOnlyTheSlotsItOverwrote) {
  const std::uint64_t seed = 912;
  print_seed(seed);
  TempDir dir;
  const std::string path = dir.file("first-wrap.pkrl");
  auto writer = ReplayLogWriter::create(path, {.capacity_records = 64});
  ASSERT_TRUE(writer.ok());
  ASSERT_TRUE(writer.value()->begin_run(run_info()).ok());
  append_expected_batch(*writer.value(), seed, 0, 50);
  auto bytes = file_bytes(path);
  // As a SIGKILL in a batch of records 50..66 would leave it: 50..63 written, 64..66 written
  // over the slots of records 0..2 (the last one half), the count still 50.
  std::vector<std::byte> newer(kRecord * 17);
  {
    TempDir scratch;
    const std::string other = scratch.file("newer.pkrl");
    auto w = ReplayLogWriter::create(other, {.capacity_records = 128});
    ASSERT_TRUE(w.ok());
    ASSERT_TRUE(w.value()->begin_run(run_info()).ok());
    append_expected_batch(*w.value(), seed, 0, 67);
    const auto full = file_bytes(other);
    std::memcpy(newer.data(), full.data() + kHeader + 50 * kRecord, newer.size());
  }
  for (std::uint64_t i = 0; i < 17; ++i) {
    const std::uint64_t slot = (50 + i) % 64;
    const std::size_t len = i == 16 ? kRecord / 2 : kRecord;
    std::memcpy(bytes.data() + kHeader + slot * kRecord, newer.data() + i * kRecord, len);
  }
  auto log = parse_replay_log(bytes);
  ASSERT_TRUE(log.ok()) << log.status().to_string();
  EXPECT_EQ(log->written, 50u);
  EXPECT_EQ(log->first_seq, 3u);
  ASSERT_EQ(log->records.size(), 47u) << log->stop_note;
  for (const auto& r : log->records) EXPECT_TRUE(is_expected(r, seed));
  EXPECT_NE(log->stop_note.find("records 0..2 (the oldest"), std::string::npos) << log->stop_note;
}

TEST(ReplayLog, SigkillMidBatchLeavesOnlyIntactCountedRecords) {
  const std::uint64_t seed = 911;
  print_seed(seed);
  std::mt19937_64 rng(seed);
  TempDir dir;
  for (int round = 0; round < 8; ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    // At most the oldest slots the interrupted batch was overwriting may be lost.
    kill_writer_and_check(dir.file("killed-batch.pkrl"), round % 2 == 0 ? 1024 : 65536, seed, rng,
                          kReplayMaxBatch, round, [&](ReplayLogWriter& w) {
                            std::mt19937_64 sizes(seed + 1);
                            for (std::uint64_t s = 0;;) {
                              const std::size_t n = 1 + sizes() % (2 * kReplayMaxBatch);
                              append_expected_batch(w, seed, s, n);
                              s += n;
                            }
                          });
  }
}

TEST(ReplayLog, ConcurrentAppendsGetUniqueContiguousSequences) {
  constexpr std::uint32_t kThreads = 4;
  constexpr std::uint64_t kPerThread = 5000;
  TempDir dir;
  const std::string path = dir.file("concurrent.pkrl");
  {
    auto writer = ReplayLogWriter::create(path, {.capacity_records = kThreads * kPerThread});
    ASSERT_TRUE(writer.ok());
    ASSERT_TRUE(writer.value()->begin_run(run_info()).ok());
    std::vector<std::thread> threads;
    for (std::uint32_t t = 0; t < kThreads; ++t) {
      threads.emplace_back([&, t] {
        for (std::uint64_t i = 0; i < kPerThread; ++i) {
          Slot slot{};
          slot.header.actor = t;
          slot.payload.request = i;
          writer.value()->append(ReplayDirection::kK2H, t, i, 0, slot);
          writer.value()->set_complete_epoch(i);
        }
      });
    }
    for (auto& th : threads) th.join();
    ASSERT_TRUE(writer.value()->close().ok());
  }
  auto log = read_replay_log(path);
  ASSERT_TRUE(log.ok()) << log.status().to_string();
  ASSERT_EQ(log->records.size(), kThreads * kPerThread);
  EXPECT_EQ(log->complete_epoch, kPerThread - 1);
  std::vector<std::uint64_t> next(kThreads, 0);  // each thread's appends stay in its order
  for (std::size_t i = 0; i < log->records.size(); ++i) {
    const ReplayRecord& r = log->records[i];
    ASSERT_EQ(r.seq, i);
    ASSERT_LT(r.block, kThreads);
    ASSERT_EQ(r.slot.header.actor, r.block);
    ASSERT_EQ(r.slot.payload.request, next[r.block]++);
  }
  for (std::uint32_t t = 0; t < kThreads; ++t) EXPECT_EQ(next[t], kPerThread);
}

TEST(ReplayLog, SetCompleteEpochNeverGoesBackwards) {
  TempDir dir;
  const std::string path = dir.file("epochs.pkrl");
  {
    auto writer = ReplayLogWriter::create(path, {.capacity_records = 8});
    ASSERT_TRUE(writer.ok());
    writer.value()->set_complete_epoch(10);
    writer.value()->set_complete_epoch(4);
    ASSERT_TRUE(writer.value()->close().ok());
  }
  auto log = read_replay_log(path);
  ASSERT_TRUE(log.ok()) << log.status().to_string();
  EXPECT_EQ(log->complete_epoch, 10u);
}

TEST(ReplayLog, CreateFailsWithAClearMessageForAnUnwritablePath) {
  TempDir dir;
  const std::string missing = dir.file("no/such/dir/run.pkrl");
  auto writer = ReplayLogWriter::create(missing, {.capacity_records = 8});
  ASSERT_FALSE(writer.ok());
  EXPECT_EQ(writer.status().code(), StatusCode::kIoError);
  const std::string& message = writer.status().message();
  EXPECT_NE(message.find(missing), std::string::npos) << message;
  EXPECT_NE(message.find(std::strerror(ENOENT)), std::string::npos) << message;
  EXPECT_NE(message.find("Fix:"), std::string::npos) << message;

  auto is_dir = ReplayLogWriter::create(dir.file(""), {.capacity_records = 8});
  ASSERT_FALSE(is_dir.ok());
  EXPECT_EQ(is_dir.status().code(), StatusCode::kFailedPrecondition) << is_dir.status().to_string();
}

std::string contents_of(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

void write_file(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary);
  out << bytes;
}

TEST(ReplayLog, CreateRefusesAnExistingFileAndLeavesItAsItWas) {
  TempDir dir;
  const std::string path = dir.file("run.pkrl");
  write_file(path, "a log from yesterday's run");
  for (bool twice : {false, true}) {
    auto writer = ReplayLogWriter::create(path, {.capacity_records = 8});
    ASSERT_FALSE(writer.ok());
    EXPECT_EQ(writer.status().code(), StatusCode::kFailedPrecondition);
    EXPECT_NE(writer.status().message().find("exists"), std::string::npos) << writer.status().message();
    EXPECT_NE(writer.status().message().find("Fix:"), std::string::npos) << writer.status().message();
    EXPECT_EQ(contents_of(path), "a log from yesterday's run") << (twice ? "second try" : "first try");
  }
  // Nothing of ours is left behind either: only the old file is in the directory.
  std::size_t entries = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator(dir.file(""))) ++entries;
  EXPECT_EQ(entries, 1u);
}

// The files in `dir` (names only).
std::vector<std::string> names_in(const std::string& dir) {
  std::vector<std::string> names;
  for (const auto& e : std::filesystem::directory_iterator(dir)) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

TEST(ReplayLog, ReplaceExistingSwapsInTheNewLogOnlyAtClose) {
  TempDir dir;
  const std::string path = dir.file("run.pkrl");
  write_file(path, "old");
  auto writer = ReplayLogWriter::create(path, {.capacity_records = 16, .replace_existing = true});
  ASSERT_TRUE(writer.ok()) << writer.status().to_string();
  ASSERT_TRUE(writer.value()->begin_run(run_info()).ok());
  writer.value()->append(ReplayDirection::kH2K, 0, 0, 0, Slot{});
  EXPECT_EQ(contents_of(path), "old") << "the old file stays while the new log is written";
  ASSERT_TRUE(writer.value()->close().ok());
  auto log = read_replay_log(path);
  ASSERT_TRUE(log.ok()) << log.status().to_string();
  EXPECT_EQ(log->records.size(), 1u);
  EXPECT_EQ(names_in(dir.file("")), std::vector<std::string>{"run.pkrl"}) << "no temporary file is left";
}

TEST(ReplayLog, ReplacingWriterThatRecordsNoRunLeavesTheOldFileAsItWas) {
  TempDir dir;
  const std::string path = dir.file("run.pkrl");
  write_file(path, "old");
  {
    // A run that fails before it begins (a bad restore, a refused option) closes its log.
    auto writer = ReplayLogWriter::create(path, {.capacity_records = 16, .replace_existing = true});
    ASSERT_TRUE(writer.ok()) << writer.status().to_string();
    ASSERT_TRUE(writer.value()->close().ok());
  }
  {
    auto writer = ReplayLogWriter::create(path, {.capacity_records = 16, .replace_existing = true});
    ASSERT_TRUE(writer.ok()) << writer.status().to_string();
  }  // destroyed without close()
  EXPECT_EQ(contents_of(path), "old");
  EXPECT_EQ(names_in(dir.file("")), std::vector<std::string>{"run.pkrl"});
}

TEST(ReplayLog, ReplacingWriterKilledMidRunLeavesTheOldFileAndItsLogBeside) {
  TempDir dir;
  const std::string path = dir.file("run.pkrl");
  write_file(path, "old");
  int ready[2];
  ASSERT_EQ(::pipe(ready), 0);
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    ::close(ready[0]);
    auto writer = ReplayLogWriter::create(path, {.capacity_records = 64, .replace_existing = true});
    if (!writer.ok() || !writer.value()->begin_run(run_info()).ok()) ::_exit(3);
    writer.value()->append(ReplayDirection::kH2K, 0, 0, 0, Slot{});
    const char byte = 'r';
    if (::write(ready[1], &byte, 1) != 1) ::_exit(4);
    for (;;) ::pause();
  }
  ::close(ready[1]);
  char byte = 0;
  ASSERT_EQ(::read(ready[0], &byte, 1), 1) << "the writer failed to start";
  ::close(ready[0]);
  ::kill(child, SIGKILL);
  int status = 0;
  ::waitpid(child, &status, 0);
  EXPECT_EQ(contents_of(path), "old");
  const auto names = names_in(dir.file(""));
  ASSERT_EQ(names.size(), 2u);
  const std::string& temp = names[0] == "run.pkrl" ? names[1] : names[0];
  EXPECT_EQ(temp.rfind(".run.pkrl.", 0), 0u) << temp;
  auto log = read_replay_log(dir.file(temp));
  ASSERT_TRUE(log.ok()) << log.status().to_string();
  EXPECT_EQ(log->records.size(), 1u) << "the killed run's log is readable at its temporary name";
}

TEST(ReplayLog, CreateNeverWritesThroughASymlink) {
  TempDir dir;
  const std::string target = dir.file("precious.dat"), link = dir.file("run.pkrl");
  write_file(target, "not a log");
  std::filesystem::create_symlink(target, link);
  for (bool replace : {false, true}) {
    auto writer = ReplayLogWriter::create(link, {.capacity_records = 8, .replace_existing = replace});
    ASSERT_FALSE(writer.ok()) << "replace_existing = " << replace;
    EXPECT_EQ(writer.status().code(), StatusCode::kFailedPrecondition);
    EXPECT_NE(writer.status().message().find("symbolic link"), std::string::npos) << writer.status().message();
  }
  EXPECT_EQ(contents_of(target), "not a log");
  EXPECT_TRUE(std::filesystem::is_symlink(link));
}

TEST(ReplayLog, AFifoIsRefusedAtOnceByTheWriterAndTheReader) {
  TempDir dir;
  const std::string fifo = dir.file("run.pkrl");
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0644), 0) << std::strerror(errno);
  for (bool replace : {false, true}) {
    auto writer = ReplayLogWriter::create(fifo, {.capacity_records = 8, .replace_existing = replace});
    ASSERT_FALSE(writer.ok());
    EXPECT_EQ(writer.status().code(), StatusCode::kFailedPrecondition) << writer.status().to_string();
  }
  EXPECT_TRUE(std::filesystem::is_fifo(fifo)) << "the FIFO is still there, untouched";
  // Opening a FIFO that has no writer for reading would block for ever; it is refused.
  auto read = read_replay_log(fifo);
  ASSERT_FALSE(read.ok());
  EXPECT_EQ(read.status().code(), StatusCode::kIoError);
  EXPECT_NE(read.status().message().find("not a regular file"), std::string::npos) << read.status().message();
}

TEST(ReplayLog, CreateRejectsAZeroOrHugeCapacity) {
  TempDir dir;
  for (std::uint64_t capacity : {std::uint64_t{0}, kReplayMaxCapacity + 1}) {
    auto writer = ReplayLogWriter::create(dir.file("cap.pkrl"), {.capacity_records = capacity});
    ASSERT_FALSE(writer.ok());
    EXPECT_EQ(writer.status().code(), StatusCode::kInvalidArgument);
    EXPECT_FALSE(std::filesystem::exists(dir.file("cap.pkrl")));
  }
}

TEST(ReplayLog, ReadingAMissingFileIsAnIoErrorNamingThePath) {
  TempDir dir;
  auto log = read_replay_log(dir.file("absent.pkrl"));
  ASSERT_FALSE(log.ok());
  EXPECT_EQ(log.status().code(), StatusCode::kIoError);
  EXPECT_NE(log.status().message().find("absent.pkrl"), std::string::npos);
}

TEST(ReplayLog, BeginRunRejectsTooLongNamesAndParams) {
  TempDir dir;
  auto writer = ReplayLogWriter::create(dir.file("names.pkrl"), {.capacity_records = 8});
  ASSERT_TRUE(writer.ok());
  ReplayRunInfo long_app = run_info();
  long_app.app.assign(kReplayMaxAppName + 1, 'x');
  ReplayRunInfo long_params = run_info();
  long_params.params.resize(kReplayMaxParamsBytes + 1);
  ReplayRunInfo empty_app = run_info();
  empty_app.app.clear();
  ReplayRunInfo long_backend = run_info();
  long_backend.backend.assign(16, 'b');
  for (const ReplayRunInfo* bad : {&long_app, &long_params, &empty_app, &long_backend}) {
    const Status st = writer.value()->begin_run(*bad);
    EXPECT_EQ(st.code(), StatusCode::kInvalidArgument) << st.to_string();
    EXPECT_NE(st.message().find("Fix:"), std::string::npos) << st.message();
  }
  EXPECT_TRUE(writer.value()->begin_run(run_info()).ok()) << "rejections must not use up the run";
}

TEST(ReplayLog, BeginRunIsAllowedOnceAndOnlyBeforeTheFirstAppend) {
  TempDir dir;
  auto twice = ReplayLogWriter::create(dir.file("twice.pkrl"), {.capacity_records = 8});
  ASSERT_TRUE(twice.ok());
  ASSERT_TRUE(twice.value()->begin_run(run_info()).ok());
  EXPECT_EQ(twice.value()->begin_run(run_info()).code(), StatusCode::kFailedPrecondition);

  auto late = ReplayLogWriter::create(dir.file("late.pkrl"), {.capacity_records = 8});
  ASSERT_TRUE(late.ok());
  late.value()->append(ReplayDirection::kH2K, 0, 0, 0, Slot{});
  EXPECT_EQ(late.value()->begin_run(run_info()).code(), StatusCode::kFailedPrecondition);
}

TEST(ReplayLog, BackgroundSyncThreadStopsPromptlyOnClose) {
  const std::uint64_t seed = 909;
  print_seed(seed);
  TempDir dir;
  for (auto interval : {std::chrono::milliseconds(1), std::chrono::milliseconds(3600 * 1000)}) {
    SCOPED_TRACE("sync every " + std::to_string(interval.count()) + " ms");
    const std::string path = dir.file("synced.pkrl");
    auto writer =
        ReplayLogWriter::create(path, {.capacity_records = 4096, .sync_interval = interval, .replace_existing = true});
    ASSERT_TRUE(writer.ok());
    ASSERT_TRUE(writer.value()->begin_run(run_info()).ok());
    for (std::uint64_t s = 0; s < 3000; ++s) {  // over ~30 ms: the 1 ms thread syncs meanwhile
      append_expected(*writer.value(), seed, s);
      if (s % 100 == 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    const auto start = std::chrono::steady_clock::now();
    ASSERT_TRUE(writer.value()->close().ok());
    const auto took = std::chrono::steady_clock::now() - start;
    EXPECT_LT(took, std::chrono::seconds(2)) << "close() waited for the sync interval";
    EXPECT_TRUE(writer.value()->close().ok()) << "close() is idempotent";
    auto log = read_replay_log(path);
    ASSERT_TRUE(log.ok()) << log.status().to_string();
    EXPECT_TRUE(log->closed_cleanly);
    EXPECT_EQ(log->records.size(), 3000u);
  }
}

// One rank's inbound K2K log with `epochs` epochs (one message each, epoch-stamped payload).
Status write_k2k_log(K2KLogWriter& writer, std::uint64_t epochs) {
  for (std::uint64_t e = 1; e <= epochs; ++e) {
    K2KTransfer t{};
    t.dst = 1;
    t.epoch = e;
    t.bytes = sizeof e;
    std::array<std::byte, sizeof e> payload;
    std::memcpy(payload.data(), &e, sizeof e);
    PKRT_RETURN_IF_ERROR(writer.append(e, std::span<const K2KTransfer>(&t, 1), payload));
  }
  return Status();
}

K2KLogShard k2k_shard() {
  K2KLogShard shard;
  shard.rank = 0;
  shard.ranks = 2;
  shard.global_actors = 2;
  shard.global_ids = {0};
  return shard;
}

// An earlier run's inbound K2K log of 3 epochs at `path`, closed by close() or, with
// `by_destructor`, by destroying its writer (which keeps a log holding epochs).
void write_older_k2k_log(const std::string& path, bool by_destructor = false) {
  auto first = K2KLogWriter::create(path, k2k_shard());
  ASSERT_TRUE(first.ok()) << first.status().to_string();
  ASSERT_TRUE(write_k2k_log(*first.value(), 3).ok());
  if (!by_destructor) ASSERT_TRUE(first.value()->close().ok());
}

TEST(K2KLog, AnOlderLogStaysWholeUntilTheNewOneIsClosed) {
  TempDir dir;
  const std::string path = dir.file("rank0.pkrl.k2k");
  ASSERT_NO_FATAL_FAILURE(write_older_k2k_log(path));
  auto second = K2KLogWriter::create(path, k2k_shard());
  ASSERT_TRUE(second.ok()) << second.status().to_string();
  ASSERT_TRUE(write_k2k_log(*second.value(), 1).ok());
  // A run killed now would leave the first log as it was, not a header-only one.
  auto before = read_k2k_log(path);
  ASSERT_TRUE(before.ok()) << before.status().to_string();
  EXPECT_EQ(before->epochs.size(), 3u);
  ASSERT_TRUE(second.value()->close().ok());
  auto after = read_k2k_log(path);
  ASSERT_TRUE(after.ok()) << after.status().to_string();
  EXPECT_EQ(after->epochs.size(), 1u);
  EXPECT_EQ(names_in(dir.file("")), std::vector<std::string>{"rank0.pkrl.k2k"})
      << "the temporary was renamed, not left beside the log";
}

TEST(K2KLog, AWriterGivenNoEpochLeavesTheOlderLogAsItWas) {
  TempDir dir;
  const std::string path = dir.file("rank0.pkrl.k2k");
  ASSERT_NO_FATAL_FAILURE(write_older_k2k_log(path, /*by_destructor=*/true));
  {
    // A rerun whose launch failed on another rank: its writer goes before any exchange.
    auto second = K2KLogWriter::create(path, k2k_shard());
    ASSERT_TRUE(second.ok()) << second.status().to_string();
  }
  auto kept = read_k2k_log(path);
  ASSERT_TRUE(kept.ok()) << kept.status().to_string();
  EXPECT_EQ(kept->epochs.size(), 3u);
  EXPECT_EQ(names_in(dir.file("")), std::vector<std::string>{"rank0.pkrl.k2k"}) << "nothing left behind";
}

TEST(K2KLog, ANewLogIsReadableBeforeCloseSoAKilledRanksLogCanBeReplayed) {
  TempDir dir;
  const std::string path = dir.file("rank1.pkrl.k2k");
  auto writer = K2KLogWriter::create(path, k2k_shard());
  ASSERT_TRUE(writer.ok()) << writer.status().to_string();
  ASSERT_TRUE(write_k2k_log(*writer.value(), 2).ok());
  auto read = read_k2k_log(path);  // as after a SIGKILL: never closed
  ASSERT_TRUE(read.ok()) << read.status().to_string();
  EXPECT_EQ(read->epochs.size(), 2u);
}

// Most epochs of a run without cross-rank K2K have no message: such a record reads back
// (UBSan once flagged the reader's copy of an empty message array).
TEST(K2KLog, AnEpochWithoutMessagesReadsBack) {
  TempDir dir;
  const std::string path = dir.file("rank0.pkrl.k2k");
  {
    auto writer = K2KLogWriter::create(path, k2k_shard());
    ASSERT_TRUE(writer.ok()) << writer.status().to_string();
    ASSERT_TRUE(writer.value()->append(1, {}, {}).ok());
    ASSERT_TRUE(write_k2k_log(*writer.value(), 0).ok());
    ASSERT_TRUE(writer.value()->close().ok());
  }
  auto read = read_k2k_log(path);
  ASSERT_TRUE(read.ok()) << read.status().to_string();
  ASSERT_EQ(read->epochs.size(), 1u);
  EXPECT_EQ(read->epochs[0].epoch, 1u);
  EXPECT_TRUE(read->epochs[0].messages.empty());
  EXPECT_TRUE(read->epochs[0].payload.empty());
  EXPECT_TRUE(read->stop_note.empty()) << read->stop_note;
}

// Version 2 carries the recording's run id; a version-1 log (no run id) still reads, as 0.
TEST(K2KLog, TheRunIdRoundTripsAndAVersionOneLogReadsWithNone) {
  TempDir dir;
  const std::string path = dir.file("rank0.pkrl.k2k");
  K2KLogShard shard = k2k_shard();
  shard.run_id = 0x0123456789abcdefull;
  {
    auto writer = K2KLogWriter::create(path, shard);
    ASSERT_TRUE(writer.ok()) << writer.status().to_string();
    ASSERT_TRUE(write_k2k_log(*writer.value(), 2).ok());
    ASSERT_TRUE(writer.value()->close().ok());
  }
  auto read = read_k2k_log(path);
  ASSERT_TRUE(read.ok()) << read.status().to_string();
  EXPECT_EQ(read->shard.run_id, shard.run_id);
  EXPECT_EQ(read->epochs.size(), 2u);
  // The same log as version 1 wrote it: version 1, no run id, the header's CRC made anew.
  std::ifstream in(path, std::ios::binary);
  std::vector<char> v2((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  constexpr std::size_t kRunIdAt = 8 + 5 * 4, kHeaderV2 = kRunIdAt + 8 + 4 + 4 * 1;  // one id
  std::vector<char> v1(v2.begin(), v2.begin() + kRunIdAt);
  v1.insert(v1.end(), v2.begin() + kRunIdAt + 8, v2.begin() + kHeaderV2);
  const std::uint32_t version = 1;
  std::memcpy(v1.data() + 8, &version, sizeof version);
  const std::uint32_t crc = crc32(v1.data(), v1.size());
  v1.insert(v1.end(), reinterpret_cast<const char*>(&crc), reinterpret_cast<const char*>(&crc) + sizeof crc);
  v1.insert(v1.end(), v2.begin() + kHeaderV2 + 4, v2.end());
  auto old = parse_k2k_log(std::as_bytes(std::span(v1)), "v1");
  ASSERT_TRUE(old.ok()) << old.status().to_string();
  EXPECT_EQ(old->shard.run_id, 0u);
  EXPECT_EQ(old->shard.global_ids, shard.global_ids);
  EXPECT_EQ(old->epochs.size(), 2u);
  // A version this build does not know is refused by name.
  const std::uint32_t future = 3;
  std::memcpy(v1.data() + 8, &future, sizeof future);
  auto newer = parse_k2k_log(std::as_bytes(std::span(v1)), "v3");
  EXPECT_EQ(newer.status().code(), StatusCode::kCorruptData);
  EXPECT_NE(newer.status().message().find("version 3"), std::string::npos) << newer.status().to_string();
}

TEST(K2KLog, APathNamingADirectoryIsRefusedAtCreateNotAfterTheRun) {
  TempDir dir;
  const std::string path = dir.file("logs");
  std::filesystem::create_directories(path);
  auto writer = K2KLogWriter::create(path, k2k_shard());
  ASSERT_FALSE(writer.ok());
  EXPECT_EQ(writer.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(writer.status().message().find("names a directory. Fix: name a file"), std::string::npos)
      << writer.status().to_string();
}

}  // namespace
}  // namespace pkrt
