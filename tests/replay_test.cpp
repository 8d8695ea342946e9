// Replay: record a run, replay it under other thread counts and chaos seeds, and check the
// verdict: identical for deterministic actors, diverged at the predicted epoch for racy_sum.
#include "examples/heat2d/heat2d_host.hpp"
#include "examples/racy_sum/racy_sum.hpp"
#include "tests/probe_actor.hpp"
#include "tests/test_support.hpp"

#include <pkrt/checkpoint_manager.hpp>
#include <pkrt/checkpoint_store.hpp>
#include <pkrt/crc32.hpp>
#include <pkrt/detail/chaos.hpp>
#include <pkrt/kernels/crc32.hpp>
#include <pkrt/kernels/digest.hpp>
#include <pkrt/replay.hpp>
#include <pkrt/replay_log.hpp>

#include <gtest/gtest.h>

#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <sys/wait.h>
#include <cstring>
#include <filesystem>
#include <random>
#include <set>

namespace pkrt {
namespace {

using namespace std::chrono_literals;
using examples::Heat2d;
using examples::RacySum;

class ScratchDir {
 public:
  explicit ScratchDir(const std::string& tag) {
    static int n = 0;
    path_ = std::filesystem::temp_directory_path() /
            ("pkrt_replay_" + tag + "_" + std::to_string(::getpid()) + "_" + std::to_string(n++));
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  ~ScratchDir() { std::filesystem::remove_all(path_); }
  std::string file(const std::string& name) const { return (path_ / name).string(); }
  std::string str() const { return path_.string(); }

 private:
  std::filesystem::path path_;
};

Heat2d::Params heat_params(std::uint32_t actors) {
  Heat2d::Params p;
  p.width = 48;
  p.height = 40;
  p.seed = 20261122;
  p.stats_every = 20;
  examples::heat2d_choose_tiles(p, actors);
  return p;
}

struct Recording {
  std::uint32_t threads = 2;
  bool chaos = false;
  std::uint64_t chaos_seed = 0;
  std::uint64_t epochs = 200;
  std::uint64_t capacity = 1u << 16;
  std::uint32_t digest_period = 10;
  std::uint64_t injections_until = 0;     // 0: injections over the whole run
  std::uint64_t checkpoint_epoch = 0;     // 0: none
  std::uint64_t second_checkpoint_epoch = 0;  // 0: none; else a second set, after the first
  std::string checkpoint_dir;
  // Park every this many epochs (0: never), so the pump drains the rings at known epochs
  // whatever the machine's speed: a wrapped log's coverage then does not depend on timing.
  std::uint64_t park_every = 0;
  bool post = false;  // injections posted (one post_batch) instead of sent one by one
};

// Records heat2d with seeded random injections (sent before the launch) into `path`.
void record_heat2d(const std::string& path, const Recording& r) {
  const std::uint32_t actors = 6;
  const Heat2d::Params p = heat_params(actors);
  ReplayLogOptions lo;
  lo.capacity_records = r.capacity;
  auto writer = ReplayLogWriter::create(path, lo);
  ASSERT_TRUE(writer.ok()) << writer.status().to_string();
  RuntimeOptions o = testing::cpu_runtime(actors, r.threads);
  o.replay_log = std::move(writer.value());
  o.digest_period = r.digest_period;
  o.chaos = r.chaos;
  o.chaos_seed = r.chaos_seed;
  auto created = Runtime::create(examples::heat2d_program(), p, o);
  ASSERT_TRUE(created.ok()) << created.status().to_string();
  Runtime& rt = *created.value();
  std::unique_ptr<CheckpointManager> manager;
  if (r.checkpoint_epoch != 0) {
    auto store = FileCheckpointStore::open(r.checkpoint_dir);
    ASSERT_TRUE(store.ok()) << store.status().to_string();
    auto m = CheckpointManager::create(rt, std::move(store.value()), CheckpointPolicy{});
    ASSERT_TRUE(m.ok()) << m.status().to_string();
    manager = std::move(m.value());
  }
  std::mt19937_64 rng(77 + r.chaos_seed);
  const std::uint64_t span = r.injections_until != 0 ? r.injections_until : r.epochs;
  std::vector<ReplyFuture> acks;
  std::vector<Command> posts;
  for (int i = 0; i < 24; ++i) {
    examples::Heat2dInjectData inj{static_cast<std::uint32_t>(rng() % p.width), static_cast<std::uint32_t>(rng() % p.height),
                               1.0f + static_cast<float>(rng() % 997) / 7.0f};
    const std::uint64_t epoch = 1 + rng() % span;
    if (r.post) {
      posts.push_back(Command::make(Heat2d::actor_of(p, inj.x, inj.y), examples::kHeat2dInject, inj, epoch));
    } else {
      acks.push_back(rt.send(Heat2d::actor_of(p, inj.x, inj.y), examples::kHeat2dInject, inj, epoch));
    }
  }
  if (r.post) ASSERT_TRUE(rt.post_batch(posts).ok());
  // One command with an error reply (part of the compared stream) and one ping (acknowledged
  // in a kOpAckRange, which is not compared: its applied epoch is what the replay re-injects).
  acks.push_back(rt.send(99, examples::kHeat2dInject, examples::Heat2dInjectData{}, 17));
  acks.push_back(rt.send(2, kOpPing, nullptr, 0, 33));
  auto run_to = [&](std::uint64_t from, std::uint64_t to) {
    for (std::uint64_t e = from; e < to;) {
      e = r.park_every == 0 ? to : std::min(to, (e / r.park_every + 1) * r.park_every);
      ASSERT_TRUE(rt.run_until(e, 60s).ok());
    }
  };
  const std::uint64_t first_stop = r.checkpoint_epoch != 0 ? r.checkpoint_epoch : r.epochs;
  ASSERT_TRUE(rt.set_target_epoch(r.park_every != 0 ? std::min(r.park_every, first_stop) : first_stop).ok());
  ASSERT_TRUE(rt.start().ok());
  run_to(0, first_stop);
  if (r.checkpoint_epoch != 0) {
    ASSERT_TRUE(manager->checkpoint_at(r.checkpoint_epoch).ok());
    ASSERT_TRUE(manager->wait_served(60s).ok());
    std::uint64_t at = r.checkpoint_epoch;
    if (r.second_checkpoint_epoch != 0) {
      run_to(at, r.second_checkpoint_epoch);
      ASSERT_TRUE(manager->checkpoint_at(r.second_checkpoint_epoch).ok());
      ASSERT_TRUE(manager->wait_served(60s).ok());
      at = r.second_checkpoint_epoch;
    }
    run_to(at, r.epochs);
    ASSERT_TRUE(manager->flush(60s).ok());
  }
  for (auto& a : acks) (void)a.get();
  ASSERT_TRUE(rt.shutdown().ok());
  manager.reset();
  ASSERT_TRUE(o.replay_log->close().ok());
}

ReplayLog read_log(const std::string& path) {
  auto log = read_replay_log(path);
  EXPECT_TRUE(log.ok()) << log.status().to_string();
  return log.ok() ? std::move(log.value()) : ReplayLog{};
}

const std::array<const Program*, 2> kPrograms = {&examples::heat2d_program(), &examples::racy_sum_program()};

ReplayOptions replay_with(std::uint32_t threads, bool chaos, std::uint64_t seed) {
  ReplayOptions o;
  o.backend = BackendKind::kCpu;
  o.threads = threads;
  o.chaos = chaos;
  o.chaos_seed = seed;
  o.timeout = 120s;
  return o;
}

std::string verdict(const ReplayResult& r) { return format_replay_report(r); }

TEST(Replay, Heat2dWithInjectionsReplaysIdenticallyUnderOtherThreadCountsAndChaosSeeds) {
  ScratchDir dir("heat");
  Recording rec;
  rec.threads = 2;
  rec.chaos = true;
  rec.chaos_seed = 3;
  record_heat2d(dir.file("run.log"), rec);
  const ReplayLog log = read_log(dir.file("run.log"));
  ASSERT_EQ(log.complete_epoch, rec.epochs);
  struct Case {
    std::uint32_t threads;
    bool chaos;
    std::uint64_t seed;
  };
  for (const Case c : {Case{1, false, 0}, Case{3, true, 11}, Case{6, true, 12345}, Case{2, true, 3}}) {
    SCOPED_TRACE("threads " + std::to_string(c.threads) + " chaos " + std::to_string(c.chaos) + " seed " +
                 std::to_string(c.seed));
    auto r = replay_log(log, kPrograms, replay_with(c.threads, c.chaos, c.seed));
    ASSERT_TRUE(r.ok()) << r.status().to_string();
    EXPECT_TRUE(r->identical) << verdict(r.value());
    EXPECT_EQ(r->commands_injected, 26u);
    // 6 actors x 20 digests + 6 x 10 statistics events + the one error reply (the other 25
    // commands are acknowledged in kOpAckRange runs, whose grouping follows the blocks).
    EXPECT_EQ(r->observations_compared, 6u * 20 + 6u * 10 + 1);
  }
}

TEST(Replay, PostDrivenHeat2dRunReplaysIdenticallyUnderChaosSeeds) {
  ScratchDir dir("post");
  Recording rec;
  rec.threads = 3;
  rec.chaos = true;
  rec.chaos_seed = 5;
  rec.post = true;
  record_heat2d(dir.file("run.log"), rec);
  const ReplayLog log = read_log(dir.file("run.log"));
  ASSERT_EQ(log.complete_epoch, rec.epochs);
  std::size_t posted = 0, ranges = 0;
  for (const ReplayRecord& r : log.records) {
    if (r.direction == static_cast<std::uint8_t>(ReplayDirection::kH2K) && (r.slot.header.flags & kFlagPost) != 0) ++posted;
    if (r.slot.header.opcode == kOpAckRange) ++ranges;
  }
  EXPECT_EQ(posted, 24u) << "every posted command is in the log";
  EXPECT_GT(ranges, 0u) << "with a log, posts are acknowledged (in runs) so their applied epochs are known";
  for (const auto& [threads, seed] : {std::pair{1u, 0ull}, std::pair{2u, 11ull}, std::pair{5u, 99ull}}) {
    SCOPED_TRACE("threads " + std::to_string(threads) + " seed " + std::to_string(seed));
    auto r = replay_log(log, kPrograms, replay_with(threads, seed != 0, seed));
    ASSERT_TRUE(r.ok()) << r.status().to_string();
    EXPECT_TRUE(r->identical) << verdict(r.value());
    EXPECT_EQ(r->commands_injected, 26u);
    EXPECT_EQ(r->observations_compared, 6u * 20 + 6u * 10 + 1);
  }
}

TEST(Replay, Heat2dReplaysIdenticallyFromAMidRunCheckpoint) {
  ScratchDir dir("ckpt");
  Recording rec;
  rec.threads = 3;
  rec.checkpoint_epoch = 90;
  rec.checkpoint_dir = dir.file("ckpt");
  std::filesystem::create_directories(rec.checkpoint_dir);
  record_heat2d(dir.file("run.log"), rec);
  const ReplayLog log = read_log(dir.file("run.log"));
  ReplayOptions o = replay_with(2, true, 5);
  o.from_checkpoint = rec.checkpoint_dir;
  auto r = replay_log(log, kPrograms, o);
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_TRUE(r->from_checkpoint);
  EXPECT_EQ(r->start_epoch, 90u);
  EXPECT_TRUE(r->identical) << verdict(r.value());
  EXPECT_GT(r->observations_compared, 6u * 11);  // digests 100..200 at least
}

// A reader never creates or changes what it reads: a mistyped --from-checkpoint path is an
// error naming it, not an empty directory made on the spot.
TEST(Replay, FromCheckpointOfAMissingDirectoryIsNotFoundAndCreatesNothing) {
  ScratchDir dir("ckpt_missing");
  Recording rec;
  record_heat2d(dir.file("run.log"), rec);
  const ReplayLog log = read_log(dir.file("run.log"));
  ReplayOptions o = replay_with(1, false, 0);
  o.from_checkpoint = dir.file("no-such-dir");
  auto r = replay_log(log, kPrograms, o);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kNotFound) << r.status().to_string();
  EXPECT_NE(r.status().message().find("does not exist"), std::string::npos) << r.status().message();
  EXPECT_FALSE(std::filesystem::exists(o.from_checkpoint));
}

// racy_sum's epoch-e total, as chaos mode orders the adds: blocks in the seeded order,
// actors in index order within a block.
float predicted_total(std::uint64_t chaos_seed, std::uint64_t epoch, std::uint32_t actors, std::uint32_t blocks,
                      std::uint64_t app_seed) {
  float acc = 0.0f;
  for (std::uint32_t b : detail::chaos_block_order(chaos_seed, epoch, blocks)) {
    for (std::uint32_t a = detail::block_first_actor(b, blocks, actors); a < detail::block_first_actor(b + 1, blocks, actors); ++a)
      acc = acc + RacySum::contribution(app_seed, a, epoch);
  }
  return acc;
}

void record_racy_sum(const std::string& path, std::uint32_t actors, std::uint32_t threads, std::uint64_t chaos_seed,
                     std::uint64_t epochs) {
  RacySum::Params p;
  p.seed = 9;
  p.report_every = 1;
  ReplayLogOptions lo;
  lo.capacity_records = 1u << 14;
  auto writer = ReplayLogWriter::create(path, lo);
  ASSERT_TRUE(writer.ok()) << writer.status().to_string();
  RuntimeOptions o = testing::cpu_runtime(actors, threads);
  o.replay_log = std::move(writer.value());
  o.digest_period = 7;
  o.chaos = true;
  o.chaos_seed = chaos_seed;
  auto created = Runtime::create(examples::racy_sum_program(), p, o);
  ASSERT_TRUE(created.ok()) << created.status().to_string();
  ASSERT_TRUE(created.value()->set_target_epoch(epochs).ok());
  ASSERT_TRUE(created.value()->start().ok());
  ASSERT_TRUE(created.value()->run_until(epochs, 60s).ok());
  ASSERT_TRUE(created.value()->shutdown().ok());
  ASSERT_TRUE(o.replay_log->close().ok());
}

TEST(Replay, RacySumUnderChaosReportsExactlyThePredictedTotals) {
  ScratchDir dir("racy_totals");
  constexpr std::uint32_t kActors = 8, kThreads = 4;
  record_racy_sum(dir.file("run.log"), kActors, kThreads, 21, 60);
  const ReplayLog log = read_log(dir.file("run.log"));
  std::size_t checked = 0;
  for (const ReplayRecord& r : log.records) {
    if (r.direction != static_cast<std::uint8_t>(ReplayDirection::kK2H) || r.slot.header.opcode != examples::kRacySumTotal)
      continue;
    examples::RacySumTotalData d;
    std::memcpy(&d, r.slot.payload.data, sizeof d);
    const float want = predicted_total(21, d.epoch, kActors, kThreads, 9);
    EXPECT_EQ(std::memcmp(&d.total, &want, sizeof want), 0) << "epoch " << d.epoch;
    ++checked;
  }
  EXPECT_EQ(checked, 59u);
}

TEST(Replay, RacySumUnderAnotherChaosSeedDivergesAtThePredictedEpochEveryTime) {
  ScratchDir dir("racy");
  constexpr std::uint32_t kActors = 8, kThreads = 4;
  constexpr std::uint64_t kRecordSeed = 1, kEpochs = 40;
  record_racy_sum(dir.file("run.log"), kActors, kThreads, kRecordSeed, kEpochs);
  const ReplayLog log = read_log(dir.file("run.log"));
  for (std::uint64_t replay_seed : {2ull, 3ull, 1000ull}) {
    // The first epoch whose total differs between the two block orders; actor 0 reports it
    // one epoch later.
    std::uint64_t first = 0;
    for (std::uint64_t e = 1; e < kEpochs && first == 0; ++e) {
      const float a = predicted_total(kRecordSeed, e, kActors, kThreads, 9);
      const float b = predicted_total(replay_seed, e, kActors, kThreads, 9);
      if (std::memcmp(&a, &b, sizeof a) != 0) first = e;
    }
    ASSERT_NE(first, 0u) << "seeds " << kRecordSeed << " and " << replay_seed << " order every epoch alike";
    for (int attempt = 0; attempt < 3; ++attempt) {
      SCOPED_TRACE("replay seed " + std::to_string(replay_seed) + ", attempt " + std::to_string(attempt));
      auto r = replay_log(log, kPrograms, replay_with(kThreads, true, replay_seed));
      ASSERT_TRUE(r.ok()) << r.status().to_string();
      ASSERT_FALSE(r->identical);
      const ReplayDivergence& d = *r->divergence;
      EXPECT_EQ(d.kind, ReplayDivergence::Kind::kDiffers) << verdict(r.value());
      EXPECT_EQ(d.epoch, first + 1) << verdict(r.value());
      EXPECT_EQ(d.actor, 0u);
      EXPECT_EQ(d.opcode, examples::kRacySumTotal);
      EXPECT_EQ(d.field, "data");
    }
  }
}

TEST(Replay, RacySumUnderTheSameChaosSeedReplaysIdentically) {
  ScratchDir dir("racy_same");
  record_racy_sum(dir.file("run.log"), 8, 4, 42, 80);
  const ReplayLog log = read_log(dir.file("run.log"));
  auto r = replay_log(log, kPrograms, replay_with(4, true, 42));
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_TRUE(r->identical) << verdict(r.value());
}

TEST(Replay, LogOfAnAppThisBinaryDoesNotRegisterIsRefused) {
  ScratchDir dir("app");
  record_heat2d(dir.file("run.log"), Recording{});
  const ReplayLog log = read_log(dir.file("run.log"));
  const std::array<const Program*, 1> only_racy = {&examples::racy_sum_program()};
  auto r = replay_log(log, only_racy, replay_with(1, false, 0));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("'heat2d'"), std::string::npos) << r.status().message();
  EXPECT_NE(r.status().message().find("Fix:"), std::string::npos);
}

TEST(Replay, LogWhoseParametersDoNotMatchTheRegisteredActorsIsRefused) {
  ScratchDir dir("params");
  record_heat2d(dir.file("run.log"), Recording{});
  ReplayLog log = read_log(dir.file("run.log"));
  {
    ReplayLog changed = log;  // another grid size: a different layout than recorded
    Heat2d::Params p;
    std::memcpy(&p, changed.info.params.data(), sizeof p);
    p.width += 8;
    std::memcpy(changed.info.params.data(), &p, sizeof p);
    auto r = replay_log(changed, kPrograms, replay_with(1, false, 0));
    ASSERT_FALSE(r.ok());
    EXPECT_NE(r.status().message().find("configuration hash"), std::string::npos) << r.status().message();
  }
  {
    ReplayLog shorter = log;  // a build whose Params struct has another size
    shorter.info.params.resize(shorter.info.params.size() - 4);
    auto r = replay_log(shorter, kPrograms, replay_with(1, false, 0));
    ASSERT_FALSE(r.ok());
    EXPECT_NE(r.status().message().find("bytes"), std::string::npos) << r.status().message();
  }
}

TEST(Replay, LogOfARunThatStartedFromACheckpointNeedsThatCheckpoint) {
  ScratchDir dir("restored");
  record_heat2d(dir.file("run.log"), Recording{});
  ReplayLog log = read_log(dir.file("run.log"));
  log.info.start_epoch = 40;  // as if the recorded run had been restored at epoch 40
  auto r = replay_log(log, kPrograms, replay_with(2, false, 0));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(r.status().message().find("--from-checkpoint"), std::string::npos) << r.status().message();
}

// 300 epochs into a 128-record log: it wraps, keeping roughly the last 140 epochs.
Recording wrapping_recording() {
  Recording rec;
  rec.capacity = 128;
  rec.epochs = 300;
  rec.digest_period = 10;
  rec.park_every = 10;
  return rec;
}

TEST(Replay, WrappedLogWithoutACoveringCheckpointIsRefused) {
  ScratchDir dir("wrap");
  record_heat2d(dir.file("run.log"), wrapping_recording());
  const ReplayLog log = read_log(dir.file("run.log"));
  ASSERT_TRUE(log.wrapped);
  EXPECT_EQ(log.records.size(), 128u);
  EXPECT_EQ(log.records.back().seq, log.written - 1);  // the newest are kept
  auto r = replay_log(log, kPrograms, replay_with(2, false, 0));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(r.status().message().find("wrapped"), std::string::npos) << r.status().message();
  EXPECT_NE(r.status().message().find("--from-checkpoint"), std::string::npos) << r.status().message();
}

TEST(Replay, WrappedLogReplaysFromACheckpointItCovers) {
  ScratchDir dir("wrap_ckpt");
  Recording rec = wrapping_recording();
  rec.injections_until = 100;  // the injections' records are the oldest, overwritten ones
  rec.checkpoint_epoch = 260;
  rec.checkpoint_dir = dir.file("ckpt");
  std::filesystem::create_directories(rec.checkpoint_dir);
  record_heat2d(dir.file("run.log"), rec);
  const ReplayLog log = read_log(dir.file("run.log"));
  ASSERT_TRUE(log.wrapped);
  ReplayOptions o = replay_with(3, true, 8);
  o.from_checkpoint = rec.checkpoint_dir;
  auto r = replay_log(log, kPrograms, o);
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_TRUE(r->identical) << verdict(r.value());
  EXPECT_EQ(r->start_epoch, 260u);
}

// A log with one changed observation: compare_replay_logs names it, and ignores what
// is not behaviour (record time, block, epoch_observed).
TEST(ReplayCompare, NamesTheFirstChangedObservationAndIgnoresTimeAndPlacement) {
  ScratchDir dir("cmp");
  record_heat2d(dir.file("run.log"), Recording{});
  const ReplayLog expected = read_log(dir.file("run.log"));
  ReplayLog moved = expected;
  for (ReplayRecord& r : moved.records) {
    r.time_ns += 12345;
    r.block = 7 - r.block;
    r.epoch_observed = 0;
  }
  EXPECT_FALSE(compare_replay_logs(expected, moved, 0, 200, {}).divergence.has_value());

  ReplayLog changed = expected;
  std::size_t victim = 0;
  for (std::size_t i = 0; i < changed.records.size(); ++i) {
    const Slot& s = changed.records[i].slot;
    if (s.header.opcode == kOpDigest && s.payload.epoch == 120 && s.header.actor == 4) victim = i;
  }
  ASSERT_NE(victim, 0u);
  changed.records[victim].slot.payload.data[0] ^= std::byte{1};
  const ReplayComparison cmp = compare_replay_logs(expected, changed, 0, 200, {});
  ASSERT_TRUE(cmp.divergence.has_value());
  EXPECT_EQ(cmp.divergence->epoch, 120u);
  EXPECT_EQ(cmp.divergence->actor, 4u);
  EXPECT_EQ(cmp.divergence->opcode, kOpDigest);
  EXPECT_EQ(cmp.divergence->field, "data");
  EXPECT_FALSE(cmp.divergence->preceding_commands.empty());
  for (const auto& c : cmp.divergence->preceding_commands) EXPECT_LE(c.applied_epoch, 120u);

  ReplayLog dropped = expected;
  dropped.records.erase(dropped.records.begin() + static_cast<std::ptrdiff_t>(victim));
  const ReplayComparison missing = compare_replay_logs(expected, dropped, 0, 200, {});
  ASSERT_TRUE(missing.divergence.has_value());
  EXPECT_EQ(missing.divergence->kind, ReplayDivergence::Kind::kMissing);
  EXPECT_EQ(missing.divergence->epoch, 120u);
}

TEST(Replay, TornLogIsComparedOnlyThroughItsLastCompleteEpoch) {
  ScratchDir dir("torn");
  // Parks every 20 epochs, so the pump has labelled records with complete epochs well before
  // the cut whatever the machine's load (unparked, a loaded machine's pump may drain the
  // whole run in a few late passes, leaving nothing complete before two thirds).
  Recording rec;
  rec.park_every = 20;
  record_heat2d(dir.file("run.log"), rec);
  ReplayLog log = read_log(dir.file("run.log"));
  // As if the process died two thirds of the way: the reader stopped at a torn record.
  log.records.resize(log.records.size() * 2 / 3);
  log.stop_note = "record " + std::to_string(log.records.size()) + ": CRC mismatch";
  auto r = replay_log(log, kPrograms, replay_with(2, false, 0));
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_TRUE(r->identical) << verdict(r.value());
  EXPECT_EQ(r->end_epoch, log.records.back().epoch_observed);
  EXPECT_LT(r->end_epoch, 200u);
  EXPECT_GT(r->end_epoch, 0u);
}

// Rewrites the header's complete_epoch of the log at `path` and fixes the counters block's
// CRC, as a crafted file would (docs/replay-log-format.md: counters at 2304, CRC at 2324).
void craft_complete_epoch(const std::string& path, std::uint64_t epoch) {
  std::FILE* f = std::fopen(path.c_str(), "r+b");
  ASSERT_NE(f, nullptr);
  std::array<std::byte, 20> counters{};
  ASSERT_EQ(std::fseek(f, 2304, SEEK_SET), 0);
  ASSERT_EQ(std::fread(counters.data(), 1, counters.size(), f), counters.size());
  std::memcpy(counters.data() + 8, &epoch, sizeof epoch);
  const std::uint32_t crc = crc32(counters.data(), counters.size());
  ASSERT_EQ(std::fseek(f, 2304, SEEK_SET), 0);
  ASSERT_EQ(std::fwrite(counters.data(), 1, counters.size(), f), counters.size());
  ASSERT_EQ(std::fwrite(&crc, 1, sizeof crc, f), sizeof crc);
  ASSERT_EQ(std::fclose(f), 0);
}

TEST(Replay, CraftedEpochCounterDoesNotSpin) {
  ScratchDir dir("epoch");
  Recording rec;
  record_heat2d(dir.file("run.log"), rec);
  craft_complete_epoch(dir.file("run.log"), (std::uint64_t{1} << 62) - 1);
  const ReplayLog log = read_log(dir.file("run.log"));
  ASSERT_EQ(log.complete_epoch, (std::uint64_t{1} << 62) - 1) << "the reader must see the crafted counter";
  ReplayOptions o = replay_with(2, false, 0);
  o.timeout = 5s;  // the grid would otherwise run toward 2^62 until it
  auto r = replay_log(log, kPrograms, o);
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_TRUE(r->identical) << verdict(r.value());
  EXPECT_EQ(r->end_epoch, rec.epochs) << "the records end at the run's last epoch";
  const std::string report = verdict(r.value());
  EXPECT_NE(report.find("complete_epoch is " + std::to_string((std::uint64_t{1} << 62) - 1)), std::string::npos)
      << report;
}

// Rewrites the record with sequence `seq` of the log at `path` through `edit` and gives it a
// valid CRC, as a crafted file would (docs/replay-log-format.md: 128-byte records after the
// 4 KiB header, record s in slot s % capacity).
template <class Edit>
void craft_record(const std::string& path, std::uint64_t seq, std::uint64_t capacity, Edit edit) {
  std::FILE* f = std::fopen(path.c_str(), "r+b");
  ASSERT_NE(f, nullptr);
  const long offset = static_cast<long>(kReplayLogHeaderBytes + (seq % capacity) * kReplayRecordBytes);
  ReplayRecord r;
  ASSERT_EQ(std::fseek(f, offset, SEEK_SET), 0);
  ASSERT_EQ(std::fread(&r, 1, sizeof r, f), sizeof r);
  ASSERT_EQ(r.seq, seq);
  edit(r);
  r.crc = replay_record_crc(r);
  ASSERT_EQ(std::fseek(f, offset, SEEK_SET), 0);
  ASSERT_EQ(std::fwrite(&r, 1, sizeof r, f), sizeof r);
  ASSERT_EQ(std::fclose(f), 0);
}

// A kOpAckRange claiming 2^32 - 1 requests (with a valid CRC) once made replay walk all of
// them into a hash map (minutes and tens of GB); an acknowledgement can only cover commands
// the log recorded, so it is refused at once, naming the record.
TEST(Replay, CraftedAckRangeIsBoundedByTheRecordedRequests) {
  ScratchDir dir("ackrange");
  Recording rec;
  record_heat2d(dir.file("run.log"), rec);
  const ReplayLog original = read_log(dir.file("run.log"));
  const ReplayRecord* range = nullptr;
  for (const ReplayRecord& r : original.records)
    if (r.direction == static_cast<std::uint8_t>(ReplayDirection::kK2H) && r.slot.header.opcode == kOpAckRange) range = &r;
  ASSERT_NE(range, nullptr) << "the ping is acknowledged in a kOpAckRange";
  craft_record(dir.file("run.log"), range->seq, original.capacity, [](ReplayRecord& r) {
    AckRangeData d;
    std::memcpy(&d, r.slot.payload.data, sizeof d);
    d.count = 0xFFFFFFFFu;
    std::memcpy(r.slot.payload.data, &d, sizeof d);
  });
  const ReplayLog log = read_log(dir.file("run.log"));
  ASSERT_TRUE(log.stop_note.empty()) << "the crafted record must read as intact: " << log.stop_note;
  const auto t0 = std::chrono::steady_clock::now();
  auto r = replay_log(log, kPrograms, replay_with(2, false, 0));
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 2s);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kCorruptData);
  const std::string& m = r.status().message();
  for (const std::string& part : {"record " + std::to_string(range->seq), std::string("acknowledges 4294967295 requests"),
                                  std::string("never wrapped"), std::string("crafted"), std::string("Fix:")})
    EXPECT_NE(m.find(part), std::string::npos) << "missing '" << part << "' in: " << m;
  // The pure comparison walks the same acknowledgements: bounded too.
  ReplayLog changed = log;
  for (ReplayRecord& x : changed.records)
    if (x.slot.header.opcode == kOpDigest) x.slot.payload.data[0] ^= std::byte{1};
  const auto t1 = std::chrono::steady_clock::now();
  EXPECT_TRUE(compare_replay_logs(log, changed, 0, rec.epochs, {}).divergence.has_value());
  EXPECT_LT(std::chrono::steady_clock::now() - t1, 2s);
}

// A K2H record crafted to an epoch near 2^62, with the header's complete_epoch crafted to
// match, once drove the replay's grid toward it until the timeout. The grid's own stop
// report says where the run ended: a record past it is refused.
TEST(Replay, CraftedRecordPastTheRunsStopReportIsRefused) {
  ScratchDir dir("stop");
  Recording rec;
  record_heat2d(dir.file("run.log"), rec);
  const ReplayLog original = read_log(dir.file("run.log"));
  const ReplayRecord* digest = nullptr;
  for (const ReplayRecord& r : original.records)
    if (r.slot.header.opcode == kOpDigest) digest = &r;
  ASSERT_NE(digest, nullptr);
  const std::uint64_t far = (std::uint64_t{1} << 62) - 2;
  craft_record(dir.file("run.log"), digest->seq, original.capacity,
               [far](ReplayRecord& r) { r.slot.payload.epoch = far; });
  craft_complete_epoch(dir.file("run.log"), far + 1);
  const ReplayLog log = read_log(dir.file("run.log"));
  ASSERT_EQ(log.complete_epoch, far + 1) << "the reader must see the crafted counter";
  ReplayOptions o = replay_with(2, false, 0);
  o.timeout = 5s;  // the grid would otherwise run toward 2^62 until it
  const auto t0 = std::chrono::steady_clock::now();
  auto r = replay_log(log, kPrograms, o);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 2s);
  ASSERT_FALSE(r.ok()) << verdict(r.value());
  EXPECT_EQ(r.status().code(), StatusCode::kCorruptData) << r.status().to_string();
  const std::string& m = r.status().message();
  for (const std::string& part : {"record " + std::to_string(digest->seq), "epoch " + std::to_string(far),
                                  "ended at epoch " + std::to_string(rec.epochs), std::string("crafted")})
    EXPECT_NE(m.find(part), std::string::npos) << "missing '" << part << "' in: " << m;
}

// --from-checkpoint restores through committed sets: the newest one at or before the log's
// horizon; a damaged newer set is passed over, and the report says so.
TEST(Replay, FromCheckpointPassesOverADamagedNewerSetAndSaysSo) {
  ScratchDir dir("sets");
  Recording rec;
  rec.checkpoint_epoch = 90;
  rec.second_checkpoint_epoch = 150;
  rec.checkpoint_dir = dir.file("ckpt");
  std::filesystem::create_directories(rec.checkpoint_dir);
  record_heat2d(dir.file("run.log"), rec);
  const ReplayLog log = read_log(dir.file("run.log"));
  // Damage one member of the set at epoch 150.
  std::string victim;
  for (const auto& e : std::filesystem::directory_iterator(rec.checkpoint_dir)) {
    const std::string name = e.path().filename().string();
    if (name.find("-e000000000150-") != std::string::npos && name.ends_with(".pkck")) victim = e.path().string();
  }
  ASSERT_FALSE(victim.empty());
  {
    std::FILE* f = std::fopen(victim.c_str(), "r+b");
    ASSERT_NE(f, nullptr);
    ASSERT_EQ(std::fseek(f, -8, SEEK_END), 0);
    const unsigned char junk[4] = {0xde, 0xad, 0xbe, 0xef};
    ASSERT_EQ(std::fwrite(junk, 1, 4, f), 4u);
    ASSERT_EQ(std::fclose(f), 0);
  }
  ReplayOptions o = replay_with(2, false, 0);
  o.from_checkpoint = rec.checkpoint_dir;
  auto r = replay_log(log, kPrograms, o);
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_EQ(r->start_epoch, 90u);
  EXPECT_TRUE(r->identical) << verdict(r.value());
  const std::string report = verdict(r.value());
  EXPECT_NE(report.find("passed over the set at epoch 150"), std::string::npos) << report;

  // A log whose horizon is before every set: refused, saying why.
  ReplayLog short_log = log;
  while (!short_log.records.empty() && short_log.records.back().epoch_observed >= 80) short_log.records.pop_back();
  ASSERT_FALSE(short_log.records.empty());
  short_log.stop_note = "record " + std::to_string(short_log.records.size()) + ": CRC mismatch";
  auto refused = replay_log(short_log, kPrograms, o);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), StatusCode::kFailedPrecondition) << refused.status().to_string();
  EXPECT_NE(refused.status().message().find("past the log's last complete epoch"), std::string::npos)
      << refused.status().message();
}

// A log as a crafted file could describe it: heat2d with these params and actors, no records.
ReplayLog crafted_heat2d_log(const Heat2d::Params& p, std::uint32_t num_actors) {
  ReplayLog log;
  log.capacity = 4096;
  log.complete_epoch = 10;
  log.info.app = "heat2d";
  log.info.backend = "cpu";
  log.info.blocks = 1;
  log.info.num_actors = num_actors;
  log.info.params.resize(sizeof p);
  std::memcpy(log.info.params.data(), &p, sizeof p);
  return log;
}

TEST(Replay, CraftedActorCountIsRefusedWithoutWalkingIt) {
  // Laying heat2d out for this many actors takes minutes.
  const ReplayLog log = crafted_heat2d_log(heat_params(6), 0xFFFFFFFFu);
  auto r = replay_log(log, kPrograms, replay_with(1, false, 0));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kCorruptData);
  const std::string& m = r.status().message();
  for (const std::string& part : {std::string("num_actors is 4294967295"), std::string("16777216"), std::string("Fix:")})
    EXPECT_NE(m.find(part), std::string::npos) << "missing '" << part << "' in: " << m;
}

// heat2d's layout divides by tiles_x and loops over tiles_x * tiles_y: params its check_params
// refuses must be refused before anything lays the app out (a crafted log crashed with SIGFPE).
TEST(Replay, CraftedParamsTheAppRejectsAreRefusedBeforeTheAppIsLaidOut) {
  for (const std::uint32_t tiles_x : {0u, 0xFFFFFFFFu}) {
    SCOPED_TRACE("tiles_x " + std::to_string(tiles_x));
    Heat2d::Params p = heat_params(6);
    p.tiles_x = tiles_x;
    const ReplayLog log = crafted_heat2d_log(p, 6);
    auto r = replay_log(log, kPrograms, replay_with(1, false, 0));
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), StatusCode::kCorruptData);
    const std::string& m = r.status().message();
    for (const std::string& part : {std::string("rejected by the app"), std::string("tiles_x"), std::string("Fix:")})
      EXPECT_NE(m.find(part), std::string::npos) << "missing '" << part << "' in: " << m;
  }
}

// The CLI registers only the built-in examples: a log of another app exits 2, saying which.
TEST(ReplayCli, LogOfAnAppTheCliDoesNotRegisterExits2WithTheAppsName) {
  ScratchDir dir("cli_app");
  {
    ReplayLogOptions lo;
    lo.capacity_records = 1024;
    auto writer = ReplayLogWriter::create(dir.file("probe.log"), lo);
    ASSERT_TRUE(writer.ok()) << writer.status().to_string();
    RuntimeOptions o = testing::cpu_runtime(2, 1);
    o.replay_log = std::move(writer.value());
    auto created = Runtime::create(testing::probe_program(), testing::Probe::Params{}, o);
    ASSERT_TRUE(created.ok()) << created.status().to_string();
    ASSERT_TRUE(created.value()->set_target_epoch(5).ok());
    ASSERT_TRUE(created.value()->start().ok());
    ASSERT_TRUE(created.value()->run_until(5, 30s).ok());
    ASSERT_TRUE(created.value()->shutdown().ok());
    ASSERT_TRUE(o.replay_log->close().ok());
  }
  const std::string cmd = std::string(PKRT_CLI_PATH) + " replay " + dir.file("probe.log") + " 2>&1";
  std::FILE* pipe = ::popen(cmd.c_str(), "r");
  ASSERT_NE(pipe, nullptr);
  std::string out;
  char buf[512];
  while (std::fgets(buf, sizeof buf, pipe) != nullptr) out += buf;
  const int status = ::pclose(pipe);
  ASSERT_TRUE(WIFEXITED(status)) << out;
  EXPECT_EQ(WEXITSTATUS(status), 2) << out;
  EXPECT_NE(out.find("'probe'"), std::string::npos) << out;
  EXPECT_NE(out.find("Fix:"), std::string::npos) << out;
}

TEST(Chaos, BlockOrderIsAPermutationThatDependsOnSeedAndEpoch) {
  std::set<std::vector<std::uint32_t>> seen;
  for (std::uint64_t seed = 0; seed < 8; ++seed) {
    for (std::uint64_t epoch = 1; epoch < 8; ++epoch) {
      auto order = detail::chaos_block_order(seed, epoch, 5);
      EXPECT_EQ(order, detail::chaos_block_order(seed, epoch, 5));  // reproducible
      seen.insert(order);
      std::sort(order.begin(), order.end());
      EXPECT_EQ(order, (std::vector<std::uint32_t>{0, 1, 2, 3, 4}));
    }
  }
  EXPECT_GT(seen.size(), 20u);  // 56 draws of 120 orders: most are distinct
}

TEST(Chaos, IsRefusedOnTheCudaBackend) {
  RuntimeOptions o = testing::cpu_runtime(2, 2);
  o.backend = BackendKind::kCuda;
  o.chaos = true;
  auto r = Runtime::create(examples::racy_sum_program(), RacySum::Params{}, o);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("--backend cpu"), std::string::npos);
}

// The digest's slice-and-combine gives the plain CRC for every block size a GPU may use.
TEST(Digest, SlicedCrcEqualsTheWholeCrcForAnyThreadCount) {
  std::mt19937_64 rng(5);
  for (std::uint64_t bytes : {0ull, 1ull, 63ull, 64ull, 1000ull, 69120ull}) {
    std::vector<std::byte> data(bytes);
    for (auto& b : data) b = static_cast<std::byte>(rng());
    const std::uint32_t whole = crc::crc32_update(0, data.data(), bytes);
    for (std::uint32_t n : {1u, 32u, 128u, 1000u, 1024u}) {
      const std::uint64_t slice = detail::digest_slice_bytes(bytes, n);
      std::uint32_t crc = 0;
      for (std::uint32_t t = 0; t < n; ++t) {
        const std::uint64_t begin = std::min<std::uint64_t>(t * slice, bytes);
        const std::uint64_t end = std::min<std::uint64_t>(begin + slice, bytes);
        crc = crc::crc32_combine(crc, crc::crc32_update(0, data.data() + begin, end - begin), end - begin);
      }
      EXPECT_EQ(crc, whole) << bytes << " bytes over " << n << " threads";
    }
  }
}

}  // namespace
}  // namespace pkrt
