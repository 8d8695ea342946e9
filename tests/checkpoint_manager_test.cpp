// CheckpointManager: scheduled and on-demand checkpoints become durable files that restore
// the run exactly; retention keeps the newest committed sets and every base a kept delta needs;
// failures are counted; a restart rebuilds the history from the directory.
#include "examples/heat2d/heat2d_host.hpp"
#include "tests/probe_actor.hpp"
#include "tests/test_support.hpp"

#include <pkrt/checkpoint_manager.hpp>
#include <pkrt/runtime.hpp>

#include <gtest/gtest.h>

#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <thread>

namespace pkrt {
namespace {

using namespace std::chrono_literals;

RuntimeOptions cpu(std::uint32_t actors, std::uint32_t threads, std::uint32_t chunk = 256) {
  return testing::cpu_runtime(actors, threads, chunk);
}

// A store whose writes can be made to fail, to see failures counted and chains restarted.
class FlakyStore final : public CheckpointStore {
 public:
  bool fail_writes = false;
  Status put(const std::string& name, const std::vector<std::byte>& bytes) override {
    if (fail_writes) return Status(StatusCode::kIoError, "injected write failure for " + name);
    return inner.put(name, bytes);
  }
  Result<std::vector<std::byte>> get(const std::string& name) const override { return inner.get(name); }
  Result<std::vector<std::string>> list() const override { return inner.list(); }
  Status remove(const std::string& name) override { return inner.remove(name); }
  std::string describe(const std::string& name) const override { return inner.describe(name); }
  MemoryCheckpointStore inner;
};

// Probe state changes only in its first chunk, so later snapshots are deltas.
TEST(CheckpointManager, RetentionKeepsTheNewestAndEveryBaseAKeptDeltaNeeds) {
  auto created = Runtime::create(testing::probe_program(), testing::Probe::Params{}, cpu(2, 1));
  ASSERT_TRUE(created.ok());
  Runtime& rt = *created.value();
  auto store = std::make_unique<FlakyStore>();
  FlakyStore* raw = store.get();
  CheckpointPolicy policy;
  policy.keep_sets = 2;
  policy.max_delta_chain = 3;
  policy.encode.zstd_level = 0;
  auto manager = CheckpointManager::create(rt, std::move(store), policy);
  ASSERT_TRUE(manager.ok()) << manager.status().to_string();
  ASSERT_TRUE(rt.set_target_epoch(1).ok());
  ASSERT_TRUE(rt.start().ok());
  for (std::uint64_t e = 1; e <= 7; ++e) {
    ASSERT_TRUE(rt.run_until(e, 30s).ok());
    ASSERT_TRUE(manager.value()->checkpoint_at(e).ok());
    ASSERT_TRUE(manager.value()->wait_served(30s).ok());
  }
  ASSERT_TRUE(manager.value()->flush(30s).ok());
  // Epochs 1..7: full at 1, deltas 2,3,4, full at 5 (chain limit 3), deltas 6,7.
  auto history = scan_checkpoints(raw->inner);
  ASSERT_TRUE(history.ok());
  std::vector<std::uint64_t> epochs_actor0;
  for (const auto& r : history.value())
    if (r.info.actor == 0) epochs_actor0.push_back(r.info.epoch);
  EXPECT_EQ(epochs_actor0, (std::vector<std::uint64_t>{5, 6, 7})) << "newest 2 (6, 7) plus their base 5";
  for (const auto& r : history.value()) {
    if (r.info.actor == kQueuedCommandsActor) {
      EXPECT_FALSE(r.info.delta) << "the queued commands are a list, written whole";
      continue;
    }
    if (r.info.epoch == 5) EXPECT_FALSE(r.info.delta);
    if (r.info.epoch > 5) EXPECT_TRUE(r.info.delta);
  }
  const CheckpointCounters c = manager.value()->counters();
  EXPECT_EQ(c.written, 21u) << "7 sets of 2 actors and the queued commands";
  EXPECT_EQ(c.sets_committed, 7u);
  EXPECT_EQ(c.deleted, 8u + 5u + 5u) << "8 actor files, the queued commands and manifests of sets 1..5";
  auto sets = scan_checkpoint_sets(raw->inner);
  ASSERT_TRUE(sets.ok());
  std::vector<std::uint64_t> set_epochs;
  for (const auto& set : sets.value()) set_epochs.push_back(set.manifest.epoch);
  EXPECT_EQ(set_epochs, (std::vector<std::uint64_t>{6, 7})) << "the newest 2 committed sets";
  EXPECT_EQ(c.failed, 0u);
  EXPECT_EQ(c.pending, 0u);
  auto state = load_actor_state(raw->inner, history.value(), 1, 7);
  ASSERT_TRUE(state.ok()) << state.status().to_string();
  testing::Probe::State s{};
  std::memcpy(&s, state->data(), sizeof s);
  EXPECT_EQ(s.steps, 7u);

  // A failed write is counted and reported, and the next checkpoint of that actor is full.
  raw->fail_writes = true;
  ASSERT_TRUE(rt.run_until(8, 30s).ok());
  ASSERT_TRUE(manager.value()->checkpoint_at(8).ok());
  Status flushed = manager.value()->flush(30s);
  EXPECT_EQ(flushed.code(), StatusCode::kIoError);
  EXPECT_EQ(manager.value()->counters().failed, 3u) << "2 actors and the queued commands";
  EXPECT_EQ(manager.value()->counters().sets_failed, 1u) << "a set with a failed member is never committed";
  raw->fail_writes = false;
  ASSERT_TRUE(rt.run_until(9, 30s).ok());
  ASSERT_TRUE(manager.value()->checkpoint_at(9).ok());
  ASSERT_TRUE(manager.value()->flush(30s).ok());
  auto after = scan_checkpoints(raw->inner);
  for (const auto& r : after.value())
    if (r.info.epoch == 9) EXPECT_FALSE(r.info.delta) << "after a lost write the chain restarts with a full";
}

TEST(CheckpointManager, EpochScheduleWritesRestorableCheckpointsAndARestartSeesThem) {
  const auto dir = std::filesystem::temp_directory_path() / ("pkrt_mgr_" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  examples::Heat2d::Params p;
  p.width = 40;
  p.height = 24;
  p.stats_every = 0;
  examples::heat2d_choose_tiles(p, 4);
  std::vector<float> at_final;
  {
    auto created = Runtime::create(examples::heat2d_program(), p, cpu(4, 2, 1024));
    ASSERT_TRUE(created.ok());
    Runtime& rt = *created.value();
    auto store = FileCheckpointStore::open(dir.string());
    ASSERT_TRUE(store.ok());
    CheckpointPolicy policy;
    policy.every_epochs = 25;
    policy.keep_sets = 10;
    auto manager = CheckpointManager::create(rt, std::move(store.value()), policy);
    ASSERT_TRUE(manager.ok());
    // The grid parks at each multiple: the schedule's request for it is either already
    // latched (served on the way) or made while parked there (served in a park round).
    ASSERT_TRUE(rt.set_target_epoch(25).ok());
    ASSERT_TRUE(rt.start().ok());
    for (std::uint64_t e = 25; e <= 100; e += 25) {
      ASSERT_TRUE(rt.run_until(e, 60s).ok());
      const auto deadline = std::chrono::steady_clock::now() + 30s;
      // 4 actors and the queued commands per set.
      while (manager.value()->counters().written < 5 * (e / 25) && std::chrono::steady_clock::now() < deadline)
        std::this_thread::sleep_for(1ms);
      ASSERT_EQ(manager.value()->counters().written, 5 * (e / 25)) << "checkpoint at epoch " << e;
      ASSERT_TRUE(rt.wait_parked(30s).ok());
    }
    ASSERT_TRUE(manager.value()->flush(60s).ok());
    for (const auto& s : manager.value()->snapshot_stats()) {
      EXPECT_TRUE(s.status.ok());
      EXPECT_EQ(s.epoch % 25, 0u) << "scheduled checkpoints land on multiples of the period";
      EXPECT_GT(s.bytes_written, 0u);
      EXPECT_GT(s.request_to_durable_ms, 0.0);
    }
  }
  auto store = FileCheckpointStore::open(dir.string());
  ASSERT_TRUE(store.ok());
  std::vector<std::byte> params(sizeof p);
  std::memcpy(params.data(), &p, sizeof p);
  auto point = find_restore_point(*store.value(), "heat2d", params, 4, std::nullopt);
  ASSERT_TRUE(point.ok()) << point.status().to_string();
  EXPECT_EQ(point->epoch, 100u) << "the newest complete epoch";
  auto wrong = find_restore_point(*store.value(), "heat2d", params, 5, std::nullopt);
  EXPECT_FALSE(wrong.ok());
  EXPECT_NE(wrong.status().message().find("actor count"), std::string::npos) << wrong.status().message();
  std::filesystem::remove_all(dir);
}

// The schedule does not hold the grid: multiples it ran past before they could be requested
// become one late checkpoint at the grid's epoch, and the counters say so.
TEST(CheckpointManager, MultiplesTheGridRanPastAreTakenAsOneLateCheckpointAndCounted) {
  auto created = Runtime::create(testing::probe_program(), testing::Probe::Params{}, cpu(2, 1));
  ASSERT_TRUE(created.ok());
  Runtime& rt = *created.value();
  ASSERT_TRUE(rt.set_target_epoch(230).ok());
  ASSERT_TRUE(rt.start().ok());
  ASSERT_TRUE(rt.run_until(230, 60s).ok());  // parked past 50, 100, 150 and 200
  CheckpointPolicy policy;
  policy.every_epochs = 50;
  auto manager = CheckpointManager::create(rt, std::make_unique<MemoryCheckpointStore>(), policy);
  ASSERT_TRUE(manager.ok()) << manager.status().to_string();
  const auto deadline = std::chrono::steady_clock::now() + 30s;
  while (manager.value()->counters().sets_committed < 1 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(1ms);
  ASSERT_TRUE(manager.value()->flush(60s).ok());
  const CheckpointCounters c = manager.value()->counters();
  EXPECT_EQ(c.sets_committed, 1u) << "one checkpoint, at the parked epoch";
  EXPECT_EQ(c.late, 1u);
  EXPECT_EQ(c.coalesced, 3u) << "50, 100 and 150 folded into the late one taken for 200";
  ASSERT_FALSE(manager.value()->snapshot_stats().empty());
  EXPECT_EQ(manager.value()->snapshot_stats().front().epoch, 230u);
}

TEST(CheckpointManager, CancelWithdrawsARequestTheGridHasNotServed) {
  auto created = Runtime::create(testing::probe_program(), testing::Probe::Params{}, cpu(2, 1));
  ASSERT_TRUE(created.ok());
  Runtime& rt = *created.value();
  auto manager = CheckpointManager::create(rt, std::make_unique<MemoryCheckpointStore>(), CheckpointPolicy{});
  ASSERT_TRUE(manager.ok());
  ASSERT_TRUE(rt.set_target_epoch(5).ok());
  ASSERT_TRUE(rt.start().ok());
  ASSERT_TRUE(rt.run_until(5, 30s).ok());
  auto id = manager.value()->checkpoint_at(1000);  // far ahead of the parked grid
  ASSERT_TRUE(id.ok());
  EXPECT_EQ(manager.value()->checkpoint_at(6).status().code(), StatusCode::kFailedPrecondition)
      << "one request in flight at a time";
  EXPECT_TRUE(manager.value()->cancel(id.value()));
  ASSERT_TRUE(manager.value()->flush(30s).ok());
  const CheckpointCounters c = manager.value()->counters();
  EXPECT_EQ(c.cancelled, 1u);
  EXPECT_EQ(c.written, 0u);
  EXPECT_EQ(c.pending, 0u);
  EXPECT_TRUE(manager.value()->checkpoint_at(5).ok()) << "a new request after the cancel";
  ASSERT_TRUE(manager.value()->flush(30s).ok());
  EXPECT_EQ(manager.value()->counters().written, 3u) << "2 actors and the queued commands";
}

}  // namespace
}  // namespace pkrt
