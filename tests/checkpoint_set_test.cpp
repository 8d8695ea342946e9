// Checkpoint sets: the manifest format, the fingerprint and run-input checks, commit only
// after every member is durable, retention by committed sets, restore of the newest
// committed set, the directory's single-writer lock, and scans that race retention.
#include "tests/probe_actor.hpp"
#include "tests/test_support.hpp"

#include <pkrt/checkpoint_manager.hpp>
#include <pkrt/checkpoint_set.hpp>
#include <pkrt/crc32.hpp>
#include <pkrt/runtime.hpp>

#include <gtest/gtest.h>

#include <unistd.h>

#include <condition_variable>
#include <thread>
#include <atomic>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <random>

namespace pkrt {
namespace {

using namespace std::chrono_literals;

CheckpointManifest sample_manifest() {
  CheckpointManifest m;
  m.epoch = 1234;
  m.sequence = 7;
  m.fingerprint.app = "probe";
  m.fingerprint.program_version = 3;
  m.fingerprint.num_actors = 2;
  m.fingerprint.image_bytes = 4096;
  m.fingerprint.chunk_bytes = 256;
  m.fingerprint.regions = {{"state", 0, 16}, {"ballast", 64, 2048}};
  m.fingerprint.params = {std::byte{1}, std::byte{2}, std::byte{3}};
  m.inputs = {{"--injections", "40"}, {"--epochs", "500"}};
  for (std::uint32_t a = 0; a < 2; ++a) {
    CheckpointSetMember mem;
    mem.actor = a;
    mem.file = "probe-e000000001234-s000007-a00000" + std::to_string(a) + "-full.pkck";
    mem.digest = 0x1111222233334444ull + a;
    mem.file_bytes = 999 + a;
    mem.state_crc = 0xabcdef00u + a;
    mem.delta = a == 1;
    m.members.push_back(mem);
  }
  return m;
}

TEST(CheckpointSet, ManifestRoundTripsEveryField) {
  const CheckpointManifest m = sample_manifest();
  const auto bytes = encode_checkpoint_manifest(m);
  auto parsed = parse_checkpoint_manifest(bytes, "m.pkset");
  ASSERT_TRUE(parsed.ok()) << parsed.status().to_string();
  EXPECT_EQ(parsed->epoch, m.epoch);
  EXPECT_EQ(parsed->sequence, m.sequence);
  EXPECT_TRUE(compare_fingerprints(parsed->fingerprint, m.fingerprint, "m").ok());
  EXPECT_EQ(parsed->inputs, m.inputs);
  ASSERT_EQ(parsed->members.size(), 2u);
  for (std::size_t i = 0; i < 2; ++i) {
    EXPECT_EQ(parsed->members[i].file, m.members[i].file);
    EXPECT_EQ(parsed->members[i].digest, m.members[i].digest);
    EXPECT_EQ(parsed->members[i].file_bytes, m.members[i].file_bytes);
    EXPECT_EQ(parsed->members[i].state_crc, m.members[i].state_crc);
    EXPECT_EQ(parsed->members[i].delta, m.members[i].delta);
  }
}

TEST(CheckpointSet, EveryFlippedBitAndEveryTruncationOfAManifestIsRefused) {
  const auto bytes = encode_checkpoint_manifest(sample_manifest());
  std::mt19937 rng(12);
  for (std::size_t i = 0; i < bytes.size(); ++i) {
    auto bad = bytes;
    bad[i] ^= static_cast<std::byte>(1u << (rng() % 8));
    auto parsed = parse_checkpoint_manifest(bad, "m.pkset");
    EXPECT_EQ(parsed.status().code(), StatusCode::kCorruptData) << "flip at byte " << i;
  }
  for (std::size_t len = 0; len < bytes.size(); ++len) {
    auto parsed = parse_checkpoint_manifest(std::span(bytes).first(len), "m.pkset");
    EXPECT_EQ(parsed.status().code(), StatusCode::kCorruptData) << "truncated to " << len;
  }
}

TEST(CheckpointSet, NonzeroReservedBytesAreRefusedEvenWithAValidCrc) {
  const auto good = encode_checkpoint_manifest(sample_manifest());
  for (std::size_t at : {std::size_t{10}, std::size_t{68}}) {
    auto bad = good;
    bad[at] = std::byte{0x80};  // at 10: a flag bit no version defines
    const std::uint32_t crc = crc32(bad.data(), bad.size() - 4);
    for (int i = 0; i < 4; ++i) bad[bad.size() - 4 + i] = static_cast<std::byte>(crc >> (8 * i));
    auto parsed = parse_checkpoint_manifest(bad, "m.pkset");
    EXPECT_EQ(parsed.status().code(), StatusCode::kCorruptData) << "reserved byte " << at;
    EXPECT_NE(parsed.status().message().find("reserved"), std::string::npos) << parsed.status().message();
  }
}

TEST(CheckpointSet, ALayoutChangeThatKeepsTheSizeIsRefusedNamingBothLayouts) {
  const CheckpointFingerprint saved = sample_manifest().fingerprint;
  CheckpointFingerprint now = saved;
  now.regions[1].name = "scratch";  // same offsets and sizes, another meaning
  Status st = compare_fingerprints(saved, now, "dir/set");
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("image layout"), std::string::npos) << st.message();
  EXPECT_NE(st.message().find("ballast"), std::string::npos) << st.message();
  EXPECT_NE(st.message().find("scratch"), std::string::npos) << st.message();
}

TEST(CheckpointSet, ADifferentProgramVersionOrActorCountIsRefusedNamingBothValues) {
  const CheckpointFingerprint saved = sample_manifest().fingerprint;
  CheckpointFingerprint now = saved;
  now.program_version = 4;
  Status st = compare_fingerprints(saved, now, "s");
  EXPECT_NE(st.message().find("program version 3; this run has 4"), std::string::npos) << st.message();
  now = saved;
  now.num_actors = 5;
  st = compare_fingerprints(saved, now, "s");
  EXPECT_NE(st.message().find("actor count 2; this run has 5"), std::string::npos) << st.message();
  EXPECT_NE(st.message().find("--actors 2"), std::string::npos) << st.message();
}

TEST(CheckpointSet, AParamsMismatchIsShownThroughTheAppsDescriber) {
  const CheckpointFingerprint saved = sample_manifest().fingerprint;
  CheckpointFingerprint now = saved;
  now.params[0] = std::byte{9};
  const ParamsDescriber describe = [](std::span<const std::byte> p) {
    return "--seed " + std::to_string(static_cast<int>(p[0]));
  };
  Status st = compare_fingerprints(saved, now, "s", describe);
  EXPECT_NE(st.message().find("params --seed 1; this run has --seed 9"), std::string::npos) << st.message();
  st = compare_fingerprints(saved, now, "s");
  EXPECT_NE(st.message().find("3 bytes, CRC32"), std::string::npos) << st.message();
}

TEST(CheckpointSet, ARunInputThatChangesHistoryIsRefusedNamingTheOption) {
  const RunInputs saved = {{"--injections", "40"}, {"--epochs", "500"}};
  Status st = compare_run_inputs(saved, {{"--injections", "40"}, {"--epochs", "900"}}, "s");
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("--epochs 500; this run has 900"), std::string::npos) << st.message();
  EXPECT_TRUE(compare_run_inputs(saved, saved, "s").ok());
}

TEST(CheckpointSet, MemberNamesCarryTheSequence) {
  CheckpointInfo info;
  info.app = "heat2d";
  info.epoch = 40;
  info.actor = 3;
  const std::string name = checkpoint_member_name(info, 12);
  EXPECT_EQ(name, "heat2d-e000000000040-s000012-a000003-full.pkck");
  EXPECT_EQ(checkpoint_member_sequence(name), 12u);
  EXPECT_EQ(checkpoint_member_sequence("heat2d-a000003-e000000000040-full.pkck"), 0u);
  EXPECT_EQ(checkpoint_manifest_name("heat2d", 40), "heat2d-set-e000000000040.pkset");
}

// A store that fails chosen writes and records the order of successful ones.
class ScriptedStore final : public CheckpointStore {
 public:
  std::function<bool(const std::string&)> fail;  // true: this put fails
  std::vector<std::string> puts;
  Status put(const std::string& name, const std::vector<std::byte>& bytes) override {
    {
      std::lock_guard<std::mutex> lock(mu);
      if (fail && fail(name)) return Status(StatusCode::kIoError, "injected: no space left writing " + name);
      puts.push_back(name);
    }
    return inner.put(name, bytes);
  }
  Result<std::vector<std::byte>> get(const std::string& name) const override { return inner.get(name); }
  Result<std::vector<std::string>> list() const override { return inner.list(); }
  Status remove(const std::string& name) override { return inner.remove(name); }
  std::string describe(const std::string& name) const override { return inner.describe(name); }
  std::mutex mu;
  MemoryCheckpointStore inner;
};

bool is_manifest(const std::string& n) { return n.find(".pkset") != std::string::npos; }

struct ProbeRun {
  std::unique_ptr<Runtime> rt;
  std::unique_ptr<CheckpointManager> manager;
  ScriptedStore* store = nullptr;
};

ProbeRun start_probe_run(std::uint32_t actors, std::uint32_t keep_sets, std::uint32_t max_delta_chain = 8) {
  ProbeRun r;
  auto created = Runtime::create(testing::probe_program(), testing::Probe::Params{}, testing::cpu_runtime(actors, 2, 256));
  EXPECT_TRUE(created.ok());
  r.rt = std::move(created.value());
  auto store = std::make_unique<ScriptedStore>();
  r.store = store.get();
  CheckpointPolicy policy;
  policy.keep_sets = keep_sets;
  policy.max_delta_chain = max_delta_chain;
  policy.encode.zstd_level = 0;
  auto manager = CheckpointManager::create(*r.rt, std::move(store), policy);
  EXPECT_TRUE(manager.ok()) << manager.status().to_string();
  r.manager = std::move(manager.value());
  EXPECT_TRUE(r.rt->set_target_epoch(1).ok());
  EXPECT_TRUE(r.rt->start().ok());
  return r;
}

void checkpoint(ProbeRun& r, std::uint64_t epoch) {
  ASSERT_TRUE(r.rt->run_until(epoch, 30s).ok());
  ASSERT_TRUE(r.manager->checkpoint_at(epoch).ok());
  ASSERT_TRUE(r.manager->wait_served(30s).ok());
  (void)r.manager->flush(30s);
}

// Commits sets at epochs 1 and 2 and returns their scan (oldest first) in `sets`.
void commit_two_sets(ProbeRun& r, std::vector<CheckpointSetRecord>& sets) {
  checkpoint(r, 1);
  checkpoint(r, 2);
  auto scanned = scan_checkpoint_sets(r.store->inner);
  ASSERT_TRUE(scanned.ok());
  ASSERT_EQ(scanned->size(), 2u);
  sets = std::move(scanned.value());
}

// Flips one bit in the middle of the stored file `name`.
void flip_middle_byte(ProbeRun& r, const std::string& name) {
  auto bytes = r.store->inner.get(name);
  ASSERT_TRUE(bytes.ok());
  bytes.value()[bytes->size() / 2] ^= std::byte{0x40};
  ASSERT_TRUE(r.store->inner.put(name, bytes.value()).ok());
}

TEST(CheckpointSetCommit, TheManifestIsWrittenOnlyAfterEveryMemberIsDurable) {
  ProbeRun r = start_probe_run(4, 3);
  checkpoint(r, 1);
  std::lock_guard<std::mutex> lock(r.store->mu);
  ASSERT_EQ(r.store->puts.size(), 6u);  // 4 actors, the queued commands, the manifest
  for (std::size_t i = 0; i < 5; ++i) EXPECT_FALSE(is_manifest(r.store->puts[i])) << r.store->puts[i];
  EXPECT_EQ(r.store->puts[5], "probe-set-e000000000001.pkset");
}

// Today's data loss: with keep 1, a later checkpoint that fails for one actor must not
// cost the only complete set its files.
TEST(CheckpointSetCommit, ASetWithAFailedMemberIsNeverCommittedAndTheLastCommittedOneSurvives) {
  ProbeRun r = start_probe_run(3, 1);
  checkpoint(r, 1);
  r.store->fail = [](const std::string& n) { return n.find("-a000001-") != std::string::npos; };
  checkpoint(r, 2);
  checkpoint(r, 3);
  const CheckpointCounters c = r.manager->counters();
  EXPECT_EQ(c.sets_committed, 1u);
  EXPECT_EQ(c.sets_failed, 2u);
  auto point = find_restore_point(r.store->inner, "probe", r.rt->params(), 3, std::nullopt);
  ASSERT_TRUE(point.ok()) << point.status().to_string();
  EXPECT_EQ(point->epoch, 1u);
  testing::Probe::State s{};
  for (const auto& image : point->images) {
    std::memcpy(&s, image.data(), sizeof s);
    EXPECT_EQ(s.steps, 1u);
  }
}

// A checkpoint taken twice on a parked grid replaces the set at that epoch: its members must
// not be deltas of the files they replace, which retention then removes.
TEST(CheckpointSetCommit, ACheckpointRepeatedAtOneEpochIsFullAndStaysRestorable) {
  ProbeRun r = start_probe_run(2, 1);
  checkpoint(r, 3);
  ASSERT_TRUE(r.manager->checkpoint_at(3).ok());
  ASSERT_TRUE(r.manager->wait_served(30s).ok());
  ASSERT_TRUE(r.manager->flush(30s).ok());
  EXPECT_EQ(r.manager->counters().sets_committed, 2u);
  auto point = find_restore_point(r.store->inner, "probe", r.rt->params(), 2, std::nullopt);
  ASSERT_TRUE(point.ok()) << point.status().to_string();
  EXPECT_EQ(point->epoch, 3u);
  for (const auto& s : r.manager->snapshot_stats()) EXPECT_FALSE(s.delta) << "epoch " << s.epoch;
}

// A store whose writes wait until the test opens the gate: a disk slower than the requests.
class GatedStore final : public CheckpointStore {
 public:
  Status put(const std::string& name, const std::vector<std::byte>& bytes) override {
    std::unique_lock<std::mutex> lock(mu);
    cv.wait(lock, [&] { return open; });
    lock.unlock();
    return inner.put(name, bytes);
  }
  Result<std::vector<std::byte>> get(const std::string& name) const override { return inner.get(name); }
  Result<std::vector<std::string>> list() const override { return inner.list(); }
  Status remove(const std::string& name) override { return inner.remove(name); }
  std::string describe(const std::string& name) const override { return inner.describe(name); }
  void set_open() {
    std::lock_guard<std::mutex> lock(mu);
    open = true;
    cv.notify_all();
  }
  std::mutex mu;
  std::condition_variable cv;
  bool open = false;
  MemoryCheckpointStore inner;
};

TEST(CheckpointSetCommit, ARequestWaitsWhileMaxPendingSetsAreStillBeingWritten) {
  auto created = Runtime::create(testing::probe_program(), testing::Probe::Params{}, testing::cpu_runtime(2, 2, 256));
  ASSERT_TRUE(created.ok());
  Runtime& rt = *created.value();
  auto gated = std::make_unique<GatedStore>();
  GatedStore* store = gated.get();
  CheckpointPolicy policy;
  policy.max_pending_sets = 2;
  auto manager = CheckpointManager::create(rt, std::move(gated), policy);
  ASSERT_TRUE(manager.ok()) << manager.status().to_string();
  ASSERT_TRUE(rt.set_target_epoch(1).ok());
  ASSERT_TRUE(rt.start().ok());
  ASSERT_TRUE(rt.run_until(1, 30s).ok());
  for (int i = 0; i < 2; ++i) {  // two sets served, their writes held at the gate
    ASSERT_TRUE(manager.value()->checkpoint_now().ok());
    ASSERT_TRUE(manager.value()->wait_served(30s).ok());
  }
  std::atomic<bool> returned{false};
  std::thread third([&] {
    EXPECT_TRUE(manager.value()->checkpoint_now().ok());
    returned.store(true);  // seq_cst: read by the test thread below
  });
  std::this_thread::sleep_for(200ms);
  EXPECT_FALSE(returned.load()) << "a third set was requested while two were still being written";
  EXPECT_EQ(manager.value()->counters().requested, 2u);
  store->set_open();
  third.join();
  EXPECT_TRUE(returned.load());
  ASSERT_TRUE(manager.value()->wait_served(30s).ok());
  ASSERT_TRUE(manager.value()->flush(30s).ok());
  EXPECT_EQ(manager.value()->counters().sets_committed, 3u);
  manager.value().reset();
  ASSERT_TRUE(rt.shutdown().ok());
}

TEST(CheckpointSetCommit, RunInputsAManifestCannotHoldAreRefusedAtCreate) {
  auto created = Runtime::create(testing::probe_program(), testing::Probe::Params{}, testing::cpu_runtime(1, 1, 256));
  ASSERT_TRUE(created.ok());
  CheckpointPolicy policy;
  policy.inputs = {{"--schedule", std::string(kMaxRunInputText + 1, 'x')}};
  auto manager = CheckpointManager::create(*created.value(), std::make_unique<MemoryCheckpointStore>(), policy);
  EXPECT_EQ(manager.status().code(), StatusCode::kInvalidArgument) << manager.status().to_string();
}

TEST(CheckpointSetCommit, RetentionKeepsTheNewestCommittedSetsAndRemovesOlderManifestsAndFiles) {
  // Full at 1, 3, 5; deltas at 2 and 4 (a chain of at most one delta).
  ProbeRun r = start_probe_run(2, 2, 1);
  for (std::uint64_t e = 1; e <= 5; ++e) checkpoint(r, e);
  auto sets = scan_checkpoint_sets(r.store->inner);
  ASSERT_TRUE(sets.ok());
  ASSERT_EQ(sets->size(), 2u);
  EXPECT_EQ(sets.value()[0].manifest.epoch, 4u);
  EXPECT_EQ(sets.value()[1].manifest.epoch, 5u);
  auto files = scan_checkpoints(r.store->inner);
  ASSERT_TRUE(files.ok());
  std::vector<std::uint64_t> epochs;
  for (const auto& f : files.value())
    if (f.info.actor == 0) epochs.push_back(f.info.epoch);
  EXPECT_EQ(epochs, (std::vector<std::uint64_t>{3, 4, 5})) << "sets 4 and 5, and 3: the base of delta 4";
  EXPECT_EQ(r.manager->counters().deleted, 3u + 4u + 3u)
      << "manifests 1..3, actor files of epochs 1 and 2, queued commands of sets 1..3";
}

TEST(CheckpointSetRestore, WithNoCommittedSetTheErrorSaysSoAndListsThePartialSets) {
  ProbeRun r = start_probe_run(4, 3);
  r.store->fail = [](const std::string& n) { return is_manifest(n); };
  checkpoint(r, 1);
  r.store->fail = [](const std::string& n) { return is_manifest(n) || n.find("-a000002-") != std::string::npos; };
  checkpoint(r, 2);
  auto point = find_restore_point(r.store->inner, "probe", r.rt->params(), 4, std::nullopt);
  ASSERT_FALSE(point.ok());
  const std::string& msg = point.status().message();
  EXPECT_NE(msg.find("no checkpoint set of app 'probe' is complete"), std::string::npos) << msg;
  EXPECT_NE(msg.find("epoch 2 (3 of 4 actors)"), std::string::npos) << msg;
  EXPECT_NE(msg.find("epoch 1 (4 of 4 actors, never committed)"), std::string::npos) << msg;
}

TEST(CheckpointSetRestore, ADamagedNewestSetIsPassedOverForTheNextOlderOneAndSaysSo) {
  ProbeRun r = start_probe_run(2, 3);
  std::vector<CheckpointSetRecord> sets;
  ASSERT_NO_FATAL_FAILURE(commit_two_sets(r, sets));
  ASSERT_NO_FATAL_FAILURE(flip_middle_byte(r, sets.back().manifest.members[1].file));
  auto point = find_restore_point(r.store->inner, "probe", r.rt->params(), 2, std::nullopt);
  ASSERT_TRUE(point.ok()) << point.status().to_string();
  EXPECT_EQ(point->epoch, 1u);
  ASSERT_EQ(point->skipped.size(), 1u);
  EXPECT_NE(point->skipped[0].find("epoch 2"), std::string::npos) << point->skipped[0];
  // Asked for by epoch, the damaged set is an error, not a silent substitute.
  auto exact = find_restore_point(r.store->inner, "probe", r.rt->params(), 2, std::uint64_t{2});
  EXPECT_FALSE(exact.ok());
}

TEST(CheckpointSetRestore, ADamagedNewestManifestIsPassedOverAndListedInSkipped) {
  ProbeRun r = start_probe_run(2, 3);
  std::vector<CheckpointSetRecord> sets;
  ASSERT_NO_FATAL_FAILURE(commit_two_sets(r, sets));
  const std::string manifest = sets.back().name;
  ASSERT_NO_FATAL_FAILURE(flip_middle_byte(r, manifest));
  auto point = find_restore_point(r.store->inner, "probe", r.rt->params(), 2, std::nullopt);
  ASSERT_TRUE(point.ok()) << point.status().to_string();
  EXPECT_EQ(point->epoch, 1u);
  ASSERT_EQ(point->skipped.size(), 1u) << "the caller hears that a newer set could not be read";
  EXPECT_NE(point->skipped[0].find(manifest), std::string::npos) << point->skipped[0];
  EXPECT_NE(point->skipped[0].find("damaged"), std::string::npos) << point->skipped[0];
}

// A manifest copied over another epoch's name is intact but claims a set its name does not:
// the scan reports it as damaged instead of listing one set twice.
TEST(CheckpointSetRestore, AManifestUnderAnotherEpochsNameIsReportedNotListed) {
  ProbeRun r = start_probe_run(2, 3);
  std::vector<CheckpointSetRecord> sets;
  ASSERT_NO_FATAL_FAILURE(commit_two_sets(r, sets));
  auto older = r.store->inner.get(sets.front().name);
  ASSERT_TRUE(older.ok());
  ASSERT_TRUE(r.store->inner.put(sets.back().name, older.value()).ok());  // epoch 1's set under epoch 2's name
  auto again = scan_checkpoint_sets(r.store->inner);
  ASSERT_TRUE(again.ok());
  std::size_t damaged = 0;
  for (const auto& set : again.value()) {
    if (set.status.ok()) continue;
    ++damaged;
    EXPECT_NE(set.status.message().find("holds the set of epoch 1"), std::string::npos) << set.status.message();
  }
  EXPECT_EQ(damaged, 1u);
}

TEST(CheckpointSetRestore, TheNewestSetIsTheMostRecentlyCommittedNotTheHighestEpoch) {
  const auto dir = std::filesystem::temp_directory_path() / ("pkrt_sets_" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  auto run = [&](std::uint64_t restore_epoch, std::vector<std::uint64_t> epochs) {
    auto created = Runtime::create(testing::probe_program(), testing::Probe::Params{}, testing::cpu_runtime(2, 1, 256));
    ASSERT_TRUE(created.ok());
    Runtime& rt = *created.value();
    if (restore_epoch != 0) {
      auto store = FileCheckpointStore::open(dir.string());
      ASSERT_TRUE(store.ok());
      RestoreQuery q;
      q.fingerprint = checkpoint_fingerprint(rt);
      q.epoch = restore_epoch;
      auto point = find_restore_point(*store.value(), q);
      ASSERT_TRUE(point.ok()) << point.status().to_string();
      ASSERT_TRUE(rt.restore_before_start(point->epoch, point->images).ok());
    }
    auto store = FileCheckpointStore::open(dir.string());
    ASSERT_TRUE(store.ok());
    CheckpointPolicy policy;
    policy.keep_sets = 10;
    auto manager = CheckpointManager::create(rt, std::move(store.value()), policy);
    ASSERT_TRUE(manager.ok()) << manager.status().to_string();
    ASSERT_TRUE(rt.set_target_epoch(epochs.front()).ok());
    ASSERT_TRUE(rt.start().ok());
    for (std::uint64_t e : epochs) {
      ASSERT_TRUE(rt.run_until(e, 30s).ok());
      ASSERT_TRUE(manager.value()->checkpoint_at(e).ok());
      ASSERT_TRUE(manager.value()->wait_served(30s).ok());
    }
    ASSERT_TRUE(manager.value()->flush(30s).ok());
  };
  run(0, {5, 10});
  run(5, {7});  // restored from 5 into the same directory
  auto store = FileCheckpointStore::open(dir.string());
  ASSERT_TRUE(store.ok());
  auto probe = Runtime::create(testing::probe_program(), testing::Probe::Params{}, testing::cpu_runtime(2, 1, 256));
  ASSERT_TRUE(probe.ok());
  RestoreQuery q;
  q.fingerprint = checkpoint_fingerprint(*probe.value());
  auto point = find_restore_point(*store.value(), q);
  ASSERT_TRUE(point.ok()) << point.status().to_string();
  EXPECT_EQ(point->epoch, 7u) << "the restored run's set is the newest";
  std::filesystem::remove_all(dir);
}

TEST(CheckpointStoreLock, ASecondWriterIsRefusedNamingTheHoldersPid) {
  const auto dir = std::filesystem::temp_directory_path() / ("pkrt_lock_" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  auto first = FileCheckpointStore::open(dir.string());
  auto second = FileCheckpointStore::open(dir.string());
  ASSERT_TRUE(first.ok() && second.ok());
  ASSERT_TRUE(first.value()->lock_for_writing().ok());
  Status st = second.value()->lock_for_writing();
  EXPECT_EQ(st.code(), StatusCode::kBusy);
  EXPECT_NE(st.message().find("pid " + std::to_string(::getpid())), std::string::npos) << st.message();
  first.value().reset();  // the holder goes away: the directory is free again
  EXPECT_TRUE(second.value()->lock_for_writing().ok());
  std::filesystem::remove_all(dir);
}

// A live run's retention removes files between a reader's listing and its reads.
class VanishingStore final : public CheckpointStore {
 public:
  Status put(const std::string& n, const std::vector<std::byte>& b) override { return inner.put(n, b); }
  Result<std::vector<std::byte>> get(const std::string& n) const override { return inner.get(n); }
  Result<std::vector<std::string>> list() const override {
    auto names = inner.list();
    if (names.ok()) {
      names->push_back("probe-e000000000001-s000001-a000000-full.pkck");
      names->push_back("probe-set-e000000000001.pkset");
    }
    return names;
  }
  Status remove(const std::string& n) override { return inner.remove(n); }
  std::string describe(const std::string& n) const override { return inner.describe(n); }
  MemoryCheckpointStore inner;
};

TEST(CheckpointStoreScan, FilesRemovedAfterTheListingAreLeftOutNotReportedDamaged) {
  VanishingStore store;
  auto files = scan_checkpoints(store);
  ASSERT_TRUE(files.ok());
  EXPECT_TRUE(files->empty());
  auto sets = scan_checkpoint_sets(store);
  ASSERT_TRUE(sets.ok());
  EXPECT_TRUE(sets->empty());
}

}  // namespace
}  // namespace pkrt
